/**
 * The three functions together, as AWS wires them, in this process: S3 notifies ingest of the
 * uploads, the driver runs the intervals that are due and hands over before its time runs out,
 * and the event source mapping feeds the task function from the queue. The word counts come out
 * right, interval by interval, with one metrics line per interval.
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import path from 'node:path';
import { VersionedMemoryStore } from '../support/versioned-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { keys } from '../../core/layout.ts';
import wordcount from '../../examples/wordcount.ts';
import { createDriverHandler } from '../../functions/driver/handler.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { driverConfig, functionConfig } from '../../functions/config.ts';
import { METRICS } from '../../functions/metrics.ts';
import { readOutput, removeDir, tempDir } from '../support/stream-harness.ts';
import { eventSourceMapping, FakeClock, s3Event, upload } from './support.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const MINUTE = 60_000;

let base: string;

beforeEach(async () => {
  base = await tempDir();
  vi.spyOn(console, 'info').mockImplementation(() => {});
});

afterEach(async () => {
  vi.restoreAllMocks();
  await removeDir(base);
});

it('uploads notified to ingest come out of the driver and task functions as word counts of their intervals', async () => {
  const store = new VersionedMemoryStore();
  const queue = new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: 3 });
  const clock = new FakeClock(T0);
  const env = { DSTREAM_BUCKET: 'bucket', DSTREAM_INTERVAL_MS: String(MINUTE), DSTREAM_PARTITIONS: '3' };
  // As deployed, but polling every 10 ms of the fake clock rather than every second, so that the
  // polls move time on by little next to a one-minute interval.
  const production = driverConfig(functionConfig(env));
  const config = { ...production, scheduler: { ...production.scheduler, pollMs: 10 } };

  const uploads = [
    { key: 'incoming/a.txt', text: 'the quick brown fox\nthe lazy dog\n', at: T0 + 1_000 },
    { key: 'incoming/logs/b c.txt', text: 'fox and dog\n', at: T0 + 2_000 },
    { key: 'incoming/d.txt', text: 'the end\n', at: T0 + MINUTE + 1_000 },
  ];
  const ingest = createIngestHandler({ store, now: () => clock.now(), intervalMs: MINUTE });
  await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: MINUTE }));
  for (const u of uploads) {
    // S3 notifies a moment after the upload; ingest holds event times to its own clock.
    clock.time = u.at + 100;
    await ingest(s3Event([upload(store, u.key, u.text, u.at)]));
  }

  const emf: Record<string, unknown>[] = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    const line = JSON.parse(String(chunk)) as Record<string, unknown>;
    if (line._aws) emf.push(line);
    return true;
  });
  const handOvers: number[] = [];
  // As before wake-ups (stayAwakeMs Infinity): waiting in the invocation, handing over near its end.
  const driver = createDriverHandler(wordcount, { store, queue, clock, config, stayAwakeMs: Infinity, wake: async () => void handOvers.push(clock.now()) });
  const mapping = eventSourceMapping(queue, createTaskHandler(wordcount, { store, queue }));

  // Intervals 0 and 1 are due; the invocation ends at 4:00, too soon to wait for interval 2 (which
  // ends at 3:00) and still have the 90 s margin to run it.
  clock.time = T0 + 2 * MINUTE + 5_000;
  let result;
  try {
    result = await driver({ source: 'aws.events', 'detail-type': 'Scheduled Event' }, { getRemainingTimeInMillis: () => T0 + 4 * MINUTE - clock.now() });
  } finally {
    await mapping.stop();
    await queue.close();
  }

  expect(result).toEqual({ intervalsRun: 2, next: 2, continued: true });
  expect(handOvers).toEqual([T0 + 4 * MINUTE - 90_000]);
  expect(await store.get(keys.driverLease)).toBeUndefined();

  const sorted = (records: unknown[] | undefined) => records?.slice().sort();
  expect(sorted(await readOutput(store, 'counts', 0))).toEqual([['and', 1], ['brown', 1], ['dog', 2], ['fox', 2], ['lazy', 1], ['quick', 1], ['the', 2]]);
  expect(sorted(await readOutput(store, 'counts', 1))).toEqual([['end', 1], ['the', 1]]);
  expect(sorted(await readOutput(store, 'totals', 1))).toEqual([['and', 1], ['brown', 1], ['dog', 2], ['end', 1], ['fox', 2], ['lazy', 1], ['quick', 1], ['the', 3]]);
  expect(await store.head('output/counts/interval=000000/_SUCCESS')).toBeDefined();
  expect(await store.head('output/counts/interval=000002/_SUCCESS')).toBeUndefined();

  expect(emf.map((line) => [line.interval, line[METRICS.dimension], line[METRICS.inputRecords]])).toEqual([
    [0, 'wordcount', 3],
    [1, 'wordcount', 1],
  ]);
});

it('uploads replaced, written again or deleted after admission are counted as admitted, each version once', async () => {
  /** Runs interval 0 of WordCount through the three functions, with `produce` uploading (and meddling) during it. */
  const countsOf = async (produce: (store: VersionedMemoryStore, ingest: (key: string, text: string) => Promise<void>) => Promise<void>) => {
    const store = new VersionedMemoryStore();
    const queue = new FsTaskQueue({ dir: path.join(base, `queue-${Math.random().toString(36).slice(2)}`), maxReceives: 3 });
    const clock = new FakeClock(T0);
    const production = driverConfig(functionConfig({ DSTREAM_BUCKET: 'bucket', DSTREAM_INTERVAL_MS: String(MINUTE), DSTREAM_PARTITIONS: '2' }));
    const config = { ...production, scheduler: { ...production.scheduler, pollMs: 10 } };
    await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: MINUTE }));
    const ingest = createIngestHandler({ store, now: () => clock.now(), intervalMs: MINUTE });
    let at = T0 + 1_000;
    await produce(store, async (key, text) => {
      clock.time = (at += 1_000) + 100;
      await ingest(s3Event([upload(store, key, text, at)]));
    });
    const driver = createDriverHandler(wordcount, { store, queue, clock, config, wake: async () => {} });
    const mapping = eventSourceMapping(queue, createTaskHandler(wordcount, { store, queue }));
    clock.time = T0 + MINUTE + 5_000;
    try {
      await driver({ source: 'aws.events' }, { getRemainingTimeInMillis: () => T0 + 2 * MINUTE + 95_000 - clock.now() });
    } finally {
      await mapping.stop();
      await queue.close();
    }
    return (await readOutput(store, 'counts', 0))?.slice().sort();
  };

  // The same key written twice, then replaced behind the stream's back and deleted: S3 notifies only
  // of the PUTs it saw, and every read is of a version admitted.
  const meddled = await countsOf(async (store, ingest) => {
    await ingest('incoming/a.txt', 'red green\n');
    await ingest('incoming/a.txt', 'green blue\n');
    store.write('incoming/a.txt', 'never admitted\n');
    await store.delete('incoming/a.txt');
  });
  const plain = await countsOf(async (_store, ingest) => {
    await ingest('incoming/first.txt', 'red green\n');
    await ingest('incoming/second.txt', 'green blue\n');
  });
  expect(meddled).toEqual([['blue', 1], ['green', 2], ['red', 1]]);
  expect(meddled).toEqual(plain);
});
