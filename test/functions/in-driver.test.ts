/**
 * Small stages run in the driver's process (functions/driver/in-driver.ts): with the task
 * function's code and records, so that their outputs are the task functions' byte for byte, a
 * stage above the bound still goes to the task queue, and a driver that dies mid-task is resumed
 * by the next as if a task Lambda had died.
 */
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import path from 'node:path';
import { VersionedMemoryStore } from '../support/versioned-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { keys } from '../../core/layout.ts';
import { listAll } from '../../core/ports/object-store.ts';
import { defaultSchedulerOptions } from '../../core/scheduler/dag-scheduler.ts';
import type { DriverConfig } from '../../core/streaming/driver.ts';
import wordcount from '../../examples/wordcount.ts';
import { createDriverHandler } from '../../functions/driver/handler.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { removeDir, tempDir } from '../support/stream-harness.ts';
import { eventSourceMapping, FakeClock, s3Event, upload } from './support.ts';
import { recordedStore } from '../support/recorded-store.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const INTERVAL = 60_000;
const MIB = 1024 * 1024;
const config: DriverConfig = { intervalMs: INTERVAL, inputPartitions: 2, maxSplitBytes: MIB, scheduler: { ...defaultSchedulerOptions, pollMs: 10 }, retainIntervals: 2 };
const scheduledEvent = { source: 'aws.events', 'detail-type': 'Scheduled Event' };
const until = (deadline: number, clock: FakeClock) => ({ getRemainingTimeInMillis: () => deadline - clock.now() });

/** A task queue no one may use: the stages ran in the driver. */
const untouchedQueue: TaskQueue = new Proxy({} as TaskQueue, {
  get: (_target, name) => (name === 'drainDeadLetters' ? async () => [] : () => Promise.reject(new Error(`the task queue was used (${String(name)})`))),
});

let base: string;

beforeEach(async () => {
  base = await tempDir();
  vi.spyOn(console, 'info').mockImplementation(() => {});
  vi.spyOn(console, 'warn').mockImplementation(() => {});
  vi.spyOn(console, 'error').mockImplementation(() => {});
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
});

afterEach(async () => {
  vi.restoreAllMocks();
  await removeDir(base);
});

/** A bucket whose stream started at T0, with two intervals of uploads admitted. */
async function uploaded(): Promise<{ store: VersionedMemoryStore; clock: FakeClock }> {
  const store = new VersionedMemoryStore();
  const clock = new FakeClock(T0);
  await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: INTERVAL }));
  const ingest = createIngestHandler({ store, now: () => clock.now(), intervalMs: INTERVAL });
  await ingest(s3Event([upload(store, 'incoming/a.txt', 'the fox and the dog\nthe end\n', T0 + 1_000)]));
  clock.time = T0 + INTERVAL + 1_000;
  await ingest(s3Event([upload(store, 'incoming/b.txt', 'a fox again\n', T0 + INTERVAL + 1_000)]));
  clock.time = T0 + 2 * INTERVAL + 1_000;
  return { store, clock };
}

/** Every object the intervals wrote under output/, by key: what a reader sees. */
async function outputs(store: ObjectStore): Promise<Map<string, string>> {
  const objects = await listAll(store, 'output/');
  return new Map(await Promise.all(objects.map(async (o) => [o.key, Buffer.from((await store.get(o.key))!).toString('base64')] as const)));
}

/** Runs the two intervals with the task queue and task functions, as with runInDriverBelow 0. */
async function fannedOut(): Promise<{ store: VersionedMemoryStore; outputs: Map<string, string> }> {
  const { store, clock } = await uploaded();
  const queue = new FsTaskQueue({ dir: path.join(base, 'fanned'), maxReceives: 3 });
  const mapping = eventSourceMapping(queue, createTaskHandler(wordcount, { store, queue }));
  try {
    await createDriverHandler(wordcount, { store, queue, clock, config, runInDriverBelowBytes: 0, wake: async () => {}, stayAwakeMs: 1_000 })(scheduledEvent, until(T0 + 10 * INTERVAL, clock));
  } finally {
    await mapping.stop();
    await queue.close();
  }
  return { store, outputs: await outputs(store) };
}

it('runs a stage under the bound in the driver, leaving the records and outputs of the task functions, byte for byte', async () => {
  const expected = await fannedOut();
  const { store, clock } = await uploaded();

  const run = await createDriverHandler(wordcount, { store, queue: untouchedQueue, clock, config, runInDriverBelowBytes: MIB, wake: async () => {}, stayAwakeMs: 1_000 })(
    scheduledEvent,
    until(T0 + 10 * INTERVAL, clock),
  );

  expect(run.intervalsRun).toBe(2);
  expect(await outputs(store)).toEqual(expected.outputs);
  expect(expected.outputs.size).toBeGreaterThan(4);
  // Each task's completion record, as a task function writes it, naming who ran it.
  const done = await listAll(store, keys.taskDonePrefix('interval=000001', 'map-r3'));
  const records = done.filter((o) => /part-\d+\.json$/.test(o.key));
  expect(records.length).toBe(2);
  for (const o of records) expect(JSON.parse(Buffer.from((await store.get(o.key))!).toString())).toMatchObject({ executor: 'driver' });
  expect(done.some((o) => o.key.endsWith('.started'))).toBe(true);
});

