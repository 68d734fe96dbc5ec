/**
 * Every DStream operator that takes Spark's `numPartitions` takes a `partitions` argument: its
 * result is shuffled to that many partitions (one part file each), and a number that is no
 * partition count is refused when the pipeline is defined, not when an interval is planned.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline, type DStream, type State } from '../../core/index.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';

type Pair = [string, number];
const add = (a: number, b: number) => a + b;

/** Each operator with Spark's numPartitions, given `n` partitions; the pipeline's default is 2. */
const operators: Record<string, (s: DStream<Pair>, n: number) => DStream<unknown>> = {
  countByValue: (s, n) => s.keys().countByValue(n),
  reduceByKey: (s, n) => s.reduceByKey(add, n),
  groupByKey: (s, n) => s.groupByKey(n),
  combineByKey: (s, n) => s.combineByKey((v: number) => v, add, add, n),
  join: (s, n) => s.join(s, n),
  leftOuterJoin: (s, n) => s.leftOuterJoin(s, n),
  rightOuterJoin: (s, n) => s.rightOuterJoin(s, n),
  fullOuterJoin: (s, n) => s.fullOuterJoin(s, n),
  cogroup: (s, n) => s.cogroup([s], n),
  groupByKeyAndWindow: (s, n) => s.groupByKeyAndWindow(2, 1, n),
  reduceByKeyAndWindow: (s, n) => s.reduceByKeyAndWindow(add, 2, 1, { partitions: n }),
  'reduceByKeyAndWindow-inverse': (s, n) => s.reduceByKeyAndWindow(add, 2, 1, { inverse: (a, b) => a - b, partitions: n }),
  countByValueAndWindow: (s, n) => s.keys().countByValueAndWindow(2, 1, n),
  updateStateByKey: (s, n) => s.updateStateByKey<string, number, number>((vs, total) => (total ?? 0) + vs.reduce(add, 0), n),
  'updateStateByKey-options': (s, n) => s.updateStateByKey<string, number, number>((vs, total) => (total ?? 0) + vs.reduce(add, 0), { partitions: n }),
  mapWithState: (s, n) =>
    s.mapWithState({
      partitions: n,
      update: (key: string, v: number | undefined, state: State<number>) => {
        state.update((state.exists() ? state.get() : 0) + v!);
        return [key, state.get()];
      },
    }).stateSnapshots(),
};

it('each operator taking numPartitions in Spark shuffles to the partitions it is given', async () => {
  const pipeline = definePipeline({ name: 'partitions', partitions: 2 }, (ctx) => {
    const s = ctx.jsonStream<Pair>();
    for (const [name, op] of Object.entries(operators)) op(s, 5).saveAsJsonFiles(name);
  });
  const lines = [['a', 1], ['b', 2], ['c', 3], ['a', 4]].map((r) => JSON.stringify(r) + '\n').join('');
  const run = await replayInProcess(pipeline, [{ 'u.jsonl': lines }], { partitions: 1 });
  try {
    const files = [...(await run.files()).keys()];
    for (const name of Object.keys(operators)) {
      const parts = files.filter((f) => f.startsWith(path.join('output', name, 'interval=000000', 'part-')));
      expect(parts, name).toHaveLength(5);
    }
    expect(bag(await run.output('reduceByKey', 0))).toEqual(bag([['a', 5], ['b', 2], ['c', 3]]));
  } finally {
    await removeDir(path.dirname(run.root));
  }
});

it('refuses a partition count that is not a whole number >= 1 when the pipeline is defined', () => {
  for (const [name, op] of Object.entries(operators)) {
    for (const bad of [0, 1.5, -1]) {
      expect(() => definePipeline({ name: 'bad-partitions' }, (ctx) => op(ctx.jsonStream<Pair>(), bad).saveAsJsonFiles('x')), `${name}(${bad})`).toThrow(/partitions/);
    }
  }
});
