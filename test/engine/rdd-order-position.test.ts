/**
 * The RDD operators whose result depends on order or position (sortBy, sortByKey, take, first,
 * top, takeOrdered, zipWithIndex, coalesce, cartesian, foreachPartition), against an in-memory
 * reference on generated streams: random records, uploads, input partitioning and operator
 * partition counts. Where the result depends on how the input was split (take, zipWithIndex,
 * coalesce), the reference reads the split from the pipeline itself: an output of each input
 * partition's records, in order.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import path from 'node:path';
import { definePipeline, type Rdd } from '../../core/index.ts';
import { compareStorable } from '../../core/rdd/order.ts';
import { coalescedRange } from '../../core/rdd/plan.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';

type Pair = [string, number];

const byKeyThenValue = (a: Pair, b: Pair) => compareStorable(a[0], b[0]) || a[1] - b[1];
const byValue = (a: Pair, b: Pair) => a[1] - b[1];
const sumByKey = (pairs: Pair[]) => {
  const m = new Map<string, number>();
  for (const [k, v] of pairs) m.set(k, (m.get(k) ?? 0) + v);
  return [...m];
};
const product = <A, B>(as: A[], bs: B[]) => as.flatMap((a) => bs.map((b) => [a, b]));

const pairArb = fc.tuple(fc.constantFrom('a', 'b', 'c', 'd', 'é', 'k k', 'Z', ''), fc.integer({ min: -5, max: 20 }));
const scenarioArb = fc.record({
  intervals: fc.array(fc.array(fc.array(pairArb, { maxLength: 30 }), { maxLength: 3 }), { minLength: 1, maxLength: 3 }),
  inputPartitions: fc.integer({ min: 1, max: 4 }),
  sortPartitions: fc.integer({ min: 1, max: 5 }),
  coalesceTo: fc.integer({ min: 1, max: 5 }),
  n: fc.integer({ min: 0, max: 12 }),
});

describe('order and position operators match an in-memory reference', () => {
  it('on generated streams and partitionings', async () => {
    await fc.assert(
      fc.asyncProperty(scenarioArb, async (sc) => {
        // foreachPartition's calls, by interval: tasks run in this process.
        const calls: { k: number; p: number; records: Pair[] }[] = [];
        const pipeline = definePipeline({ name: 'order-position', partitions: 3 }, (ctx) => {
          const s = ctx.jsonStream<Pair>();
          const out = (name: string, f: (rdd: Rdd<Pair>, k: number) => Rdd<unknown>) => s.transform(f).saveAsJsonFiles(name);
          out('layout', (r) => r.mapPartitions((records, p) => [[p, records]]));
          out('sortByKey', (r) => r.sortByKey({ partitions: sc.sortPartitions }));
          out('sortByKey-desc', (r) => r.sortByKey({ ascending: false, partitions: sc.sortPartitions }));
          out('sortBy', (r) => r.sortBy(([k, v]) => [v, k]));
          out('take', (r) => r.take(sc.n));
          out('first', (r) => r.first());
          out('top', (r) => r.top(sc.n));
          out('top-by-value', (r) => r.top(sc.n, (a, b) => a[1] - b[1]));
          out('takeOrdered', (r) => r.takeOrdered(sc.n));
          out('zipWithIndex', (r) => r.zipWithIndex());
          out('coalesce', (r) => r.coalesce(sc.coalesceTo).mapPartitions((records, p) => [[p, records]]));
          out('coalesce-after-shuffle', (r) => r.reduceByKey((a, b) => a + b, 4).coalesce(sc.coalesceTo));
          out('cartesian', (r) => r.cartesian(r.filter(([, v]) => v % 3 === 0)));
          out('cartesian-of-a-shuffle-with-itself', (r) => {
            const sums = r.reduceByKey((a, b) => a + b, 3);
            return sums.cartesian(sums);
          });
          out('foreachPartition', (r, k) => {
            r.foreachPartition((records, p) => void calls.push({ k, p, records }));
            return r.count();
          });
        });
        const uploads = sc.intervals.map((files) => Object.fromEntries(files.map((recs, f) => [`f${f}.jsonl`, recs.map((r) => JSON.stringify(r) + '\n').join('')])));
        const run = await replayInProcess(pipeline, uploads, { partitions: sc.inputPartitions });
        try {
          for (let k = 0; k < sc.intervals.length; k++) {
            const got = async (name: string) => (await run.output(name, k))!;
            const at = (name: string) => `${name} at interval ${k}`;
            const layout = (await got('layout')) as [number, Pair[]][];
            expect(layout.map(([p]) => p), at('layout')).toEqual(layout.map((_, p) => p));
            // The input in partition order, then record order: what Spark's take and zipWithIndex follow.
            const input = layout.flatMap(([, records]) => records);
            expect(bag(input), at('input')).toEqual(bag(sc.intervals[k]!.flat()));

            const sorted = [...input].sort(byKeyThenValue);
            expect(await got('sortByKey'), at('sortByKey')).toEqual(sorted);
            expect(await got('sortByKey-desc'), at('sortByKey-desc')).toEqual([...sorted].reverse());
            expect(await got('sortBy'), at('sortBy')).toEqual([...input].sort((a, b) => a[1] - b[1] || compareStorable(a[0], b[0])));
            expect(await got('take'), at('take')).toEqual(input.slice(0, sc.n));
            expect(await got('first'), at('first')).toEqual(input.slice(0, 1));
            expect(await got('top'), at('top')).toEqual([...sorted].reverse().slice(0, sc.n));
            // Equal values: partition order, then record order (a stable sort of the input).
            expect(await got('top-by-value'), at('top-by-value')).toEqual([...input].sort((a, b) => byValue(b, a)).slice(0, sc.n));
            expect(await got('takeOrdered'), at('takeOrdered')).toEqual(sorted.slice(0, sc.n));
            expect(await got('zipWithIndex'), at('zipWithIndex')).toEqual(input.map((r, i) => [r, i]));

            const merged = Math.min(sc.coalesceTo, layout.length);
            const expectedCoalesce = Array.from({ length: merged }, (_, q) => {
              const [start, end] = coalescedRange(q, layout.length, merged);
              return [q, layout.slice(start, end).flatMap(([, records]) => records)];
            });
            expect(await got('coalesce'), at('coalesce')).toEqual(expectedCoalesce);
            expect(bag(await got('coalesce-after-shuffle')), at('coalesce-after-shuffle')).toEqual(bag(sumByKey(input)));
            expect(bag(await got('cartesian')), at('cartesian')).toEqual(bag(product(input, input.filter(([, v]) => v % 3 === 0))));
            expect(bag(await got('cartesian-of-a-shuffle-with-itself')), at('cartesian-of-a-shuffle-with-itself')).toEqual(bag(product(sumByKey(input), sumByKey(input))));

            // At least once per partition, each call with the partition's records.
            const mine = calls.filter((c) => c.k === k);
            expect(new Set(mine.map((c) => c.p)), at('foreachPartition')).toEqual(new Set(layout.map(([p]) => p)));
            for (const c of mine) expect(c.records, at(`foreachPartition of partition ${c.p}`)).toEqual(layout[c.p]![1]);
          }
        } finally {
          await removeDir(path.dirname(run.root));
        }
      }),
      { numRuns: Number(process.env.DSTREAM_PROPERTY_RUNS ?? 12), endOnFailure: true },
    );
  }, 300_000);
});
