/**
 * What faults cost: rebuilding a lost state chain in parallel against replaying it serially, and
 * an interval with a straggler with and without speculation.
 */
import { rm, readdir } from 'node:fs/promises';
import path from 'node:path';
import { defaultSchedulerOptions } from '../core/scheduler/dag-scheduler.ts';
import { readLineageRecord } from '../core/streaming/lineage.ts';
import { FsObjectStore } from '../local/store/fs-object-store.ts';
import type { Row } from './table.ts';
import { freshRoot, stagedText, timedReplay } from './workspace.ts';
import { cp } from 'node:fs/promises';

/**
 * Runs N intervals of WordCount (state since interval 0, no checkpoint yet), deletes every cached
 * state partition and shuffle block, then runs interval N: its state input is gone, so the whole
 * chain is rebuilt from lineage, each interval's batch in parallel, then folded.
 */
export async function benchRecovery(chain: number, mbPerInterval: number): Promise<Row[]> {
  const { dir } = await stagedText('recovery', chain + 1, 2, mbPerInterval);
  const firstN = path.join(path.dirname(dir), 'recovery-first');
  await rm(firstN, { recursive: true, force: true });
  for (let k = 0; k < chain; k++) await cp(path.join(dir, String(k)), path.join(firstN, String(k)), { recursive: true });
  const rows: Row[] = [];
  for (const workers of [1, 2]) {
    const root = await freshRoot(`recovery-${workers}`);
    const options = { pipelinePath: 'examples/wordcount.ts', root, workers, partitions: 2 * workers };
    const serial = await timedReplay(options, firstN);
    const baseline = serial.reports[serial.reports.length - 1]!.processingMs;
    for (const scope of await readdir(path.join(root, 'cache'))) await rm(path.join(root, 'cache', scope), { recursive: true, force: true });
    const recovered = await timedReplay(options, dir);
    const last = recovered.reports[recovered.reports.length - 1]!;
    rows.push({
      workers,
      'lost intervals': last.recoveredIntervals.length,
      'serial replay ms (upstream backup)': serial.processingMs,
      'rebuild + next interval ms': last.processingMs,
      'one interval ms': baseline,
      'rebuild ms': last.processingMs - baseline,
      'tasks recomputed': last.recomputed,
    });
  }
  return rows;
}

/**
 * One interval with one map task slowed 10x: speculation against none, against no straggler.
 * The straggler holds its worker until its copy commits, so with W workers the rest of its stage
 * runs on W - 1 of them; the slow task sleeps rather than spins, as a slow machine elsewhere
 * would not take this machine's cores, so more workers than cores is a fair second setting.
 */
export async function benchStragglers(mb: number, workerCounts: number[]): Promise<Row[]> {
  const { dir } = await stagedText('straggler', 1, 4, mb);
  const rows: Row[] = [];
  for (const workers of workerCounts) rows.push(...(await stragglerRuns(dir, workers)));
  return rows;
}

async function stragglerRuns(dir: string, workers: number): Promise<Row[]> {
  const probeRoot = await freshRoot(`straggler-probe-${workers}`);
  const probe = await timedReplay({ pipelinePath: 'examples/wordcount.ts', root: probeRoot, workers, partitions: 8 }, dir);
  const record = await readLineageRecord(new FsObjectStore(probeRoot), 0);
  const firstMap = record!.stages.find((s) => s.kind === 'shuffle-map')!.id;
  const rows: Row[] = [{ workers, run: 'no straggler', 'processing ms': probe.processingMs, 'vs no straggler': 1 }];
  for (const speculation of [false, true]) {
    const { processingMs, reports } = await timedReplay(
      {
        pipelinePath: 'examples/wordcount.ts',
        root: await freshRoot(`straggler-${workers}-${speculation}`),
        workers,
        partitions: 8,
        chaos: `seed=1,slowdown=10,slow-task=${firstMap}/0`,
        scheduler: { ...defaultSchedulerOptions, speculation: { ...defaultSchedulerOptions.speculation, enabled: speculation, minMs: 50 } },
      },
      dir,
    );
    rows.push({
      workers,
      run: `one task 10x slower, speculation ${speculation ? 'on' : 'off'}`,
      'processing ms': processingMs,
      'vs no straggler': processingMs / probe.processingMs,
      'speculative copies': reports[0]!.speculative,
    });
  }
  return rows;
}
