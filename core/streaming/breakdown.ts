/**
 * Where an interval's time went, from what the store already holds: the seal markers, the
 * lineage record, each task's start marker and completion record, and the commit. No clock of
 * its own and no extra write on the hot path, so it costs nothing while the stream runs, and is
 * the same on AWS as locally (S3 dates objects to the second there, so its figures are coarse).
 */
import type { ObjectStore } from '../ports/object-store.ts';
import { intervalScope, keys } from '../layout.ts';
import { sealMarkerKeys } from './intake.ts';
import type { TaskTimeline } from './inspect.ts';

/** One stage's share of an interval. */
export interface StageBreakdown {
  stage: string;
  tasks: number;
  /** From its first task's start to its last task's end. */
  wallMs: number;
  /** Its tasks' own running times, added up (each from its start marker to its completion record). */
  taskMs: number;
  /**
   * From the moment the first executor ran out of this stage's tasks to the stage's end: time an
   * executor sat idle waiting for the stage's last task (0 with one executor).
   */
  tailMs: number;
}

export interface IntervalBreakdown {
  /** When each step ended, in the store's time (epoch ms): absent when its marker is not there (yet). */
  at: { sealing?: number; sealed?: number; planned: number; lastTaskEnd?: number; committed?: number };
  /** Marking the interval sealing to its final upload list. */
  sealMs?: number;
  /** The final list to the lineage record: splits planned and spilled, the record written. */
  planMs?: number;
  /** The stages, in the order their first task started. */
  stages: StageBreakdown[];
  /**
   * Time between the lineage record and the last task's end during which no task ran: the driver
   * sending tasks, the workers taking them, the scheduler noticing a stage is done.
   */
  dispatchMs: number;
  /** The last task's end to the commit: outputs' `_SUCCESS`, sinks, the report. */
  commitMs?: number;
  /**
   * The median time from a task's end to the start of the next task its executor ran in the same
   * stage: what each task costs besides its own work (acknowledgement, dispatch, the task's start).
   */
  turnaroundMs?: number;
  /** busyShare[n]: the share of the time from the lineage record to the commit (or last task end) with more than n tasks running. */
  busyShare: number[];
}

/** The breakdown of an interval whose tasks were read (inspect.ts readTasks); undefined when it was never planned. */
export async function readIntervalBreakdown(store: ObjectStore, k: number, tasks: TaskTimeline[]): Promise<IntervalBreakdown | undefined> {
  const scope = intervalScope(k);
  const { sealing, sealed } = sealMarkerKeys(k);
  const [sealingInfo, sealedInfo, record, committed] = await Promise.all(
    [sealing, sealed, keys.lineageRecord(scope), keys.committed(scope)].map((key) => store.head(key)),
  );
  if (!record) return undefined;
  return intervalBreakdown(tasks, {
    ...(sealingInfo ? { sealing: sealingInfo.lastModified } : {}),
    ...(sealedInfo ? { sealed: sealedInfo.lastModified } : {}),
    planned: record.lastModified,
    ...(committed ? { committed: committed.lastModified } : {}),
  });
}

/** The breakdown from the tasks' timelines and the times the interval's markers were written. */
export function intervalBreakdown(tasks: TaskTimeline[], marks: Omit<IntervalBreakdown['at'], 'lastTaskEnd'>): IntervalBreakdown {
  const ran = tasks.flatMap((t) => (t.done ? [{ stage: t.stage, executor: t.done.executor ?? '', start: t.done.startedAt, end: t.done.endedAt, ms: t.done.durationMs }] : []));
  const lastTaskEnd = ran.length > 0 ? Math.max(...ran.map((r) => r.end)) : undefined;
  const end = marks.committed ?? lastTaskEnd ?? marks.planned;
  const executors = new Set(ran.map((r) => r.executor));

  const byStage = new Map<string, typeof ran>();
  for (const r of ran) byStage.set(r.stage, [...(byStage.get(r.stage) ?? []), r]);
  const stages: StageBreakdown[] = [];
  const turnarounds: number[] = [];
  for (const [stage, runs] of byStage) {
    const first = Math.min(...runs.map((r) => r.start));
    const last = Math.max(...runs.map((r) => r.end));
    // An executor that ran none of the stage's tasks was idle for all of it.
    const idleFrom = Math.min(...[...executors].map((e) => Math.max(first, ...runs.filter((r) => r.executor === e).map((r) => r.end))));
    stages.push({ stage, tasks: runs.length, wallMs: last - first, taskMs: sum(runs.map((r) => r.ms)), tailMs: executors.size > 1 ? last - idleFrom : 0 });
    for (const e of executors) {
      const own = runs.filter((r) => r.executor === e).sort((a, b) => a.start - b.start);
      for (let i = 1; i < own.length; i++) turnarounds.push(Math.max(0, own[i]!.start - own[i - 1]!.end));
    }
  }
  stages.sort((a, b) => Math.min(...byStage.get(a.stage)!.map((r) => r.start)) - Math.min(...byStage.get(b.stage)!.map((r) => r.start)));

  const running = runningTimes(ran, marks.planned, end);
  const window = Math.max(1, end - marks.planned);
  turnarounds.sort((a, b) => a - b);
  return {
    at: { ...marks, ...(lastTaskEnd === undefined ? {} : { lastTaskEnd }) },
    ...(marks.sealing !== undefined && marks.sealed !== undefined ? { sealMs: marks.sealed - marks.sealing } : {}),
    ...(marks.sealed !== undefined ? { planMs: marks.planned - marks.sealed } : {}),
    stages,
    dispatchMs: lastTaskEnd === undefined ? 0 : (running[0] ?? 0) - Math.max(0, end - lastTaskEnd),
    ...(marks.committed !== undefined && lastTaskEnd !== undefined ? { commitMs: marks.committed - lastTaskEnd } : {}),
    ...(turnarounds.length > 0 ? { turnaroundMs: turnarounds[Math.floor(turnarounds.length / 2)]! } : {}),
    busyShare: running.slice(1).map((_, n) => sum(running.slice(n + 1)) / window),
  };
}

/** running[n]: how long exactly n tasks ran at once, within [from, to]. */
function runningTimes(runs: { start: number; end: number }[], from: number, to: number): number[] {
  const edges = runs.flatMap((r) => [
    { at: Math.min(Math.max(r.start, from), to), d: 1 },
    { at: Math.min(Math.max(r.end, from), to), d: -1 },
  ]);
  edges.sort((a, b) => a.at - b.at || a.d - b.d);
  const running: number[] = [0];
  let n = 0;
  let t = from;
  for (const edge of edges) {
    running[n] = (running[n] ?? 0) + (edge.at - t);
    t = edge.at;
    n += edge.d;
  }
  running[n] = (running[n] ?? 0) + (to - t);
  return Array.from(running, (ms) => ms ?? 0);
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
