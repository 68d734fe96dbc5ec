/**
 * Every way the driver is woken, each played through the real handlers over an in-memory bucket:
 * the timer it sets itself, a task's completion notice, an upload to a dormant stream; and what
 * must not break it: notices lost, duplicated or stale, a driver that crashes mid-stage, two
 * drivers woken by one timer, an upload racing the stream going dormant.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { VersionedMemoryStore } from '../support/versioned-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { queueChangeFeed, type ChangeFeed } from '../../core/ports/change-feed.ts';
import { intervalScope, keys } from '../../core/layout.ts';
import { defaultSchedulerOptions } from '../../core/scheduler/dag-scheduler.ts';
import type { DriverConfig, IntervalReport } from '../../core/streaming/driver.ts';
import wordcount from '../../examples/wordcount.ts';
import { createDriverHandler, type DriverHandlerDeps } from '../../functions/driver/handler.ts';
import type { WakeMessage } from '../../functions/driver/wake.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import type { TaskNotifier } from '../../functions/config.ts';
import { readOutput, removeDir, tempDir } from '../support/stream-harness.ts';
import { countingWrites, eventSourceMapping, FakeClock, s3Event, sqsEvent, upload } from './support.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const INTERVAL = 10_000;
const GRACE = 45_000;
const scheduledEvent = { version: '0', id: 'e1', 'detail-type': 'Scheduled Event', source: 'aws.events', time: '2025-01-01T00:00:00Z', resources: [], detail: {} };
const COUNTS = [['a', 2], ['b', 2], ['c', 1]];

let base: string;
let store: VersionedMemoryStore;
let clock: FakeClock;
let queue: FsTaskQueue;
let events: FsTaskQueue;
/** The wake messages sent, by the drivers and by ingest, in order. */
let wakes: { message: WakeMessage; delayMs: number; at: number }[];

beforeEach(async () => {
  base = await tempDir();
  store = new VersionedMemoryStore();
  clock = new FakeClock(T0);
  // Real time: a long poll of the events queue ends early when a notice arrives.
  queue = new FsTaskQueue({ dir: path.join(base, 'tasks'), maxReceives: 3 });
  events = new FsTaskQueue({ dir: path.join(base, 'events') });
  wakes = [];
  vi.spyOn(console, 'info').mockImplementation(() => {});
  vi.spyOn(console, 'warn').mockImplementation(() => {});
  vi.spyOn(console, 'error').mockImplementation(() => {});
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: INTERVAL }));
});

afterEach(async () => {
  vi.restoreAllMocks();
  await queue.close();
  await events.close();
  await removeDir(base);
});

/** `pollMs`: with a change feed, the fallback wait (here in real ms). */
const driverConfig = (pollMs: number): DriverConfig => ({
  intervalMs: INTERVAL,
  inputPartitions: 2,
  maxSplitBytes: 1 << 20,
  scheduler: { ...defaultSchedulerOptions, pollMs },
  retainIntervals: 2,
});

const recordWake = async (message: WakeMessage, delayMs: number) => void wakes.push({ message, delayMs, at: clock.now() });

/**
 * A driver function container, as deployed: waking itself through the wake queue, its stages
 * waiting on the events queue (in real time, so that the fake clock moves only with the driver's
 * own waits for interval ends; a notice taken by another driver costs a 1 s fallback).
 */
const driverFunction = (deps: DriverHandlerDeps = {}) =>
  createDriverHandler(wordcount, { store, queue, clock, config: driverConfig(1_000), changes: queueChangeFeed(events), wake: recordWake, leaseGraceMs: GRACE, ...deps });

/** The event the wake queue's event source mapping hands the driver for a wake message. */
const delivered = (message: WakeMessage) => sqsEvent([{ id: randomUUID(), body: JSON.stringify(message), receipt: randomUUID(), receiveCount: 1 }]);
const invocation = () => ({ getRemainingTimeInMillis: () => 15 * 60_000 });

const ingest = (at: number, text = 'a b a\nb c\n') =>
  createIngestHandler({ store, now: () => clock.now(), intervalMs: INTERVAL, wake: recordWake })(s3Event([upload(store, `incoming/${at}.txt`, text, at)]));

const notifyEvents: TaskNotifier = (notice) => events.send([JSON.stringify(notice)]);
const runTasks = (notify: TaskNotifier = notifyEvents) => eventSourceMapping(queue, createTaskHandler(wordcount, { store, queue, notify }));

