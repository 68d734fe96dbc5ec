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
import { mkdir, writeFile } from 'node:fs/promises';
import { defineBatch, definePipeline, type Rdd } from '../../core/index.ts';
import { EmbeddedRuntime } from '../../local/runtime/embedded-runtime.ts';
import { compareStorable } from '../../core/rdd/order.ts';
import { coalescedRange } from '../../core/rdd/plan.ts';
import { bag, readAllLines, removeDir, replayInProcess, tempDir } from '../support/stream-harness.ts';

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

describe('sorting', () => {
  const sorting = definePipeline({ name: 'sorting', partitions: 3 }, (ctx) => {
    const s = ctx.jsonStream<Pair>();
    s.transform((r) => r.sortByKey({ partitions: 4 })).saveAsJsonFiles('byKey');
    s.transform((r) => r.sortBy(([, v]) => v % 7, { ascending: false, partitions: 3 })).saveAsJsonFiles('by');
  });
  // 600 records over 200 keys, each key three times with values that tie under v % 7.
  const records: Pair[] = Array.from({ length: 600 }, (_, i) => [`k${String((i * 37) % 200).padStart(3, '0')}`, i % 14]);
  const lines = (rs: Pair[]) => rs.map((r) => JSON.stringify(r) + '\n').join('');

  it('writes the same bytes on every run, in ranges of similar size; split otherwise, the input sorts to the same sequence', async () => {
    const [first, again, resplit] = await Promise.all([
      replayInProcess(sorting, [{ 'all.jsonl': lines(records) }], { partitions: 2 }),
      replayInProcess(sorting, [{ 'all.jsonl': lines(records) }], { partitions: 2 }),
      replayInProcess(sorting, [{ 'b.jsonl': lines(records.slice(250)), 'a.jsonl': lines(records.slice(0, 250)) }], { partitions: 3 }),
    ]);
    try {
      const [one, two] = await Promise.all([first!.files(), again!.files()]);
      expect([...two!.keys()]).toEqual([...one!.keys()]);
      for (const [file, bytes] of one!) expect(two!.get(file), file).toBe(bytes);
      for (const name of ['byKey', 'by']) expect(await resplit!.output(name, 0), name).toEqual(await first!.output(name, 0));

      // Part 0 holds the smallest keys; no range is empty or holds more than half.
      const parts = [...one!].filter(([file]) => file.startsWith('output/byKey/') && file.includes('part-')).map(([, text]) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Pair));
      expect(parts).toHaveLength(4);
      for (const part of parts) {
        expect(part.length).toBeGreaterThan(60);
        expect(part.length).toBeLessThan(300);
      }
      for (let i = 1; i < parts.length; i++) expect(compareStorable(parts[i - 1]!.at(-1)![0], parts[i]![0]![0])).toBeLessThan(0);
    } finally {
      for (const r of [first, again, resplit]) await removeDir(path.dirname(r!.root));
    }
  });
});

describe('in a batch job', () => {
  it('take, first, top and zipWithIndex are small RDDs collect brings back; foreachPartition runs on the workers and is in no result', async () => {
    const seen = new Map<number, string[]>();
    const job = defineBatch({ name: 'heads' }, (sc) => {
      const lines = sc.textFile('logs/');
      lines.take(2).collect('take');
      lines.first().collect('first');
      lines.top(2).collect('top');
      lines.sortBy((l) => l).zipWithIndex().collect('indexed');
      lines.foreachPartition((records, p) => void seen.set(p, records));
    });
    const base = await tempDir();
    const root = path.join(base, 'root');
    await mkdir(path.join(root, 'logs'), { recursive: true });
    await writeFile(path.join(root, 'logs', 'a.txt'), 'pear\napple\n');
    await writeFile(path.join(root, 'logs', 'b.txt'), 'fig\n');
    const runtime = await EmbeddedRuntime.open({ pipelinePath: 'in-process', inProcess: job, root, workers: 2, partitions: 2 });
    try {
      const result = await runtime.batch();
      expect(result.collected).toEqual({
        take: ['pear', 'apple'],
        first: ['pear'],
        top: ['pear', 'fig'],
        indexed: [['apple', 0], ['fig', 1], ['pear', 2]],
      });
      expect(result.outputs).toEqual({});
      expect([...seen.values()].flat().sort()).toEqual(['apple', 'fig', 'pear']);
      expect(await readAllLines(path.join(root, 'output'))).toEqual([]);
    } finally {
      await runtime.close();
      await removeDir(base);
    }
  });
});
