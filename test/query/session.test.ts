/**
 * Queries over a stream's store: what a shell session answers about a replayed root equals what
 * the pipeline computes in memory, read from committed outputs, uploads and persisted state; a
 * query leaves the store as it found it, and cannot write under the stream's prefixes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { definePipeline, type State } from '../../core/index.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { listAll } from '../../core/ports/object-store.ts';
import { QueryWriteRefusedError, ScratchStore } from '../../core/query/scratch-store.ts';
import { QueryCancelledError, QuerySession } from '../../local/shell/session.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';

type Pair = [string, number];

const pipeline = definePipeline({ name: 'queried', partitions: 3, checkpointEvery: 2 }, (ctx) => {
  const counts = ctx.textStream().flatMap((l) => l.split(' ').filter((w) => w.length > 0)).map((w) => [w, 1] as const).reduceByKey((a, b) => a + b);
  counts.saveAsJsonFiles('counts');
  counts.updateStateByKey((vs, total: number | undefined) => (total ?? 0) + vs.reduce((a, b) => a + b, 0)).saveAsJsonFiles('totals');
});

const batches = [['a b a', 'c'], ['b b', 'a d'], ['d d d'], ['a', 'e e']];

/** The pipeline in memory: each interval's counts, and the totals after interval k. */
const countsOf = (k: number) => tally(batches[k]!.flatMap((l) => l.split(' ')));
const totalsAt = (k: number) => tally(batches.slice(0, k + 1).flat().flatMap((l) => l.split(' ')));
function tally(words: string[]): Pair[] {
  const m = new Map<string, number>();
  for (const w of words) m.set(w, (m.get(w) ?? 0) + 1);
  return [...m];
}

let root: string;
let session: QuerySession;

beforeAll(async () => {
  const run = await replayInProcess(pipeline, batches.map((lines) => ({ 'u.txt': lines.join('\n') + '\n' })));
  root = run.root;
  // Tasks in this process: worker processes run dist/, whose library code hashes apart from the
  // sources vitest runs; test/query/shell-cli.test.ts runs queries on worker processes.
  session = new QuerySession({ store: new FsObjectStore(root), workers: 2 });
}, 60_000);
afterAll(async () => {
  await session.close();
  await removeDir(path.dirname(root));
});

