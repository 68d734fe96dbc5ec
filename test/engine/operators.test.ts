/**
 * Every operator, checked against a plain in-memory reference on generated streams: random
 * records, random uploads per interval (including empty intervals), random partition counts,
 * random window sizes. Outputs are compared as multisets per interval (partitioning decides the
 * order across partitions; within one, the order is tested in determinism.test.ts).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { definePipeline, type DStream, type State } from '../../core/index.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';
import { reducedWindowSums } from '../support/window-reference.ts';
import path from 'node:path';

type Pair = [string, number];

interface Case {
  name: string;
  build(s: DStream<Pair>, w: { length: number; slide: number }): DStream<unknown>;
  /** Expected records at interval k, or undefined where the stream has no RDD (between slides). */
  expect(batches: Pair[][], k: number, w: { length: number; slide: number }): unknown[] | undefined;
  /** Canonicalises a record before comparison (sorts grouped values). */
  normalise?(record: any): unknown;
}

const add = (a: number, b: number) => a + b;
const sortNums = (xs: number[]) => [...xs].sort((a, b) => a - b);
const groupBy = (pairs: Pair[]) => {
  const m = new Map<string, number[]>();
  for (const [k, v] of pairs) m.set(k, [...(m.get(k) ?? []), v]);
  return m;
};
const windowAt = (batches: Pair[][], k: number, { length, slide }: { length: number; slide: number }) =>
  (k + 1) % slide === 0 ? batches.slice(Math.max(0, k - length + 1), k + 1).flat() : undefined;
const other = (s: DStream<Pair>) => s.filter(([, v]) => v % 3 === 0).mapValues((v) => v * 10);
const otherRef = (batch: Pair[]) => batch.filter(([, v]) => v % 3 === 0).map(([k, v]) => [k, v * 10] as Pair);
const sumByKey = (pairs: Pair[]) => [...groupBy(pairs)].map(([k, vs]) => [k, vs.reduce(add, 0)]);

function joinRef(left: Pair[], right: Pair[], keepLeft: boolean, keepRight: boolean) {
  const l = groupBy(left);
  const r = groupBy(right);
  const out: unknown[] = [];
  for (const k of new Set([...l.keys(), ...r.keys()])) {
    const vs = l.get(k) ?? (keepRight ? [null] : []);
    const ws = r.get(k) ?? (keepLeft ? [null] : []);
    for (const v of vs) for (const w of ws) out.push([k, [v, w]]);
  }
  return out;
}

