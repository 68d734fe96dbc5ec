/**
 * What an interval reports of itself: its input counted once however many stages read it, and
 * every bad record it quarantined.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import { removeDir, replayInProcess } from '../support/stream-harness.ts';

describe('the interval report', () => {
  it('counts each input record once, however many stages read it, and every record quarantined', async () => {
    const pipeline = definePipeline({ name: 'report', partitions: 2, badRecords: 'quarantine' }, (ctx) => {
      // Not cached: three stages each read the input.
      const lines = ctx.textStream();
      lines.saveAsTextFiles('raw');
      lines.map((l) => [l.length, 1] as [number, number]).reduceByKey((a, b) => a + b).saveAsJsonFiles('lengths');
      lines
        .map((l) => {
          if (l.startsWith('bad')) throw new Error('bad line');
          return l;
        })
        .countByValue()
        .saveAsJsonFiles('counts');
    });
    const run = await replayInProcess(pipeline, [{ 'a.txt': 'x\nyy\nbad 1\n', 'b.txt': 'x\nbad 2\n' }, {}], { partitions: 3 });
    try {
      expect(run.reports.map((r) => [r.recordsIn, r.quarantined])).toEqual([
        [5, 2],
        [0, 0],
      ]);
    } finally {
      await removeDir(path.dirname(run.root));
    }
  });
});
