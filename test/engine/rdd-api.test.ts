/**
 * The RDD operators Spark users reach for inside `transform` (and in batch jobs): each against
 * what Spark gives, over records spread across partitions.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';

type Pair = [string, number];

const pipeline = definePipeline({ name: 'rdd-api', partitions: 3 }, (ctx) => {
  const pairs = ctx.jsonStream<Pair>();
  const op = (name: string, f: (rdd: import('../../core/index.ts').Rdd<Pair>) => import('../../core/index.ts').Rdd<unknown>) =>
    pairs.transform((rdd) => f(rdd)).saveAsJsonFiles(name);
  op('keyBy', (r) => r.keyBy(([k, v]) => `${k}${v}`));
  op('distinct', (r) => r.distinct());
  op('subtract', (r) => r.subtract(r.filter(([, v]) => v > 1)));
  op('intersection', (r) => r.intersection(r.filter(([k]) => k === 'a')));
  op('subtractByKey', (r) => r.subtractByKey(r.filter(([k]) => k === 'b')));
  op('aggregateByKey', (r) => r.aggregateByKey<string, number, number[]>([], (acc, v) => (acc.push(v), acc), (a, b) => a.concat(b)).mapValues((vs) => vs.sort((x, y) => x - y)));
  op('foldByKey', (r) => r.foldByKey(100, (a, b) => a + b));
  op('countByKey', (r) => r.countByKey());
  op('sample', (r) => r.sample(0.5, 7));
});

it('keyBy, distinct, subtract, intersection, subtractByKey, aggregateByKey, foldByKey, countByKey and sample give what Spark gives', async () => {
  const records: Pair[] = [['a', 1], ['a', 1], ['b', 2], ['a', 3], ['c', 1]];
  const run = await replayInProcess(pipeline, [{ 'x.jsonl': records.slice(0, 2).map((r) => JSON.stringify(r) + '\n').join(''), 'y.jsonl': records.slice(2).map((r) => JSON.stringify(r) + '\n').join('') }], { partitions: 2 });
  try {
    const out = (name: string) => run.output(name, 0);
    expect(bag(await out('keyBy'))).toEqual(bag(records.map((r) => [`${r[0]}${r[1]}`, r])));
    expect(bag(await out('distinct'))).toEqual(bag([['a', 1], ['b', 2], ['a', 3], ['c', 1]]));
    // Duplicates of this dataset are kept, as Spark's subtract keeps them.
    expect(bag(await out('subtract'))).toEqual(bag([['a', 1], ['a', 1], ['c', 1]]));
    expect(bag(await out('intersection'))).toEqual(bag([['a', 1], ['a', 3]]));
    expect(bag(await out('subtractByKey'))).toEqual(bag([['a', 1], ['a', 1], ['a', 3], ['c', 1]]));
    expect(bag(await out('aggregateByKey'))).toEqual(bag([['a', [1, 1, 3]], ['b', [2]], ['c', [1]]]));
    // The zero is folded in once per key and map partition, as in Spark: here the values of a come from two files.
    const folded = new Map((await out('foldByKey')) as Pair[]);
    expect(folded.get('b')).toBe(102);
    expect([105, 205]).toContain(folded.get('a'));
    expect(bag(await out('countByKey'))).toEqual(bag([['a', 3], ['b', 1], ['c', 1]]));
    const sampled = (await out('sample')) as Pair[];
    expect(sampled.length).toBeLessThanOrEqual(records.length);
    for (const r of sampled) expect(records).toContainEqual(r);
  } finally {
    await removeDir(path.dirname(run.root));
  }
});

it('a sample is the same on every run', async () => {
  const lines = Array.from({ length: 200 }, (_, i) => JSON.stringify([`k${i}`, i]) + '\n').join('');
  const runs = await Promise.all([0, 1].map(() => replayInProcess(pipeline, [{ 'in.jsonl': lines }], { partitions: 2 })));
  try {
    const [a, b] = await Promise.all(runs.map((r) => r.output('sample', 0)));
    expect(a!.length).toBeGreaterThan(50);
    expect(a!.length).toBeLessThan(150);
    expect(bag(a)).toEqual(bag(b));
  } finally {
    for (const r of runs) await removeDir(path.dirname(r.root));
  }
});