describe('a query session over a replayed root', () => {
  it('answers from committed outputs, as the pipeline computes in memory', async () => {
    const { sc } = session;
    expect(await sc.intervals()).toEqual({ first: 0, last: 3 });
    // Words counted over intervals 1 to 2, from the per-interval counts.
    const summed = await sc.output<Pair>('counts', { from: 1, to: 2 }).reduceByKey((a: number, b: number) => a + b).collect();
    expect(bag(summed)).toEqual(bag(tally([...batches[1]!, ...batches[2]!].flatMap((l) => l.split(' ')))));
    // A range left open ends at the last committed interval.
    expect(await sc.output('counts').count()).toBe(batches.reduce((n, _, k) => n + countsOf(k).length, 0));
    expect(await sc.output<Pair>('totals', { from: 3 }).top(2, (x: Pair, y: Pair) => x[1] - y[1] || (x[0] < y[0] ? 1 : -1))).toEqual([['a', 4], ['d', 4]]);
    expect(bag(await sc.output<Pair>('counts', { to: 3 }).countByKey())).toEqual(bag(tally(batches.flatMap((ls, k) => countsOf(k).map(([w]) => w)))));
    expect((await sc.textFile('intake/uploads/').take(2)).length).toBe(2);
  }, 60_000);

  it('reads an operator\'s state at a committed interval from its checkpoint or its cache, by output name or stream id', async () => {
    const { sc } = session;
    // checkpointEvery 2: interval 1's state is a checkpoint, interval 2's is in the cache.
    for (const k of [1, 2]) expect(bag(await (await sc.state('totals', k)).collect())).toEqual(bag(totalsAt(k)));
    await expect(sc.state('counts', 1)).rejects.toThrow(/no state named counts.*totals/);
    await expect(sc.state('totals', 9)).rejects.toThrow(/interval 9 is not committed/);
  }, 60_000);

  it('runs every query on the workers it started for the first, until a query is cancelled: the next starts new ones', async () => {
    const warm = await session.warm();
    await session.sc.output('counts').count();
    const counted = await session.sc.output('counts', { from: 1, to: 1 }).count();
    expect(counted).toBe(countsOf(1).length);
    expect(await session.warm()).toBe(warm);

    const cancelled = session.sc.output('counts').collect();
    session.cancel();

    await expect(cancelled).rejects.toThrow(QueryCancelledError);
    const replaced = await session.warm();
    expect(replaced).not.toBe(warm);
    expect(await session.sc.output('counts', { from: 1, to: 1 }).count()).toBe(counted);
    expect(await session.warm()).toBe(replaced);
  }, 60_000);

  it('ships the session variables a function uses by value, and refuses what cannot be shipped', async () => {
    const vars: Record<string, unknown> = { threshold: 2, label: (w: string) => `word ${w}`, when: new Date(0) };
    const shipping = new QuerySession({ store: new FsObjectStore(root), workers: 1, lookup: (n) => (n in vars ? { value: vars[n] } : undefined) });
    try {
      const rdd = shipping.sc.output<Pair>('totals', { from: 3, to: 3 }).filter(([, n]: Pair) => n >= (threshold as number)).map(([w]: Pair) => (label as (w: string) => string)(w));
      expect((await rdd.collect()).sort()).toEqual(['word a', 'word b', 'word d', 'word e']);
      expect(() => shipping.sc.output('totals').filter(() => when !== null)).toThrow(/variable when, a Date, which cannot be sent to the workers/);
    } finally {
      await shipping.close();
    }
  }, 60_000);

  it('leaves the store as it found it, and cannot write under the stream\'s prefixes', async () => {
    const store = new FsObjectStore(root);
    const before = (await listAll(store, '')).map((o) => o.key);
    await session.sc.output('counts').collect();
    expect((await listAll(store, '')).map((o) => o.key)).toEqual(before);
    const scratch = new ScratchStore(store, 'test');
    await expect(scratch.put('output/counts/interval=000001/part-00000', 'x')).rejects.toThrow(QueryWriteRefusedError);
    await expect(scratch.put('lineage/interval=000001/_COMMITTED', '')).rejects.toThrow(QueryWriteRefusedError);
    expect(() => session.sc.output('counts').saveAsJsonFile('mine')).toThrow(/not available in a query/);
  }, 60_000);
});

declare const threshold: unknown, label: unknown, when: unknown;

it("keeps a recomputation's writes in the scratch: an interval's cache over the stream's, its task records apart from the stream's", async () => {
  const base = new FsObjectStore(path.join(path.dirname(root), 'overlay'));
  await base.put('cache/interval=000001/persist/d4/part-00000', 'stream 0');
  await base.put('lineage/interval=000001/tasks/s1/part-00000.json', '{}');
  const scratch = new ScratchStore(base, 'overlay');

  await scratch.put('cache/interval=000001/persist/d4/part-00001', 'recomputed 1');
  await scratch.put('lineage/interval=000001/tasks/s1/part-00001.json', '{}');

  const text = async (key: string) => Buffer.from((await scratch.get(key)) ?? []).toString();
  expect([await text('cache/interval=000001/persist/d4/part-00000'), await text('cache/interval=000001/persist/d4/part-00001')]).toEqual(['stream 0', 'recomputed 1']);
  expect((await listAll(scratch, 'cache/interval=000001/persist/d4/')).map((o) => o.key)).toEqual(['cache/interval=000001/persist/d4/part-00000', 'cache/interval=000001/persist/d4/part-00001']);
  expect((await listAll(scratch, 'lineage/interval=000001/tasks/s1/')).map((o) => o.key)).toEqual(['lineage/interval=000001/tasks/s1/part-00001.json']);
  expect(await scratch.putIfAbsent('cache/interval=000001/persist/d4/part-00000', 'again')).toBe(false);
  expect((await listAll(base, 'cache/')).map((o) => o.key)).toEqual(['cache/interval=000001/persist/d4/part-00000']);
  await scratch.clear();
  expect((await listAll(base, '')).map((o) => o.key)).toEqual(['cache/interval=000001/persist/d4/part-00000', 'lineage/interval=000001/tasks/s1/part-00000.json']);
});