/** The events feed, counting the notices each of the driver's waits ended with (0: it ran out). */
function countedFeed(): { feed: ChangeFeed; waits: number[] } {
  const waits: number[] = [];
  const counted: Pick<TaskQueue, 'receive' | 'delete'> = {
    receive: async (max, visibility, waitMs) => {
      const notices = await events.receive(max, visibility, waitMs);
      waits.push(notices.length);
      return notices;
    },
    delete: (receipt) => events.delete(receipt),
  };
  return { feed: queueChangeFeed(counted), waits };
}

const committed = async (k: number) => {
  const bytes = await store.get(keys.committed(intervalScope(k)));
  return bytes ? (JSON.parse(Buffer.from(bytes).toString()) as IntervalReport) : undefined;
};
const counts = async (k: number) => (await readOutput(store, 'counts', k))?.slice().sort();
const lease = async () => {
  const bytes = await store.get(keys.driverLease);
  return bytes ? (JSON.parse(Buffer.from(bytes).toString()) as { owner: string; expiresAt: number }) : undefined;
};

describe('woken by its timer', () => {
  it('sets a delayed wake message for an interval end further than stayAwakeMs, keeps the lease till then, and the timer carries it on', async () => {
    await ingest(T0 + 1_000);
    const mapping = runTasks();
    clock.time = T0 + INTERVAL + 500;
    const first = await driverFunction()(scheduledEvent, invocation());
    const holder = (await lease())!;
    // Meanwhile the watchdog's tick finds the lease and does nothing, writing nothing.
    clock.time = T0 + 15_000;
    const watched = countingWrites(store);
    const watchdog = await createDriverHandler(wordcount, { store: watched.store, queue, clock, config: driverConfig(1_000), wake: recordWake })(scheduledEvent, invocation());
    // The timer fires, rounded down to the second: the driver waits the rest in its invocation.
    clock.time = wakes[0]!.at + Math.floor(wakes[0]!.delayMs / 1000) * 1000;
    const second = await driverFunction()(delivered(wakes[0]!.message), invocation());
    await mapping.stop();

    expect(first).toEqual({ intervalsRun: 1, next: 1, continued: true });
    expect(wakes[0]!.message).toEqual({ source: 'dstream.wake', reason: 'timer', owner: holder.owner, quiet: 0 });
    // Set for the end of interval 1.
    expect(wakes[0]!.at + wakes[0]!.delayMs).toBe(T0 + 2 * INTERVAL);
    expect(holder.expiresAt).toBe(T0 + 2 * INTERVAL + GRACE);
    expect(watchdog).toEqual({ intervalsRun: 0, next: 1, continued: false });
    expect(watched.writes).toEqual([]);
    expect(second).toEqual({ intervalsRun: 1, next: 2, continued: true });
    expect(wakes).toHaveLength(2);
    // Interval 1 ran at its end, by the timer's heir, which set the next timer in its own name.
    expect((await committed(1))!.schedulingDelayMs).toBe(0);
    expect(wakes[1]!.message).toMatchObject({ reason: 'timer', quiet: 1 });
    expect(wakes[1]!.message.owner).not.toBe(holder.owner);
    expect(await counts(0)).toEqual(COUNTS);
  });

  it('with stayAwakeMs Infinity (the control plane before wake-ups) waits in the invocation for every interval, setting no timer', async () => {
    const mapping = runTasks();
    clock.time = T0 + INTERVAL + 500;
    const result = await driverFunction({ stayAwakeMs: Infinity, dormantAfterIntervals: Infinity })(scheduledEvent, { getRemainingTimeInMillis: () => T0 + 5 * INTERVAL + 95_000 - clock.now() });
    await mapping.stop();
    expect(result).toEqual({ intervalsRun: 5, next: 5, continued: true });
    // The only message is the hand-over, at the 90 s margin before the invocation's end, with the lease given up.
    expect(wakes).toEqual([{ message: { source: 'dstream.wake', reason: 'hand-over', quiet: 5 }, delayMs: 0, at: T0 + 5 * INTERVAL + 5_000 }]);
    expect(await lease()).toBeUndefined();
  });
});

