/**
 * Operators composed at random into pipelines, checked against the same compositions of a plain
 * in-memory reference: where single operators are right but their joints (a union after a
 * shuffle, a window over a join, state over a window) are planned or scheduled wrongly, this is
 * where it shows.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import path from 'node:path';
import { definePipeline, type DStream, type State } from '../../core/index.ts';
import { bag, removeDir, replayInProcess, type ReplayResult } from '../support/stream-harness.ts';
import { compareStorable } from '../../core/rdd/order.ts';
import { reducedWindowSums } from '../support/window-reference.ts';

type Rec = [string, number];
/** A stream in the reference: each interval's records, or undefined where it has no RDD (between a window's slides). */
type RefStream = (Rec[] | undefined)[];

interface Step {
  name: string;
  apply(s: DStream<Rec>): DStream<Rec>;
  ref(s: RefStream): RefStream;
}

const add = (a: number, b: number) => a + b;
const sumByKey = (recs: Rec[]): Rec[] => {
  const m = new Map<string, number>();
  for (const [k, v] of recs) m.set(k, (m.get(k) ?? 0) + v);
  return [...m];
};
const joinByKey = (left: Rec[], right: Rec[], outer: boolean): Rec[] => {
  const r = new Map<string, number[]>();
  for (const [k, v] of right) r.set(k, [...(r.get(k) ?? []), v]);
  return left.flatMap(([k, v]) => (r.get(k) ?? (outer ? [0] : [])).map((w) => [k, v + w] as Rec));
};
const lastN = (s: RefStream, k: number, n: number) => s.slice(Math.max(0, k - n + 1), k + 1).flatMap((b) => b ?? []);
/** Each RDD through `f`; no RDD stays none. */
const each = (s: RefStream, f: (b: Rec[], k: number) => Rec[]): RefStream => s.map((b, k) => (b === undefined ? undefined : f(b, k)));
/** Windows are composed only over a stream with an RDD every interval (their length and slide must be multiples of its slide). */
const everyInterval = (s: RefStream) => s.every((b) => b !== undefined);
const slidingWindow = (length: number, slide: number): Step => ({
  name: `window(${length}, ${slide})`,
  apply: (s) => (s.slide === 1 ? s.window(length, slide) : s),
  ref: (s) => (everyInterval(s) ? s.map((_, k) => ((k + 1) % slide === 0 ? lastN(s, k, length) : undefined)) : s),
});
const even = ([, v]: Rec) => v % 2 === 0;
const byKeyThenValue = (a: Rec, b: Rec) => compareStorable(a[0], b[0]) || a[1] - b[1];

