/**
 * Keys compare by value, as Spark's do with equals and hashCode: two objects with the same
 * properties in another order are one key, in every keyed operator and across partitions.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import { removeDir, replayInProcess } from '../support/stream-harness.ts';

it('reduceByKey and join treat objects with the same properties in any order as one key', async () => {
  type Key = Record<string, unknown>;
  const pipeline = definePipeline({ name: 'keys', partitions: 3 }, (ctx) => {
    const pairs = ctx.jsonStream<[Key, number]>();
    pairs.reduceByKey((a, b) => a + b).saveAsJsonFiles('sums');
    pairs.filter(([, v]) => v === 1).join(pairs.filter(([, v]) => v === 10)).saveAsJsonFiles('joined');
  });
  const lines = [
    [{ user: 'ada', day: 3 }, 1],
    [{ day: 3, user: 'ada' }, 10],
    [{ day: 3, user: 'bob' }, 1],
  ].map((r) => JSON.stringify(r) + '\n');
  const run = await replayInProcess(pipeline, [{ 'a.jsonl': lines[0]!, 'b.jsonl': lines[1]! + lines[2]! }], { partitions: 2 });
  try {
    const sums = (await run.output('sums', 0)) as [Key, number][];
    expect(sums).toHaveLength(2);
    expect(sums.find(([k]) => k.user === 'ada')?.[1]).toBe(11);
    const joined = (await run.output('joined', 0)) as [Key, [number, number]][];
    expect(joined.map(([k, v]) => [k.user, v])).toEqual([['ada', [1, 10]]]);
  } finally {
    await removeDir(path.dirname(run.root));
  }
});