it('reads back no completion or lineage record it wrote, nor the size of state it persisted, and lists no task folder nor fetch failures, for stages it runs itself', async () => {
  const { store, clock } = await uploaded();
  const requests: string[] = [];
  const recorded = recordedStore(store, requests);
  let drains = 0;
  const queue: TaskQueue = new Proxy(untouchedQueue, { get: (target, name) => (name === 'drainDeadLetters' ? async () => (drains++, []) : Reflect.get(target, name)) });

  const run = await createDriverHandler(wordcount, { store: recorded, queue, clock, config, runInDriverBelowBytes: MIB, wake: async () => {}, stayAwakeMs: 1_000 })(
    scheduledEvent,
    until(T0 + 10 * INTERVAL, clock),
  );

  expect(run.intervalsRun).toBe(2);
  const written = new Set<string>();
  const readBack: string[] = [];
  for (const request of requests) {
    const [method, key] = request.split(' ') as [string, string];
    if (method === 'put' || method === 'putIfAbsent') written.add(key);
    else if ((method === 'get' || method === 'head') && written.has(key) && /(\/tasks\/.*part-\d+\.json|\/record\.json)$/.test(key)) readBack.push(request);
    // Interval 1 reads the state interval 0 persisted: its size decides where interval 1's tasks run, known without a HEAD.
    else if (method === 'head' && written.has(key) && key.includes('/persist/')) readBack.push(request);
  }
  expect([...written].some((key) => key.startsWith('cache/interval=000000/persist/'))).toBe(true);
  expect(readBack).toEqual([]);
  expect(requests.filter((r) => /^list lineage\/interval=\d+\/(tasks|fetch-failed)\//.test(r))).toEqual([]);
  // Drained while a stage ran, not at each of its polls.
  expect(drains).toBeGreaterThan(0);
  expect(drains).toBeLessThanOrEqual(run.intervalsRun);
});

it('sends a stage whose input is not under the bound to the task queue', async () => {
  const { store, clock } = await uploaded();
  const queue = new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: 3 });
  const ran: string[] = [];
  const tasks = createTaskHandler(wordcount, { store, queue });
  const mapping = eventSourceMapping(queue, async (event) => {
    for (const r of event.Records) ran.push(JSON.parse(r.body).stage);
    return tasks(event);
  });
  try {
    await createDriverHandler(wordcount, { store, queue, clock, config, runInDriverBelowBytes: 16, wake: async () => {}, stayAwakeMs: 1_000 })(scheduledEvent, until(T0 + 10 * INTERVAL, clock));
  } finally {
    await mapping.stop();
    await queue.close();
  }

  expect(await store.head(keys.committed('interval=000001'))).toBeDefined();
  // Interval 0's map stage reads 28 bytes: over 16, so the task functions ran it.
  expect(ran).toContain('map-r3');
  expect(ran.length).toBeGreaterThan(0);
});

it('a driver that dies mid-task in its own process is resumed by the next, with the same outputs', async () => {
  const expected = await fannedOut();
  const { store, clock } = await uploaded();
  // The first driver dies on its first write of a shuffle block: mid-way through a map task.
  let dead = false;
  const dying: ObjectStore = new Proxy(store, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (dead) return new Promise(() => {});
        if (name === 'put' && String(args[0]).includes('/shuffle/')) {
          dead = true;
          return Promise.reject(new Error('the driver died'));
        }
        return value.apply(target, args);
      };
    },
  });
  const first = createDriverHandler(wordcount, { store: dying, queue: untouchedQueue, clock, config, runInDriverBelowBytes: MIB, wake: async () => {}, stayAwakeMs: 1_000, leaseGraceMs: 30_000 });
  void first(scheduledEvent, until(T0 + 10 * INTERVAL, clock));
  await vi.waitFor(() => expect(dead).toBe(true));
  expect(await store.head(keys.committed('interval=000000'))).toBeUndefined();

  // Once its lease has run out, the watchdog's driver resumes the interval.
  clock.time += 31_000;
  const next = await createDriverHandler(wordcount, { store, queue: untouchedQueue, clock, config, runInDriverBelowBytes: MIB, wake: async () => {}, stayAwakeMs: 1_000 })(
    scheduledEvent,
    until(clock.now() + 10 * INTERVAL, clock),
  );

  expect(next.next).toBe(2);
  expect(await outputs(store)).toEqual(expected.outputs);
});

it('weighs the state a stage reads by the listing the driver made of it, not by a HEAD of each part', async () => {
  const { store, clock } = await uploaded();
  const heads: string[] = [];
  const counting = new Proxy(store, {
    get(target, name: keyof ObjectStore) {
      if (name === 'head') {
        return (key: string, ...rest: []) => {
          heads.push(key);
          return target.head(key, ...rest);
        };
      }
      const value = target[name];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });

  const run = await createDriverHandler(wordcount, { store: counting, queue: untouchedQueue, clock, config, runInDriverBelowBytes: MIB, wake: async () => {}, stayAwakeMs: 1_000 })(
    scheduledEvent,
    until(T0 + 10 * INTERVAL, clock),
  );

  // Interval 1's reduce stage ran here, and read interval 0's state, which it weighed unasked.
  expect(run.intervalsRun).toBe(2);
  expect(await listAll(store, keys.taskDonePrefix('interval=000001', 'result-r5-r3-r6'))).not.toHaveLength(0);
  expect(heads.filter((key) => key.includes('/persist/'))).toEqual([]);
});
