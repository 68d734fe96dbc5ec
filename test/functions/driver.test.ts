/**
 * The driver function holds a lease while it runs, so the watchdog's invocations leave it alone;
 * it hands over to a fresh invocation before its time runs out; and an interval whose task fails
 * every delivery fails the invocation visibly, giving the lease up.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import path from 'node:path';
import { VersionedMemoryStore } from '../support/versioned-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { keys } from '../../core/layout.ts';
import { listAll } from '../../core/ports/object-store.ts';
import { defaultSchedulerOptions, TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { definePipeline } from '../../core/index.ts';
import type { DriverConfig } from '../../core/streaming/driver.ts';
import wordcount from '../../examples/wordcount.ts';
import { createDriverHandler } from '../../functions/driver/handler.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { readTextOutput, removeDir, tempDir } from '../support/stream-harness.ts';
import { eventSourceMapping, FakeClock, logged, s3Event, upload } from './support.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const INTERVAL = 60_000;
const MARGIN = 90_000;
const GRACE = 120_000;
const config: DriverConfig = {
  intervalMs: INTERVAL,
  inputPartitions: 2,
  maxSplitBytes: 1 << 20,
  scheduler: { ...defaultSchedulerOptions, pollMs: 10 },
  retainIntervals: 2,
};
/** What the watchdog's EventBridge schedule sends. */
const scheduledEvent = { version: '0', id: 'e1', 'detail-type': 'Scheduled Event', source: 'aws.events', time: '2025-01-01T00:00:00Z', resources: [], detail: {} };

/** A queue the driver must not touch. */
const untouchedQueue: TaskQueue = new Proxy({} as TaskQueue, {
  get: (_target, name) => () => Promise.reject(new Error(`the queue was used (${String(name)})`)),
});

let base: string;
let store: VersionedMemoryStore;
let clock: FakeClock;
let handOvers: number[];

beforeEach(async () => {
  base = await tempDir();
  store = new VersionedMemoryStore();
  clock = new FakeClock(T0);
  handOvers = [];
  vi.spyOn(console, 'info').mockImplementation(() => {});
  vi.spyOn(console, 'error').mockImplementation(() => {});
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  // The stream started at T0.
  await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: INTERVAL }));
});

afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await removeDir(base);
});

const driverHandler = (queue: TaskQueue = untouchedQueue) =>
  createDriverHandler(wordcount, {
    store,
    queue,
    clock,
    config,
    handoverMarginMs: MARGIN,
    leaseGraceMs: GRACE,
    // As before wake-ups: waiting for every interval in the invocation, handing over near its end.
    stayAwakeMs: Infinity,
    wake: async () => {
      handOvers.push(clock.now());
      // The successor must find the lease free.
      expect(await store.get(keys.driverLease)).toBeUndefined();
    },
  });
/** A Lambda context whose invocation ends at `deadline` on the fake clock. */
const until = (deadline: number) => ({ getRemainingTimeInMillis: () => deadline - clock.now() });
const lease = async () => JSON.parse(Buffer.from((await store.get(keys.driverLease))!).toString()) as { owner: string; expiresAt: number };