const cases: Case[] = [
  { name: 'map', build: (s) => s.map(([k, v]) => [k, v * 2]), expect: (b, k) => b[k]!.map(([x, v]) => [x, v * 2]) },
  { name: 'flatMap', build: (s) => s.flatMap(([k, v]) => (v > 0 ? [k, k + k] : [])), expect: (b, k) => b[k]!.flatMap(([x, v]) => (v > 0 ? [x, x + x] : [])) },
  { name: 'filter', build: (s) => s.filter(([, v]) => v % 2 === 0), expect: (b, k) => b[k]!.filter(([, v]) => v % 2 === 0) },
  { name: 'mapPartitions', build: (s) => s.mapPartitions((rs) => rs.map(([, v]) => v)), expect: (b, k) => b[k]!.map(([, v]) => v) },
  { name: 'union', build: (s) => s.union(s.map(([k, v]) => [k, -v] as Pair)), expect: (b, k) => [...b[k]!, ...b[k]!.map(([x, v]) => [x, -v])] },
  { name: 'union-after-shuffle', build: (s) => s.reduceByKey(add).union(s), expect: (b, k) => [...sumByKey(b[k]!), ...b[k]!] },
  {
    name: 'union-of-shuffles-reduced',
    build: (s) => s.repartition(3).union(s.reduceByKey(add)).reduceByKey(add),
    expect: (b, k) => sumByKey(b[k]!).map(([x, v]) => [x, 2 * (v as number)]),
  },
  { name: 'repartition', build: (s) => s.repartition(3), expect: (b, k) => b[k]! },
  {
    name: 'transform',
    build: (s) => s.transform((rdd, k) => rdd.filter(([, v]) => v > 3).map(([x]) => `${x}@${k}`)),
    expect: (b, k) => b[k]!.filter(([, v]) => v > 3).map(([x]) => `${x}@${k}`),
  },
  { name: 'count', build: (s) => s.count(), expect: (b, k) => [b[k]!.length] },
  { name: 'countByValue', build: (s) => s.map(([k]) => k).countByValue(), expect: (b, k) => [...groupBy(b[k]!)].map(([x, vs]) => [x, vs.length]) },
  { name: 'reduce', build: (s) => s.map(([, v]) => v).reduce(add), expect: (b, k) => (b[k]!.length ? [b[k]!.map(([, v]) => v).reduce(add)] : []) },
  { name: 'mapValues', build: (s) => s.mapValues((v) => v + 1), expect: (b, k) => b[k]!.map(([x, v]) => [x, v + 1]) },
  { name: 'flatMapValues', build: (s) => s.flatMapValues((v) => [v, v + 1]), expect: (b, k) => b[k]!.flatMap(([x, v]) => [[x, v], [x, v + 1]]) },
  { name: 'reduceByKey', build: (s) => s.reduceByKey(add), expect: (b, k) => sumByKey(b[k]!) },
  {
    name: 'groupByKey',
    build: (s) => s.groupByKey(),
    expect: (b, k) => [...groupBy(b[k]!)].map(([x, vs]) => [x, sortNums(vs)]),
    normalise: ([k, vs]) => [k, sortNums(vs)],
  },
  {
    name: 'combineByKey',
    build: (s) => s.combineByKey((v: number) => [v, 1], (c: number[], v: number) => [c[0]! + v, c[1]! + 1], (a: number[], b: number[]) => [a[0]! + b[0]!, a[1]! + b[1]!]),
    expect: (b, k) => [...groupBy(b[k]!)].map(([x, vs]) => [x, [vs.reduce(add), vs.length]]),
  },
  { name: 'join', build: (s) => s.join(other(s)), expect: (b, k) => joinRef(b[k]!, otherRef(b[k]!), false, false) },
  { name: 'leftOuterJoin', build: (s) => s.leftOuterJoin(other(s)), expect: (b, k) => joinRef(b[k]!, otherRef(b[k]!), true, false) },
  { name: 'rightOuterJoin', build: (s) => s.rightOuterJoin(other(s)), expect: (b, k) => joinRef(b[k]!, otherRef(b[k]!), false, true) },
  { name: 'fullOuterJoin', build: (s) => s.fullOuterJoin(other(s)), expect: (b, k) => joinRef(b[k]!, otherRef(b[k]!), true, true) },
  {
    name: 'cogroup',
    build: (s) => s.cogroup([other(s)]),
    expect: (b, k) => {
      const l = groupBy(b[k]!);
      const r = groupBy(otherRef(b[k]!));
      return [...new Set([...l.keys(), ...r.keys()])].map((x) => [x, [sortNums(l.get(x) ?? []), sortNums(r.get(x) ?? [])]]);
    },
    normalise: ([k, groups]) => [k, groups.map(sortNums)],
  },
  { name: 'window', build: (s, w) => s.window(w.length, w.slide), expect: (b, k, w) => windowAt(b, k, w) },
  { name: 'countByWindow', build: (s, w) => s.countByWindow(w.length, w.slide), expect: (b, k, w) => windowAt(b, k, w) && [windowAt(b, k, w)!.length] },
  {
    name: 'reduceByWindow',
    build: (s, w) => s.map(([, v]) => v).reduceByWindow(add, w.length, w.slide),
    expect: (b, k, w) => {
      const win = windowAt(b, k, w);
      return win && (win.length ? [win.map(([, v]) => v).reduce(add)] : []);
    },
  },
  { name: 'reduceByKeyAndWindow', build: (s, w) => s.reduceByKeyAndWindow(add, w.length, w.slide), expect: (b, k, w) => windowAt(b, k, w) && sumByKey(windowAt(b, k, w)!) },
  {
    name: 'reduceByKeyAndWindow-inverse',
    build: (s, w) => s.reduceByKeyAndWindow(add, w.length, w.slide, { inverse: (a, b) => a - b }),
    expect: (b, k, w) => windowAt(b, k, w) && sumByKey(windowAt(b, k, w)!),
  },
  {
    // Spark's filterFunc: a refused key is pruned from the window's state (values here may cancel out to 0).
    name: 'reduceByKeyAndWindow-inverse-filter',
    build: (s, w) => s.reduceByKeyAndWindow(add, w.length, w.slide, { inverse: (a, b) => a - b, filter: ([, v]) => v !== 0 }),
    expect: (b, k, w) => reducedWindowSums(b, w.length, w.slide, ([, v]) => v !== 0)[k],
  },
  {
    name: 'reduceByKeyAndWindow-inverse-pruning',
    build: (s, w) => s.reduceByKeyAndWindow(add, w.length, w.slide, { inverse: (a, b) => a - b, filter: ([, v]) => v % 3 !== 0 }),
    expect: (b, k, w) => reducedWindowSums(b, w.length, w.slide, ([, v]) => v % 3 !== 0)[k],
  },
  {
    name: 'countByValueAndWindow',
    build: (s, w) => s.map(([k]) => k).countByValueAndWindow(w.length, w.slide),
    expect: (b, k, w) => windowAt(b, k, w) && [...groupBy(windowAt(b, k, w)!)].map(([x, vs]) => [x, vs.length]),
  },
  {
    name: 'updateStateByKey',
    // Totals per key; a key whose total passes 40 is dropped and starts again.
    build: (s) => s.updateStateByKey<string, number, number>((vs, total) => {
      const next = (total ?? 0) + vs.reduce(add, 0);
      return next > 40 ? undefined : next;
    }),
    expect: (b, k) => {
      let state = new Map<string, number>();
      for (let j = 0; j <= k; j++) {
        const groups = groupBy(b[j]!);
        const next = new Map<string, number>();
        for (const key of new Set([...state.keys(), ...groups.keys()])) {
          const total = (state.get(key) ?? 0) + (groups.get(key) ?? []).reduce(add, 0);
          if (total <= 40) next.set(key, total);
        }
        state = next;
      }
      return [...state];
    },
  },
  {
    name: 'mapWithState',
    // Emits the running sum after each value; a key times out once more than 2 intervals have passed since its last value (Spark's rule).
    build: (s) =>
      s.mapWithState({
        timeout: 2,
        update: (key: string, v: number | undefined, state: State<number>) => {
          if (state.isTimingOut()) return [key, 'timeout', state.get()];
          const sum = (state.exists() ? state.get() : 0) + v!;
          state.update(sum);
          return [key, sum];
        },
      }),
    expect: (b, k) => mapWithStateRef(b, k).emitted,
  },
  {
    name: 'stateSnapshots',
    build: (s) =>
      s.mapWithState({
        timeout: 2,
        update: (_key: string, v: number | undefined, state: State<number>) => {
          if (!state.isTimingOut()) state.update((state.exists() ? state.get() : 0) + v!);
          return undefined;
        },
      }).stateSnapshots(),
    expect: (b, k) => [...mapWithStateRef(b, k).state].map(([key, [sum]]) => [key, sum]),
  },
];

