/**
 * An interval with no upload commits without tasks what holds no record, and still runs what makes
 * records from nothing or is called every interval: count() counts 0, a foreachRDD sink gets the
 * interval with no records, as when every task runs.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { definePipeline } from '../../core/index.ts';
import { removeDir, replayInProcess } from '../support/stream-harness.ts';

describe('an interval with no upload', () => {
  it('runs only what can make records from nothing, and calls its sinks', async () => {
    const sunk = new Map<number, unknown[]>();
    const pipeline = definePipeline({ name: 'empty', partitions: 2 }, (ctx) => {
      const lines = ctx.textStream();
      // Over no upload the input has no partition, so no task; a shuffle's read side has its partitions still.
      const counts = lines.map((line) => [line, 1]).reduceByKey((a, b) => a + b);
      counts.saveAsJsonFiles('counts');
      counts.foreachRDD((records, k) => void sunk.set(k, records));
      lines.count().saveAsJsonFiles('count');
    });
    const uploads: Record<string, string>[] = [{ 'a.txt': 'a\nb\n' }, {}];

    const run = await replayInProcess(pipeline, uploads, { partitions: 2 });
    const sunkIdle = sunk.get(1);
    const everyTask = await replayInProcess(pipeline, uploads, { partitions: 2, runEmptyStages: true });
    try {
      const idle = run.reports[1]!;
      expect(await run.output('count', 1)).toEqual([0]);
      expect(await run.output('counts', 1)).toEqual([]);
      expect(idle.outputs).toMatchObject({ counts: 0, count: 1 });
      expect(sunkIdle).toEqual([]);
      // count's tasks ran; the counts and the sink's collection ran none.
      expect(idle.tasks).toBeGreaterThan(0);
      expect(idle.tasks).toBeLessThan(everyTask.reports[1]!.tasks);
      expect(await run.files()).toEqual(await everyTask.files());
    } finally {
      await removeDir(path.dirname(run.root));
      await removeDir(path.dirname(everyTask.root));
    }
  });
});
