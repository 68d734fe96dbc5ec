/**
 * The AWS handlers with intervals in flight (maxIntervalsInFlight): one driver invocation runs the
 * intervals that are due two at a time, and every example's outputs are byte for byte those of one
 * interval after another.
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import path from 'node:path';
import { VersionedMemoryStore } from '../support/versioned-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { keys } from '../../core/layout.ts';
import { listAll } from '../../core/ports/object-store.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { definePipeline } from '../../core/index.ts';
import wordcount from '../../examples/wordcount.ts';
import grep from '../../examples/grep.ts';
import windowedCounts from '../../examples/windowed-counts.ts';
import typedSessions from '../../examples/typed-sessions.ts';
import { sampleLines } from '../../local/sample/generate.ts';
import { createDriverHandler } from '../../functions/driver/handler.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { driverConfig, functionConfig } from '../../functions/config.ts';
import { removeDir, tempDir } from '../support/stream-harness.ts';
import { eventSourceMapping, FakeClock, s3Event, upload } from './support.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const MINUTE = 60_000;
const INTERVALS = 5;

let base: string;

beforeEach(async () => {
  base = await tempDir();
  vi.spyOn(console, 'info').mockImplementation(() => {});
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
});

afterEach(async () => {
  vi.restoreAllMocks();
  await removeDir(base);
});

/** Every output object's bytes after the handlers ran INTERVALS intervals of `text`, one upload each but the third. */
async function outputsThroughHandlers(pipeline: Pipeline, text: (k: number) => string, maxIntervalsInFlight: number): Promise<Map<string, string>> {
  const store = new VersionedMemoryStore();
  const queue = new FsTaskQueue({ dir: path.join(base, `queue-${maxIntervalsInFlight}`), maxReceives: 3 });
  const clock = new FakeClock(T0);
  const production = driverConfig(functionConfig({ DSTREAM_BUCKET: 'bucket', DSTREAM_INTERVAL_MS: String(MINUTE), DSTREAM_PARTITIONS: '3', DSTREAM_MAX_INTERVALS_IN_FLIGHT: String(maxIntervalsInFlight) }));
  const config = { ...production, scheduler: { ...production.scheduler, pollMs: 10 } };
  await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: MINUTE }));
  const ingest = createIngestHandler({ store, now: () => clock.now(), intervalMs: MINUTE });
  for (let k = 0; k < INTERVALS; k++) {
    if (k === 2) continue;
    const at = T0 + k * MINUTE + 1_000;
    clock.time = at + 100;
    await ingest(s3Event([upload(store, `incoming/${k}.txt`, text(k), at)]));
  }
  const driver = createDriverHandler(pipeline, { store, queue, clock, config, stayAwakeMs: Infinity, dormantAfterIntervals: Infinity, wake: async () => {} });
  const mapping = eventSourceMapping(queue, createTaskHandler(pipeline, { store, queue }));
  clock.time = T0 + INTERVALS * MINUTE + 1_000;
  try {
    const run = await driver({ source: 'aws.events' }, { getRemainingTimeInMillis: () => T0 + 30 * MINUTE - clock.now() });
    expect(run.intervalsRun).toBeGreaterThanOrEqual(INTERVALS);
  } finally {
    await mapping.stop();
    await queue.close();
  }
  const files = new Map<string, string>();
  for (const o of await listAll(store, 'output/')) files.set(o.key, Buffer.from((await store.get(o.key))!).toString('utf8'));
  return files;
}

/** A stage that reads the state its own interval persisted: the state re-keyed through a second shuffle. */
const stateThenShuffle = definePipeline({ name: 'state-then-shuffle', partitions: 3 }, (ctx) => {
  const totals = ctx
    .textStream()
    .flatMap((line) => line.split(/\s+/).filter((w) => w.length > 0))
    .map((w) => [w, 1])
    .reduceByKey((a, b) => a + b)
    .updateStateByKey((values, total: number | undefined) => (total ?? 0) + values.reduce((a, b) => a + b, 0));
  totals.map(([w, n]) => [w.length, n]).reduceByKey((a, b) => a + b).saveAsJsonFiles('byLength');
});

it.each([
  ['wordcount', wordcount, (k: number) => sampleLines(100, 7 + k)],
  ['state then a shuffle of it', stateThenShuffle, (k: number) => sampleLines(100, 17 + k)],
  ['windowed-counts', windowedCounts, (k: number) => sampleLines(100, 70 + k)],
  ['grep', grep, (k: number) => `error code=${k} disk\ninfo fine\nerror code=${k + 1} net\n`.repeat(10)],
  ['typed-sessions', typedSessions, (k: number) => `ann buy ${100 * (k + 1)}\nbob view 0\ncat buy 250\n`.repeat(5)],
] as const)('%s through the handlers: byte-identical outputs with 1 and 2 intervals in flight', async (_name, pipeline, text) => {
  const one = await outputsThroughHandlers(pipeline, text, 1);
  const two = await outputsThroughHandlers(pipeline, text, 2);
  expect([...one.keys()].filter((key) => key.endsWith('_SUCCESS')).length).toBeGreaterThan(0);
  expect(two).toEqual(one);
}, 120_000);