/** Values reach mapWithState in upload order: the order the reference uses. */
function mapWithStateRef(b: Pair[][], k: number) {
  const state = new Map<string, [number, number]>();
  let emitted: unknown[] = [];
  for (let j = 0; j <= k; j++) {
    emitted = [];
    const seen = new Set<string>();
    for (const [key, v] of b[j]!) {
      seen.add(key);
      const sum = (state.get(key)?.[0] ?? 0) + v;
      state.set(key, [sum, j]);
      emitted.push([key, sum]);
    }
    for (const [key, [sum, last]] of [...state]) {
      if (!seen.has(key) && j - last > 2) {
        emitted.push([key, 'timeout', sum]);
        state.delete(key);
      }
    }
  }
  return { emitted, state };
}

const pairArb = fc.tuple(fc.constantFrom('a', 'b', 'c', 'd', 'e', 'f', 'g', 'ümlaut', 'k with space'), fc.integer({ min: -5, max: 20 }));
const intervalArb = fc.array(fc.array(pairArb, { maxLength: 25 }), { maxLength: 3 });
const scenarioArb = fc.record({
  intervals: fc.array(intervalArb, { minLength: 1, maxLength: 6 }),
  partitions: fc.integer({ min: 1, max: 5 }),
  inputPartitions: fc.integer({ min: 1, max: 4 }),
  length: fc.integer({ min: 1, max: 4 }),
  slide: fc.integer({ min: 1, max: 3 }),
  checkpointEvery: fc.integer({ min: 1, max: 4 }),
});