const steps: Step[] = [
  { name: 'map', apply: (s) => s.map(([k, v]) => [k, (v * 7) % 23] as Rec), ref: (s) => each(s, (b) => b.map(([k, v]) => [k, (v * 7) % 23])) },
  { name: 'filter', apply: (s) => s.filter(([, v]) => v % 3 !== 0), ref: (s) => each(s, (b) => b.filter(([, v]) => v % 3 !== 0)) },
  {
    name: 'flatMap',
    apply: (s) => s.flatMap(([k, v]) => (v > 10 ? [[k, v] as Rec, [`${k}+`, v - 10] as Rec] : [[k, v] as Rec])),
    ref: (s) => each(s, (b) => b.flatMap(([k, v]) => (v > 10 ? [[k, v] as Rec, [`${k}+`, v - 10] as Rec] : [[k, v] as Rec]))),
  },
  { name: 'reduceByKey', apply: (s) => s.reduceByKey(add), ref: (s) => each(s, sumByKey) },
  {
    name: 'groupByKey',
    apply: (s) => s.groupByKey().mapValues((vs) => vs.reduce(add, 0)),
    ref: (s) => each(s, sumByKey),
  },
  {
    name: 'countByValue',
    apply: (s) => s.map(([k]) => k).countByValue(),
    ref: (s) => each(s, (b) => sumByKey(b.map(([k]) => [k, 1]))),
  },
  // One record from nothing: an interval with no input still counts 0.
  { name: 'count', apply: (s) => s.count().map((n) => ['count', n] as Rec), ref: (s) => each(s, (b) => [['count', b.length]]) },
  { name: 'repartition', apply: (s) => s.repartition(3), ref: (s) => s },
  { name: 'cache', apply: (s) => s.cache(), ref: (s) => s },
  {
    name: 'union-with-self',
    apply: (s) => s.union(s.mapValues((v) => v + 1)),
    ref: (s) => each(s, (b) => [...b, ...b.map(([k, v]) => [k, v + 1] as Rec)]),
  },
  {
    name: 'join-with-self',
    apply: (s) => s.join(s.filter(even)).mapValues(([a, b]) => a + b),
    ref: (s) => each(s, (b) => joinByKey(b, b.filter(even), false)),
  },
  {
    name: 'leftOuterJoin-with-self',
    apply: (s) => s.leftOuterJoin(s.filter(even)).mapValues(([a, b]) => a + (b ?? 0)),
    ref: (s) => each(s, (b) => joinByKey(b, b.filter(even), true)),
  },
  {
    name: 'transform',
    apply: (s) => s.transform((rdd, k) => rdd.filter(([, v]) => (v + k) % 4 !== 0)),
    ref: (s) => each(s, (b, k) => b.filter(([, v]) => (v + k) % 4 !== 0)),
  },
  {
    name: 'fullOuterJoin-with-self',
    apply: (s) => s.fullOuterJoin(s.filter(even).mapValues((v) => v + 1)).mapValues(([a, b]) => (a ?? 0) * 100 + (b ?? 0)),
    ref: (s) =>
      each(s, (b) => {
        const right = b.filter(even).map(([k, v]) => [k, v + 1] as Rec);
        const l = new Map<string, number[]>();
        const r = new Map<string, number[]>();
        for (const [k, v] of b) l.set(k, [...(l.get(k) ?? []), v]);
        for (const [k, v] of right) r.set(k, [...(r.get(k) ?? []), v]);
        return [...new Set([...l.keys(), ...r.keys()])].flatMap((k) =>
          (l.get(k) ?? [0]).flatMap((a) => (r.get(k) ?? [0]).map((w) => [k, a * 100 + w] as Rec)),
        );
      }),
  },
  { name: 'sortByKey', apply: (s) => s.transform((rdd) => rdd.sortByKey({ partitions: 3 })), ref: (s) => s },
  { name: 'sortBy-descending', apply: (s) => s.transform((rdd) => rdd.sortBy(([, v]) => v, { ascending: false })), ref: (s) => s },
  {
    // Sorted first, so the records taken do not depend on how the input was split.
    name: 'sortByKey-take',
    apply: (s) => s.transform((rdd) => rdd.sortByKey().take(4)),
    ref: (s) => each(s, (b) => [...b].sort(byKeyThenValue).slice(0, 4)),
  },
  { name: 'top', apply: (s) => s.transform((rdd) => rdd.top(3)), ref: (s) => each(s, (b) => [...b].sort(byKeyThenValue).reverse().slice(0, 3)) },
  { name: 'zipWithIndex', apply: (s) => s.transform((rdd) => rdd.zipWithIndex().keys()), ref: (s) => s },
  { name: 'coalesce', apply: (s) => s.transform((rdd) => rdd.coalesce(2)), ref: (s) => s },
  {
    name: 'cartesian-with-self',
    apply: (s) => s.transform((rdd) => rdd.cartesian(rdd.filter(([k]) => k === 'a')).map(([[k, v], [, w]]) => [k, v + w] as Rec)),
    ref: (s) => each(s, (b) => b.flatMap(([k, v]) => b.filter(([x]) => x === 'a').map(([, w]) => [k, v + w] as Rec))),
  },
  slidingWindow(2, 1),
  slidingWindow(2, 2),
  slidingWindow(3, 3),
  {
    name: 'countByValueAndWindow',
    apply: (s) => (s.slide === 1 ? s.map(([k]) => k).countByValueAndWindow(2, 1) : s),
    ref: (s) => (everyInterval(s) ? s.map((_, k) => sumByKey(lastN(s, k, 2).map(([key]) => [key, 1]))) : s),
  },
  {
    name: 'mapWithState-snapshots',
    // Running sums; a key times out once more than 2 intervals have passed since its last value. Snapshots do not depend on the order
    // values arrive in, which the steps before may change.
    apply: (s) =>
      s
        .mapWithState({
          timeout: 2,
          update: (_key: string, v: number | undefined, state: State<number>) => {
            if (!state.isTimingOut()) state.update((state.exists() ? state.get() : 0) + v!);
            return undefined;
          },
        })
        .stateSnapshots() as DStream<Rec>,
    ref: (s) => {
      // Between the stream's slides the state is carried, with no call and no RDD (as Spark's).
      const state = new Map<string, [number, number]>();
      return each(s, (b, j) => {
        for (const [key, v] of b) state.set(key, [(state.get(key)?.[0] ?? 0) + v, j]);
        for (const [key, [, last]] of [...state]) if (j - last > 2) state.delete(key);
        return [...state].map(([key, [sum]]) => [key, sum] as Rec);
      });
    },
  },
  {
    // The filter prunes the window's state (Spark's filterFunc), so later windows are computed without the refused keys.
    name: 'reduceByKeyAndWindow-inverse',
    apply: (s) => (s.slide === 1 ? s.reduceByKeyAndWindow(add, 3, 1, { inverse: (a, b) => a - b, filter: ([, v]) => v % 4 !== 0 }) : s),
    ref: (s) => (everyInterval(s) ? reducedWindowSums(s as Rec[][], 3, 1, ([, v]) => v % 4 !== 0) : s),
  },
  {
    name: 'updateStateByKey',
    // A running total per key, dropped (and started again) once past 60.
    apply: (s) =>
      s.updateStateByKey<string, number, number>((vs, total) => {
        const next = (total ?? 0) + vs.reduce(add, 0);
        return next > 60 ? undefined : next;
      }),
    ref: (s) => {
      let state = new Map<string, number>();
      return each(s, (b) => {
        const next = new Map<string, number>();
        const batch = new Map(sumByKey(b));
        for (const key of new Set([...state.keys(), ...batch.keys()])) {
          const total = (state.get(key) ?? 0) + (batch.get(key) ?? 0);
          if (total <= 60) next.set(key, total);
        }
        state = next;
        return [...state];
      });
    },
  },
];