describe('woken by task completions', () => {
  it('each wait of a stage ends with a notice from a task, none runs out (the fallback is 20 s)', async () => {
    await ingest(T0 + 1_000);
    const { feed, waits } = countedFeed();
    const mapping = runTasks(notifyEvents);
    clock.time = T0 + INTERVAL + 500;
    const result = await driverFunction({ config: driverConfig(20_000), changes: feed })(scheduledEvent, invocation());
    await mapping.stop();

    expect(result).toMatchObject({ intervalsRun: 1, next: 1 });
    expect(waits.length).toBeGreaterThan(0);
    expect(waits.filter((n) => n === 0)).toEqual([]);
    expect(await counts(0)).toEqual(COUNTS);
  });

  it('a lost notice costs a fallback wait, not the interval', async () => {
    await ingest(T0 + 1_000);
    const { feed, waits } = countedFeed();
    // Every notice lost on its way.
    const mapping = runTasks(async () => {});
    clock.time = T0 + INTERVAL + 500;
    const result = await driverFunction({ config: driverConfig(200), changes: feed })(scheduledEvent, invocation());
    await mapping.stop();

    expect(result).toMatchObject({ intervalsRun: 1, next: 1 });
    expect(waits.length).toBeGreaterThan(0);
    expect(waits.every((n) => n === 0)).toBe(true);
    expect(await counts(0)).toEqual(COUNTS);
  });

  it('duplicated and stale notices cost a look each, and change nothing', async () => {
    await ingest(T0 + 1_000);
    // A notice left from an earlier stage, and every notice sent twice.
    await events.send([JSON.stringify({ scope: 'interval=000000', stage: 'an-old-stage', partition: 0 })]);
    const { feed, waits } = countedFeed();
    const mapping = runTasks(async (notice) => {
      await notifyEvents(notice);
      await notifyEvents(notice);
    });
    clock.time = T0 + INTERVAL + 500;
    const result = await driverFunction({ config: driverConfig(20_000), changes: feed })(scheduledEvent, invocation());
    await mapping.stop();

    expect(result).toMatchObject({ intervalsRun: 1, next: 1 });
    expect(waits[0]).toBeGreaterThan(0);
    expect(await counts(0)).toEqual(COUNTS);
  });
});

describe('woken by an upload after going dormant', () => {
  it('goes dormant after dormantAfterIntervals quiet intervals, the watchdog leaves it so, and an upload wakes it to catch up in order', async () => {
    const mapping = runTasks();
    const driver = () => driverFunction({ dormantAfterIntervals: 2 });
    clock.time = T0 + INTERVAL + 500;
    const first = await driver()(scheduledEvent, invocation());
    clock.time += Math.floor(wakes[0]!.delayMs / 1000) * 1000;
    const second = await driver()(delivered(wakes[0]!.message), invocation());
    const timersBeforeUpload = wakes.length;
    const dormant = JSON.parse(Buffer.from((await store.get(keys.driverDormant))!).toString());
    const leaseWhileDormant = await lease();

    clock.time = T0 + 60_000;
    const watched = countingWrites(store);
    const watchdog = await createDriverHandler(wordcount, { store: watched.store, queue, clock, config: driverConfig(1_000), wake: recordWake })(scheduledEvent, invocation());

    // An upload at 1:35, in interval 9.
    clock.time = T0 + 95_000;
    await ingest(T0 + 95_000);
    const markAfterUpload = await store.get(keys.driverDormant);
    const uploadWake = wakes[timersBeforeUpload]!;
    clock.time = T0 + 95_200;
    const caughtUp = await driver()(delivered(uploadWake.message), invocation());
    clock.time += Math.floor(wakes.at(-1)!.delayMs / 1000) * 1000;
    const last = await driver()(delivered(wakes.at(-1)!.message), invocation());
    await mapping.stop();

    expect(first).toEqual({ intervalsRun: 1, next: 1, continued: true });
    expect(second).toEqual({ intervalsRun: 1, next: 2, continued: false, dormant: true });
    expect(timersBeforeUpload).toBe(1);
    expect(dormant).toMatchObject({ next: 2 });
    expect(leaseWhileDormant).toBeUndefined();
    expect(watchdog).toEqual({ intervalsRun: 0, next: 2, continued: false, dormant: true });
    expect(watched.writes).toEqual([]);

    expect(markAfterUpload).toBeUndefined();
    expect(uploadWake).toEqual({ message: { source: 'dstream.wake', reason: 'upload' }, delayMs: 0, at: T0 + 95_000 });
    // Intervals 2 to 8, slept through, run back to back; then a timer for interval 9, which holds the upload.
    expect(caughtUp).toEqual({ intervalsRun: 7, next: 9, continued: true });
    for (let k = 2; k <= 8; k++) expect(await committed(k)).toMatchObject({ interval: k, uploads: 0 });
    expect(last).toMatchObject({ intervalsRun: 1, next: 10 });
    expect(await committed(9)).toMatchObject({ uploads: 1, schedulingDelayMs: 0 });
    expect(await counts(9)).toEqual(COUNTS);
  });

  it.each(['just before', 'just after'])('an upload admitted %s the stream is marked dormant is not left waiting', async (when) => {
    const mapping = runTasks();
    let raced = false;
    // The driver's store, running the upload's ingest around the driver's writing of the mark.
    const racing: ObjectStore = Object.assign(Object.create(store) as ObjectStore, {
      put: async (key: string, body: string | Uint8Array) => {
        if (key !== keys.driverDormant || raced) return store.put(key, body);
        raced = true;
        if (when === 'just before') await ingest(clock.now());
        await store.put(key, body);
        if (when === 'just after') await ingest(clock.now());
      },
    });
    clock.time = T0 + INTERVAL + 500;
    const result = await driverFunction({ store: racing, dormantAfterIntervals: 1 })(scheduledEvent, invocation());
    const timer = wakes.find((w) => w.message.reason === 'timer')!;
    const ingestWake = wakes.find((w) => w.message.reason === 'upload');
    // Should ingest have seen the mark, its wake-up finds the stream in the driver's hands.
    const woken = ingestWake && (await driverFunction()(delivered(ingestWake.message), invocation()));
    clock.time += Math.floor(timer.delayMs / 1000) * 1000;
    await driverFunction()(delivered(timer.message), invocation());
    await mapping.stop();

    expect(raced).toBe(true);
    expect(result).toEqual({ intervalsRun: 1, next: 1, continued: true });
    expect(await store.get(keys.driverDormant)).toBeUndefined();
    if (when === 'just after') expect(woken).toEqual({ intervalsRun: 0, next: 1, continued: false });
    else expect(ingestWake).toBeUndefined();
    expect(await committed(1)).toMatchObject({ uploads: 1, schedulingDelayMs: 0 });
    expect(await counts(1)).toEqual(COUNTS);
  });
});