describe('every operator matches a plain in-memory reference', () => {
  it('on generated streams, partition counts and windows', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (sc) => {
        const w = { length: sc.length, slide: sc.slide };
        const pipeline = definePipeline({ name: 'operators', partitions: sc.partitions, checkpointEvery: sc.checkpointEvery }, (ctx) => {
          const s = ctx.jsonStream<Pair>();
          for (const c of cases) c.build(s, w).saveAsJsonFiles(c.name);
        });
        const uploads = sc.intervals.map((files) => Object.fromEntries(files.map((recs, f) => [`f${f}.jsonl`, recs.map((r) => JSON.stringify(r) + '\n').join('')])));
        const batches = sc.intervals.map((files) => files.flat() as Pair[]);
        const run = await replayInProcess(pipeline, uploads, { partitions: sc.inputPartitions });
        try {
          for (const c of cases) {
            for (let k = 0; k < batches.length; k++) {
              const got = await run.output(c.name, k);
              const expected = c.expect(batches, k, w);
              const norm = c.normalise ?? ((r: unknown) => r);
              expect(bag(got?.map(norm)), `${c.name} at interval ${k}`).toEqual(bag(expected?.map(norm)));
            }
          }
        } finally {
          await removeDir(path.dirname(run.root));
        }
      }),
      { numRuns: Number(process.env.DSTREAM_PROPERTY_RUNS ?? 12), endOnFailure: true },
    );
  }, 300_000);
});

describe('reduceByKeyAndWindow with an inverse and a filter', () => {
  it("prunes the keys the filter refuses from the window's state, as Spark's filterFunc does", async () => {
    const pipeline = definePipeline({ name: 'filter-pruning', partitions: 2 }, (ctx) => {
      ctx
        .jsonStream<Pair>()
        .reduceByKeyAndWindow(add, 2, 1, { inverse: (a, b) => a - b, filter: ([, v]) => v !== 0 })
        .saveAsJsonFiles('w');
    });
    const line = (r: Pair) => JSON.stringify(r) + '\n';
    const run = await replayInProcess(pipeline, [{ f: line(['a', 5]) }, { f: line(['a', -5]) }, { f: line(['a', 3]) }, {}, {}]);
    try {
      expect(await run.output('w', 0)).toEqual([['a', 5]]);
      // 5 - 5 = 0: refused, so pruned from the state.
      expect(await run.output('w', 1)).toEqual([]);
      // Pruned, a starts again from what entered (3); the 5 leaving is ignored. The plain window [-5, 3] sums to -2.
      expect(await run.output('w', 2)).toEqual([['a', 3]]);
      // The -5 (held before the pruning) is still taken out as it leaves: 3 - (-5). The plain window [3] sums to 3.
      expect(await run.output('w', 3)).toEqual([['a', 8]]);
      // No value of a is left in the window: a leaves (where Spark would keep it, at 5).
      expect(await run.output('w', 4)).toEqual([]);
    } finally {
      await removeDir(path.dirname(run.root));
    }
  });
});