const stateSteps = steps.flatMap((step, i) => (step.name === 'updateStateByKey' || step.name === 'mapWithState-snapshots' ? [i] : []));

const recArb = fc.tuple(fc.constantFrom('a', 'b', 'c', 'd', 'é', 'k k'), fc.integer({ min: 0, max: 20 }));
const scenarioArb = fc.record({
  intervals: fc.array(fc.array(fc.array(recArb, { maxLength: 15 }), { maxLength: 2 }), { minLength: 2, maxLength: 5 }),
  chains: fc.array(fc.array(fc.integer({ min: 0, max: steps.length - 1 }), { minLength: 2, maxLength: 4 }), { minLength: 3, maxLength: 3 }),
  // And always one chain of state over a window of random length and slide, then more steps.
  windowed: fc.record({
    slide: fc.integer({ min: 1, max: 3 }),
    slides: fc.integer({ min: 1, max: 3 }),
    state: fc.constantFrom(...stateSteps),
    tail: fc.array(fc.integer({ min: 0, max: steps.length - 1 }), { maxLength: 2 }),
  }),
  partitions: fc.integer({ min: 1, max: 4 }),
  inputPartitions: fc.integer({ min: 1, max: 3 }),
  checkpointEvery: fc.integer({ min: 1, max: 3 }),
});

type Scenario = Omit<typeof scenarioArb extends fc.Arbitrary<infer S> ? S : never, 'intervals'> & { intervals: Rec[][][] };

