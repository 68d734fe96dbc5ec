/**
 * Records that no delivery could ever process are bad records of the operator that produced them,
 * the same on every delivery, and their contents stay out of error messages (which logs carry):
 * under 'quarantine' they are kept under errors/ and the stream goes on.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import { readAllLines, removeDir, replayInProcess } from '../support/stream-harness.ts';

it('a record that is no [key, value] pair, fed to a keyed operator, is quarantined, and a line that is no JSON too, without quoting it', async () => {
  const pipeline = definePipeline({ name: 'pairs', partitions: 2, badRecords: 'quarantine' }, (ctx) => {
    ctx
      .jsonStream()
      .map((v) => v as [string, number])
      .reduceByKey((a, b) => a + b)
      .saveAsJsonFiles('sums');
  });
  const result = await replayInProcess(pipeline, [{ 'in.jsonl': '["a", 1]\n"secret, no pair"\n{not json: secret}\n["a", 2]\n' }]);
  try {
    expect(await result.output('sums', 0)).toEqual([['a', 3]]);
    expect(result.reports[0]!.quarantined).toBe(2);
    const kept = (await readAllLines(path.join(result.root, 'errors', 'interval=000000', 'records'))).map((l) => JSON.parse(l) as { error: string; record: unknown });
    expect(kept.map((q) => q.error).sort()).toEqual([expect.stringMatching(/expects \[key, value\] pairs$/), 'not valid JSON']);
    for (const q of kept) expect(q.error).not.toContain('secret');
    expect(kept.map((q) => q.record).sort()).toEqual(['secret, no pair', '{not json: secret}']);
  } finally {
    await removeDir(path.dirname(result.root));
  }
});

it('a record JSON would change (a Map, an undefined property) is a bad record of the operator that made it, not {} in the output', async () => {
  const pipeline = definePipeline({ name: 'unstorable-output', partitions: 1, badRecords: 'quarantine' }, (ctx) => {
    ctx
      .textStream()
      // Typed any: the types cannot see what the codec refuses, so the runtime check meets it.
      .map((line): any => (line === 'map' ? new Map([[line, 1]]) : line === 'hole' ? { line, next: undefined } : { line }))
      .saveAsJsonFiles('records');
  });
  const result = await replayInProcess(pipeline, [{ 'in.txt': 'map\nhole\nfine\n' }]);
  try {
    expect(await result.output('records', 0)).toEqual([{ line: 'fine' }]);
    const kept = (await readAllLines(path.join(result.root, 'errors', 'interval=000000', 'records'))).map((l) => JSON.parse(l) as { operator: string; error: string });
    expect(kept).toEqual([
      expect.objectContaining({ operator: expect.stringMatching(/^map @d1 map/), error: expect.stringMatching(/^record is an instance of Map: /) }),
      expect.objectContaining({ operator: expect.stringMatching(/^map @d1 map/), error: 'record.next is undefined' }),
    ]);
  } finally {
    await removeDir(path.dirname(result.root));
  }
});