it("names mapWithState's state by either output it writes: what it emits, or its snapshots", async () => {
  const sessions = definePipeline({ name: 'queried-sessions' }, (ctx) => {
    const emitted = ctx.textStream().map((w) => [w, 1] as const).mapWithState({
      update: (key: string, one: number | undefined, state: State<number>) => {
        state.update((state.exists() ? state.get() : 0) + (one ?? 0));
        return [key, state.get()] as const;
      },
    });
    emitted.saveAsJsonFiles('emitted');
    emitted.stateSnapshots().saveAsJsonFiles('open');
  });
  const run = await replayInProcess(sessions, [{ 'u.txt': 'a\nb\na\n' }]);
  const opened = new QuerySession({ store: new FsObjectStore(run.root), workers: 1 });
  try {
    const { sc } = opened;

    const [byEmitted, bySnapshots] = [await (await sc.state('emitted', 0)).count(), await (await sc.state('open', 0)).count()];

    expect([byEmitted, bySnapshots]).toEqual([2, 2]);
  } finally {
    await opened.close();
    await removeDir(path.dirname(run.root));
  }
}, 60_000);

describe('state the cache no longer holds', () => {
  /** Every object of the root and its bytes: what "the stream's prefixes did not change" is checked on. */
  const contents = async (store: FsObjectStore) => {
    const all = new Map<string, string>();
    for (const { key } of await listAll(store, '')) all.set(key, Buffer.from((await store.get(key))!).toString('base64'));
    return all;
  };

  it('is recomputed from lineage with the stream\'s pipeline, in the query\'s scratch, the same bytes as the cache held', async () => {
    const run = await replayInProcess(pipeline, batches.map((lines) => ({ 'u.txt': lines.join('\n') + '\n' })));
    const store = new FsObjectStore(run.root);
    const recomputing = new QuerySession({ store, workers: 2, pipeline });
    try {
      // checkpointEvery 2: the state of intervals 1 and 3 is checkpointed, of 0 and 2 cached.
      const fromCache = JSON.stringify(await (await recomputing.sc.state('totals', 2)).collect());
      // Interval 2's cache dropped as the driver's GC drops it (its state and shuffle blocks), and
      // interval 1's checkpoint by hand: 2's state is recomputed from 1's, recomputed from 0's cache.
      await rm(path.join(run.root, 'cache/interval=000002'), { recursive: true });
      await rm(path.join(run.root, 'checkpoints/interval=000001'), { recursive: true });
      const before = await contents(store);
      expect([...before.keys()].filter((k) => /^(cache\/interval=000002|checkpoints\/interval=000001)\//.test(k))).toEqual([]);

      const recomputed = await (await recomputing.sc.state('totals', 2)).collect();

      expect(JSON.stringify(recomputed)).toBe(fromCache);
      expect(bag(recomputed)).toEqual(bag(totalsAt(2)));
      expect(await contents(store)).toEqual(before);
    } finally {
      await recomputing.close();
      await removeDir(path.dirname(run.root));
    }
  }, 60_000);

  it('is refused without the pipeline, naming the option that gives it, and with code other than the code that ran the interval', async () => {
    const run = await replayInProcess(pipeline, batches.slice(0, 2).map((lines) => ({ 'u.txt': lines.join('\n') + '\n' })));
    const store = new FsObjectStore(run.root);
    await rm(path.join(run.root, 'cache/interval=000000'), { recursive: true });
    // The same pipeline, upgraded: its state is now cut into 4 partitions.
    const upgraded = definePipeline({ name: 'queried', partitions: 4, checkpointEvery: 2 }, (ctx) => {
      const counts = ctx.textStream().flatMap((l) => l.split(' ').filter((w) => w.length > 0)).map((w) => [w, 1] as const).reduceByKey((a, b) => a + b);
      counts.saveAsJsonFiles('counts');
      counts.updateStateByKey((vs, total: number | undefined) => (total ?? 0) + vs.reduce((a, b) => a + b, 0)).saveAsJsonFiles('totals');
    });
    const [bare, other] = [new QuerySession({ store, workers: 1 }), new QuerySession({ store, workers: 1, pipeline: upgraded })];
    try {
      await expect(bare.sc.state('totals', 0)).rejects.toThrow(/interval 0: 3 of 3 partitions of cache\/interval=000000\/persist\/\w+ are gone .*give the stream's pipeline \(--pipeline <file>\)/);
      await expect(other.sc.state('totals', 0)).rejects.toThrow(/--pipeline <file> is not the code that ran it: interval 0 was planned by queried \(fingerprint \w+\), the given pipeline is queried \(fingerprint \w+\)/);
    } finally {
      await bare.close();
      await other.close();
      await removeDir(path.dirname(run.root));
    }
  }, 60_000);
});