describe('drivers that crash or race', () => {
  it('a driver crashed mid-stage holds the stream up until its lease runs out, then the watchdog resumes the interval', async () => {
    await ingest(T0 + 1_000);
    let dead = false;
    // Everything the crashed container would still do fails: it gives nothing up.
    const dying: ObjectStore = new Proxy(store, {
      get: (target, name, receiver) => {
        const value = Reflect.get(target, name, receiver) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => (dead ? Promise.reject(new Error('the container is gone')) : (value as (...a: unknown[]) => unknown).apply(target, args));
      },
    });
    const crashing: ChangeFeed = {
      waitForChange: async () => {
        dead = true;
        throw new Error('the container is gone');
      },
    };
    clock.time = T0 + INTERVAL + 500;
    const crash = driverFunction({ store: dying, changes: crashing })(scheduledEvent, invocation());
    await expect(crash).rejects.toThrow('the container is gone');
    const held = (await lease())!;

    clock.time = T0 + INTERVAL + 30_000;
    const tooSoon = await driverFunction()(scheduledEvent, invocation());
    const mapping = runTasks();
    clock.time = held.expiresAt + 1;
    const resumed = await driverFunction()(scheduledEvent, invocation());
    await mapping.stop();

    expect(held.expiresAt).toBe(T0 + INTERVAL + 500 + GRACE);
    expect(tooSoon).toEqual({ intervalsRun: 0, next: 0, continued: false });
    expect(resumed.intervalsRun).toBeGreaterThanOrEqual(1);
    expect(await counts(0)).toEqual(COUNTS);
  });

  it('two drivers woken by one timer (a duplicate delivery) commit the interval once, and only one carries on', async () => {
    await ingest(T0 + 1_000);
    await store.put(keys.driverLease, JSON.stringify({ owner: 'the-timer-setter', expiresAt: T0 + INTERVAL + GRACE }));
    const timer: WakeMessage = { source: 'dstream.wake', reason: 'timer', owner: 'the-timer-setter', quiet: 0 };
    const mapping = runTasks();
    clock.time = T0 + INTERVAL;
    const both = await Promise.all([driverFunction()(delivered(timer), invocation()), driverFunction()(delivered(timer), invocation())]);
    const timers = wakes.splice(0);
    // Each timer set fires: of the drivers they start, one carries on and sets the next.
    clock.time = T0 + 2 * INTERVAL;
    const next = await Promise.all(timers.map((w) => driverFunction()(delivered(w.message), invocation())));
    await mapping.stop();

    expect(both.map((r) => r.next)).toEqual([1, 1]);
    expect(await counts(0)).toEqual(COUNTS);
    expect(timers.length).toBeGreaterThanOrEqual(1);
    expect(next.filter((r) => r.continued)).toEqual([{ intervalsRun: 1, next: 2, continued: true }]);
    expect(wakes).toHaveLength(1);
  });
});