describe('driver handler', () => {
  it('returns at once, doing nothing, while another driver holds an unexpired lease', async () => {
    const held = { owner: 'the-live-driver', expiresAt: T0 + 30_000 };
    await store.put(keys.driverLease, JSON.stringify(held));
    const result = await driverHandler()(scheduledEvent, until(T0 + 15 * 60_000));
    expect(result).toEqual({ intervalsRun: 0, next: 0, continued: false });
    expect(await lease()).toEqual(held);
    expect(clock.now()).toBe(T0);
    expect(await listAll(store, 'lineage/')).toEqual([]);
    expect(handOvers).toEqual([]);
  });

  it('takes an expired lease, waits what it can for an interval that would not fit, then releases the lease and hands over', async () => {
    await store.put(keys.driverLease, JSON.stringify({ owner: 'a-dead-driver', expiresAt: T0 - 1 }));
    const held: { owner: string; expiresAt: number }[] = [];
    clock.onSleep = async () => void held.push(await lease());
    // 100 s left: interval 0 ends in 60 s, which would leave less than the 90 s margin to run it.
    const result = await driverHandler()(scheduledEvent, until(T0 + 100_000));
    expect(result).toEqual({ intervalsRun: 0, next: 0, continued: true });
    // It waited until the margin, so that the next invocation starts close to the interval's end.
    expect(handOvers).toEqual([T0 + 10_000]);
    expect(held).toHaveLength(1);
    expect(held[0]!.owner).not.toBe('a-dead-driver');
    expect(held[0]!.expiresAt).toBe(T0 + INTERVAL + GRACE);
    expect(await listAll(store, 'lineage/')).toEqual([]);
  });

  it('is left alone by the watchdog while it waits, and the watchdog finds the lease free once it handed over', async () => {
    const watchdog = createDriverHandler(wordcount, { store, queue: untouchedQueue, clock, config, stayAwakeMs: Infinity, wake: () => Promise.reject(new Error('the watchdog must not hand over')) });
    const whileWaiting: unknown[] = [];
    clock.onSleep = async () => void whileWaiting.push(await watchdog(scheduledEvent, until(clock.now() + 15 * 60_000)));
    await driverHandler()(scheduledEvent, until(T0 + 100_000));
    expect(whileWaiting).toEqual([{ intervalsRun: 0, next: 0, continued: false }]);
    expect(await store.get(keys.driverLease)).toBeUndefined();
  });

  it('refuses an invocation too short to run anything, rather than handing over forever', async () => {
    await expect(driverHandler()(scheduledEvent, until(T0 + MARGIN))).rejects.toThrow(
      'the driver invocation has 90000 ms to run, not more than the 90000 ms hand-over margin: give the driver function a longer timeout',
    );
    expect(handOvers).toEqual([]);
  });

  it('fails visibly within seconds when a task fails with an error that recurs on every delivery: settled at once, logged with its error, lease given up, rethrown', async () => {
    const poisoned = definePipeline({ name: 'poisoned', partitions: 1 }, (ctx) => {
      ctx
        .textStream()
        .map((line) => {
          if (line.includes('poison')) throw new Error(`cannot digest ${JSON.stringify(line)}`);
          return line;
        })
        .saveAsTextFiles('out');
    });
    await createIngestHandler({ store, now: () => clock.now(), intervalMs: INTERVAL })(s3Event([upload(store, 'incoming/meal.txt', 'bread\npoison\n', T0 + 1_000)]));
    // The queue keeps the fake time too, so that retry delays and visibility timeouts pass as they would.
    const queue = new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: 2, clock });
    const tasks = createTaskHandler(poisoned, { store, queue, maxTaskAttempts: 2 });
    const deliveries: number[] = [];
    const mapping = eventSourceMapping(queue, async (event) => {
      const response = await tasks(event);
      deliveries.push(clock.now());
      return response;
    });
    const stdout = vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    clock.time = T0 + INTERVAL + 1_000;
    // The driver polls once a second, as on AWS.
    const awsPolls = { ...config, scheduler: { ...config.scheduler, pollMs: 1_000 } };
    // The driver's polls after the last delivery; the mapping's own waits are shorter.
    let pollsAfterLastDelivery = 0;
    clock.onSleep = (ms) => void (ms >= 1_000 && deliveries.length === 1 && pollsAfterLastDelivery++);
    try {
      const driver = createDriverHandler(poisoned, { store, queue, clock, config: awsPolls, wake: async () => void handOvers.push(clock.now()) });
      const failure = driver(scheduledEvent, until(T0 + 15 * 60_000));
      await expect(failure).rejects.toBeInstanceOf(TaskFailedError);
    } finally {
      await mapping.stop();
      await queue.close();
    }
    // One delivery, no retry: the driver's next poll, a second later on AWS, finds the final failure.
    expect(deliveries).toHaveLength(1);
    expect(pollsAfterLastDelivery).toBeLessThanOrEqual(2);
    expect(await store.get(keys.driverLease)).toBeUndefined();
    expect(handOvers).toEqual([]);
    const records = logged(vi.mocked(console.error).mock.calls).filter((l) => l.interval !== undefined);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      msg: 'interval 0 failed: a task failed with an error that recurs on every delivery; it stays failed until the cause is fixed',
      interval: 0,
      scope: 'interval=000000',
      stage: 'out-out',
      // A bad record under badRecords 'fail' fails the same way on every delivery: not retried.
      receiveCount: 1,
    });
    expect(records[0]!.lastError).toMatch(/^BadRecordError: map @d1 map failed on a record .*reading meal\.txt at byte 6: cannot digest "poison"/);
    // The record itself is user data: kept in the bucket's failure record, out of the log unless DSTREAM_LOG_RECORDS=true.
    expect(records[0]).not.toHaveProperty('record');
    expect(records[0]!.lastError).not.toContain('record:');
    // The metric the dead-letter alarm watches.
    const metrics = stdout.mock.calls.map(([line]) => JSON.parse(String(line)) as Record<string, unknown>);
    expect(metrics.filter((m) => m.DeadLetteredTasks === 1)).toEqual([expect.objectContaining({ Pipeline: 'poisoned', interval: 0, stage: 'out-out' })]);
    // Settled, not returned to the queue: no batch item failure.
    expect(metrics.filter((m) => m.TaskFailures).reduce((n, m) => n + Number(m.TaskFailures), 0)).toBe(0);
  });

  it('goes on from an interval failed on a bad record when invoked with {"quarantine": k}, in the same warm container', async () => {
    const poisoned = definePipeline({ name: 'poisoned', partitions: 1 }, (ctx) => {
      ctx
        .textStream()
        .map((line) => {
          if (line.includes('poison')) throw new Error('cannot digest it');
          return line;
        })
        .saveAsTextFiles('out');
    });
    await createIngestHandler({ store, now: () => clock.now(), intervalMs: INTERVAL })(s3Event([upload(store, 'incoming/meal.txt', 'bread\npoison\nsoup\n', T0 + 1_000)]));
    const queue = new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: 2 });
    const mapping = eventSourceMapping(queue, createTaskHandler(poisoned, { store, queue, maxTaskAttempts: 2 }));
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    clock.time = T0 + INTERVAL + 1_000;
    const driver = createDriverHandler(poisoned, { store, queue, clock, config, wake: async () => void handOvers.push(clock.now()) });
    try {
      await expect(driver(scheduledEvent, until(T0 + 15 * 60_000))).rejects.toBeInstanceOf(TaskFailedError);
      await driver({ quarantine: 0 }, until(clock.now() + 2 * MARGIN));
    } finally {
      await mapping.stop();
      await queue.close();
    }
    expect(await readTextOutput(store, 'out', 0)).toEqual(['bread', 'soup']);
    const quarantined = await listAll(store, 'errors/interval=000000/records/');
    expect(quarantined).toHaveLength(1);
    expect(Buffer.from((await store.get(quarantined[0]!.key))!).toString()).toContain('cannot digest it');
  });

  it('keeps a dead letter that is no task under errors/, and commits the interval', async () => {
    const queue = new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: 1 });
    // Something else put a message on the task queue; it was received once and not deleted.
    await queue.send(['{"not":"a task"}']);
    const [stray] = await queue.receive(1, 0);
    await createIngestHandler({ store, now: () => clock.now(), intervalMs: INTERVAL })(s3Event([upload(store, 'incoming/words.txt', 'a b a\n', T0 + 1_000)]));
    const mapping = eventSourceMapping(queue, createTaskHandler(wordcount, { store, queue, maxTaskAttempts: 1 }));
    clock.time = T0 + INTERVAL + 1_000;
    try {
      const driver = createDriverHandler(wordcount, { store, queue, clock, config, wake: async () => void handOvers.push(clock.now()) });
      await driver(scheduledEvent, until(T0 + INTERVAL + 1_000 + MARGIN + 1));
    } finally {
      await mapping.stop();
      await queue.close();
    }
    expect(await store.head(keys.committed('interval=000000'))).toBeDefined();
    const kept = JSON.parse(Buffer.from((await store.get(keys.unreadableDeadLetter(stray!.id)))!).toString());
    expect(kept).toMatchObject({ id: stray!.id, body: '{"not":"a task"}' });
    expect(kept.error).toMatch(/not a dstream task|task message/);
  });

  it('renews its lease while a stage runs, and stops, without error, once another driver has taken it', async () => {
    await createIngestHandler({ store, now: () => clock.now(), intervalMs: INTERVAL })(s3Event([upload(store, 'incoming/words.txt', 'a b a\n', T0 + 1_000)]));
    // No task runs: the stage waits, each poll moving the fake clock by 5 s.
    const queue = new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: 2 });
    const slowPolls = { ...config, scheduler: { ...config.scheduler, pollMs: 5_000 } };
    clock.time = T0 + INTERVAL + 1_000;
    const expiries: number[] = [];
    clock.onSleep = async () => {
      expiries.push((await lease()).expiresAt);
      if (expiries.length === 6) await store.put(keys.driverLease, JSON.stringify({ owner: 'a-usurper', expiresAt: clock.now() + 600_000 }));
    };
    try {
      const driver = createDriverHandler(wordcount, { store, queue, clock, config: slowPolls, leaseGraceMs: 30_000, leaseRenewMs: 10_000, wake: async () => {} });
      const result = await driver(scheduledEvent, until(T0 + 15 * 60_000));
      expect(result).toEqual({ intervalsRun: 0, next: 0, continued: false });
    } finally {
      await queue.close();
    }
    // Taken at the start for 30 s, then renewed every 10 s (every other poll) to 30 s ahead.
    const start = T0 + INTERVAL + 1_000;
    expect([...new Set(expiries)].slice(0, 3)).toEqual([start + 30_000, start + 40_000, start + 50_000]);
    expect((await lease()).owner).toBe('a-usurper');
  });

  it('checks its environment on the first invocation, naming the variable that is missing', async () => {
    vi.stubEnv('DSTREAM_BUCKET', 'a-bucket');
    vi.stubEnv('DSTREAM_TASK_QUEUE_URL', 'https://sqs.us-east-1.amazonaws.com/123456789012/tasks');
    vi.stubEnv('DSTREAM_WAKE_QUEUE_URL', '');
    // At module load, as the generated entry module does: no error yet.
    const handler = createDriverHandler(wordcount);
    await expect(handler(scheduledEvent, until(T0 + 15 * 60_000))).rejects.toThrow('environment variable DSTREAM_WAKE_QUEUE_URL is not set');
  });
});
