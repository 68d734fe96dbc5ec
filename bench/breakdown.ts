/**
 * Where a run's time went, from what its root holds (core/streaming/breakdown.ts) plus the two
 * things only the bench sees: how long the runtime took to open, and the replay's staging.
 */
import type { ObjectStore } from '../core/ports/object-store.ts';
import { readIntervalBreakdown, type IntervalBreakdown } from '../core/streaming/breakdown.ts';
import { readTasks } from '../core/streaming/inspect.ts';
import { intervalScope } from '../core/layout.ts';
import type { IntervalReport } from '../core/streaming/driver.ts';
import type { Row } from './table.ts';

export async function breakdowns(store: ObjectStore, reports: IntervalReport[]): Promise<IntervalBreakdown[]> {
  const out: IntervalBreakdown[] = [];
  for (const r of reports) {
    const b = await readIntervalBreakdown(store, r.interval, await readTasks(store, intervalScope(r.interval)));
    if (!b) throw new Error(`bench: interval ${r.interval} has no lineage record to break down`);
    out.push(b);
  }
  return out;
}

/**
 * One row for a run: its start-up, then the measured intervals' phases added up. Staging is the
 * time from an interval's commit to the next one's seal (the replay pinning its files), when the
 * seal comes after the commit; the
 * map side and the reduce side are the shuffle-map stages and the stages after them.
 */
export function breakdownRow(run: string, openMs: number, all: IntervalBreakdown[], measuredFrom = 1): Row {
  const measured = all.slice(measuredFrom);
  const total = (f: (b: IntervalBreakdown) => number) => measured.reduce((n, b) => n + f(b), 0);
  const stages = (map: boolean, f: (s: IntervalBreakdown['stages'][number]) => number) => total((b) => b.stages.filter((s) => s.stage.startsWith('map-') === map).reduce((n, s) => n + f(s), 0));
  const staging = measured.reduce((n, b, i) => {
    const before = all[measuredFrom + i - 1]?.at.committed;
    // With intervals in flight the next is staged while the last runs: only a wait counts.
    return before === undefined || b.at.sealing === undefined ? n : n + Math.max(0, b.at.sealing - before);
  }, 0);
  const wall = total((b) => (b.at.committed ?? b.at.planned) - b.at.planned);
  const turnarounds = measured.flatMap((b) => (b.turnaroundMs === undefined ? [] : [b.turnaroundMs])).sort((a, b) => a - b);
  const tasks = total((b) => b.stages.reduce((n, s) => n + s.tasks, 0));
  return {
    run,
    'start-up ms': Math.round(openMs),
    'staging ms': staging,
    'seal ms': total((b) => b.sealMs ?? 0),
    'plan ms': total((b) => b.planMs ?? 0),
    'map tasks ms': stages(true, (s) => s.taskMs),
    'map tail ms': stages(true, (s) => s.tailMs),
    'reduce tasks ms': stages(false, (s) => s.taskMs),
    'reduce tail ms': stages(false, (s) => s.tailMs),
    'no task running ms': total((b) => b.dispatchMs),
    'commit ms': total((b) => b.commitMs ?? 0),
    tasks,
    'turnaround ms/task': turnarounds[Math.floor(turnarounds.length / 2)] ?? '',
    'two busy %': wall > 0 ? (100 * total((b) => (b.busyShare[1] ?? 0) * ((b.at.committed ?? b.at.planned) - b.at.planned))) / wall : 0,
  };
}
