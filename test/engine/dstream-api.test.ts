/**
 * The DStream operators Spark users reach for besides the core ones: keys, values, glom,
 * transformWith and groupByKeyAndWindow, each against what Spark Streaming gives.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';

type Pair = [string, number];

const pipeline = definePipeline({ name: 'dstream-api', partitions: 2 }, (ctx) => {
  const pairs = ctx.jsonStream<Pair>();
  pairs.keys().saveAsJsonFiles('keys');
  pairs.values().saveAsJsonFiles('values');
  // glom: each partition's records as one array; their lengths add up to the interval's records.
  pairs.repartition(3).glom().map((records) => records.length).saveAsJsonFiles('glom');
  const big = pairs.filter(([, v]) => v >= 10);
  pairs.transformWith(big, (all, large, k) => all.join(large).mapValues(([a, b]) => a + b + k)).saveAsJsonFiles('transformWith');
  pairs
    .groupByKeyAndWindow(2, 1)
    .mapValues((vs) => [...vs].sort((a, b) => a - b))
    .saveAsJsonFiles('grouped');
});

it('keys, values, glom, transformWith and groupByKeyAndWindow give what Spark Streaming gives', async () => {
  const intervals: Pair[][] = [
    [['a', 1], ['b', 10], ['a', 2]],
    [['b', 3], ['c', 20]],
  ];
  const run = await replayInProcess(pipeline, intervals.map((recs) => ({ 'in.jsonl': recs.map((r) => JSON.stringify(r) + '\n').join('') })), { partitions: 2 });
  try {
    expect(bag(await run.output('keys', 0))).toEqual(bag(['a', 'b', 'a']));
    expect(bag(await run.output('values', 1))).toEqual(bag([3, 20]));
    const lengths = (await run.output('glom', 0)) as number[];
    expect(lengths).toHaveLength(3);
    expect(lengths.reduce((a, b) => a + b, 0)).toBe(3);
    // b's 10 joined with itself at interval 0; c's 20 at interval 1; the interval is added in.
    expect(bag(await run.output('transformWith', 0))).toEqual(bag([['b', 20]]));
    expect(bag(await run.output('transformWith', 1))).toEqual(bag([['c', 41]]));
    expect(bag(await run.output('grouped', 0))).toEqual(bag([['a', [1, 2]], ['b', [10]]]));
    expect(bag(await run.output('grouped', 1))).toEqual(bag([['a', [1, 2]], ['b', [3, 10]], ['c', [20]]]));
  } finally {
    await removeDir(path.dirname(run.root));
  }
});

it('transformWith refuses streams that do not slide together', () => {
  expect(() =>
    definePipeline({ name: 'mismatch' }, (ctx) => {
      const s = ctx.jsonStream<Pair>();
      s.transformWith(s.window(2, 2), (a) => a).saveAsJsonFiles('x');
    }),
  ).toThrow(/transformWith: streams slide every 1 and 2 intervals; they must slide together/);
});
