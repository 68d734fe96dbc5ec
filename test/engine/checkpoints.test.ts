/**
 * Every stateful stream keeps a checkpoint, whatever its slide against `checkpointEvery`, and the
 * garbage collector keeps what recovery needs: with the whole cache tier lost, the next intervals
 * recover from each state's last checkpoint, not from interval 0 (whose lineage and uploads may
 * have expired), and give what a run without the loss gives.
 */
import { expect, it } from 'vitest';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import { bag, readOutput, removeDir, replayInProcess, tempDir } from '../support/stream-harness.ts';

// A window sliding every 3 intervals, checkpointed every 4: the state's slides and the periods'
// last intervals meet only every 12 intervals.
const pipeline = definePipeline({ name: 'checkpoints', partitions: 2, checkpointEvery: 4 }, (ctx) => {
  const pairs = ctx.textStream().map((line) => [line, 1] as [string, number]);
  pairs.reduceByKeyAndWindow((a, b) => a + b, 3, 3, { inverse: (a, b) => a - b }).saveAsJsonFiles('windowed');
  pairs.updateStateByKey<string, number, number>((ones, total) => (total ?? 0) + ones.length).saveAsJsonFiles('totals');
});

const intervals = Array.from({ length: 24 }, (_, k) => ({ 'u.txt': `${['a', 'b', 'c'][k % 3]}\nb\n` }));

it('recovers from each state\'s last checkpoint after the whole cache is lost, and leaves no older cache behind', async () => {
  const clean = await replayInProcess(pipeline, intervals);
  const base = await tempDir();
  const root = path.join(base, 'root');
  try {
    await replayInProcess(pipeline, intervals.slice(0, 22), { root });
    const cached = (await readdir(path.join(root, 'cache'))).sort();
    expect(cached[0]! >= 'interval=000010', `oldest cache left: ${cached[0]}`).toBe(true);

    await rm(path.join(root, 'cache'), { recursive: true, force: true });
    const resumed = await replayInProcess(pipeline, intervals, { root });
    const recovered = resumed.reports.flatMap((r) => r.recoveredIntervals);
    expect(recovered.length).toBeGreaterThan(0);
    expect(Math.min(...recovered), `recomputed back to interval ${Math.min(...recovered)}`).toBeGreaterThanOrEqual(12);
    for (const k of [22, 23]) {
      for (const name of ['windowed', 'totals']) expect(bag(await readOutput(root, name, k)), `${name} at ${k}`).toEqual(bag(await clean.output(name, k)));
    }
  } finally {
    await removeDir(base);
    await removeDir(path.dirname(clean.root));
  }
});