/** The pipeline of a scenario: its random chains, and one chain of state over a window, each saved as an output. */
function scenarioPipeline(sc: Scenario) {
  const { slide, slides, state, tail } = sc.windowed;
  const chains = [...sc.chains.map((chain) => chain.map((i) => steps[i]!)), [slidingWindow(slide * slides, slide), steps[state]!, ...tail.map((i) => steps[i]!)]];
  const pipeline = definePipeline({ name: 'compositions', partitions: sc.partitions, checkpointEvery: sc.checkpointEvery }, (ctx) => {
    const input = ctx.jsonStream<Rec>();
    chains.forEach((chain, c) => chain.reduce((s, step) => step.apply(s), input).saveAsJsonFiles(`chain${c}`));
  });
  const uploads = sc.intervals.map((files) => Object.fromEntries(files.map((recs, f) => [`f${f}.jsonl`, recs.map((r) => JSON.stringify(r) + '\n').join('')])));
  const input: RefStream = sc.intervals.map((files) => files.flat() as Rec[]);
  return { chains, pipeline, uploads, input };
}

async function expectReference(run: ReplayResult, chains: Step[][], input: RefStream): Promise<void> {
  for (const [c, chain] of chains.entries()) {
    const expected = chain.reduce((s, step) => step.ref(s), input);
    for (let k = 0; k < input.length; k++) {
      const got = await run.output(`chain${c}`, k);
      expect(bag(got), `${chain.map((s) => s.name).join(' → ')} at interval ${k}`).toEqual(bag(expected[k]));
    }
  }
}

describe('operators composed at random', () => {
  it('match the same compositions of the reference', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (sc) => {
        const { chains, pipeline, uploads, input } = scenarioPipeline(sc);
        const run = await replayInProcess(pipeline, uploads, { partitions: sc.inputPartitions });
        try {
          await expectReference(run, chains, input);
        } finally {
          await removeDir(path.dirname(run.root));
        }
      }),
      { numRuns: Number(process.env.DSTREAM_PROPERTY_RUNS ?? 12), endOnFailure: true },
    );
  }, 300_000);

  it('over intervals with no uploads, commit without tasks what tasks would have written, byte for byte', async () => {
    // The stream starts before its first upload, and uploads stop and start again.
    const withGaps = scenarioArb.chain((sc) =>
      fc.array(fc.integer({ min: 0, max: 3 }), { minLength: sc.intervals.length, maxLength: sc.intervals.length }).map((gaps) => ({
        ...sc,
        intervals: [[], ...sc.intervals.flatMap((files, i) => [files, ...Array.from({ length: gaps[i]! }, (): Rec[][] => [])])],
      })),
    );
    await fc.assert(
      fc.asyncProperty(withGaps, async (sc) => {
        const { chains, pipeline, uploads, input } = scenarioPipeline(sc);

        const run = await replayInProcess(pipeline, uploads, { partitions: sc.inputPartitions });
        const everyTask = await replayInProcess(pipeline, uploads, { partitions: sc.inputPartitions, runEmptyStages: true });
        try {
          await expectReference(run, chains, input);
          expect(await run.files()).toEqual(await everyTask.files());
          // Never more tasks, and fewer in all: before the first upload at least the window's input is empty.
          const tasks = (r: ReplayResult) => r.reports.map((report) => report.tasks);
          tasks(run).forEach((n, k) => expect(n, `tasks at interval ${k}`).toBeLessThanOrEqual(tasks(everyTask)[k]!));
          expect(tasks(run).reduce((a, b) => a + b)).toBeLessThan(tasks(everyTask).reduce((a, b) => a + b));
        } finally {
          await removeDir(path.dirname(run.root));
          await removeDir(path.dirname(everyTask.root));
        }
      }),
      { numRuns: Number(process.env.DSTREAM_PROPERTY_RUNS ?? 4), endOnFailure: true },
    );
  }, 300_000);
});
