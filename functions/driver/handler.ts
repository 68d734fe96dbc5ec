/**
 * The driver function runs when there is something to do, and not in between. Something wakes
 * it: a message on the driver wake queue (a timer it set itself, a hand-over, an upload to a
 * dormant stream), or the watchdog, a schedule every minute that only restarts a driver that is
 * missing. It runs every interval whose end has passed, then waits in the invocation for an end
 * nearer than `stayAwakeMs`, or sets a timer (a delayed wake message) for a later one and
 * returns; while a stage runs it waits on the task functions' notices (the driver events queue),
 * polling the store at once on each. After `dormantAfterIntervals` intervals without uploads it
 * marks the stream dormant and sets no timer: the next upload's ingest wakes it, and it catches
 * up the intervals it slept through, in order. Everything it knows is in the bucket (progress,
 * lineage, completions), so a lost, late or duplicated wake-up loses nothing.
 */
import { randomUUID } from 'node:crypto';
import type { ChangeFeed } from '../../core/ports/change-feed.ts';
import type { Clock } from '../../core/ports/clock.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { NoticeBoard, type TaskNotices } from '../../core/ports/task-runner.ts';
import { TaskHandler } from '../../core/runtime/task-handler.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { StreamingDriver, type DriverConfig } from '../../core/streaming/driver.ts';
import { IntervalPipeline } from '../../core/streaming/interval-pipeline.ts';
import { quarantineInterval } from '../../core/streaming/lineage.ts';
import { hasAdmittedUploads } from '../../core/streaming/intake.ts';
import { TaskFailedError, type ScopePlan } from '../../core/scheduler/dag-scheduler.ts';
import { keys } from '../../core/layout.ts';
import { controlPlaneSettings, DRIVER_TASK_CONCURRENCY, driverConfig, eventsFeed, functionConfig, logRecords, s3Store, sqsQueue, wakeQueue, type FunctionConfig } from '../config.ts';
import { publishDeadLetteredTask, publishDormantTick, publishIntervalMetrics } from '../metrics.ts';
import { log } from '../log.ts';
import { intervalAt, intervalEnd, type DriverProgress } from '../../core/streaming/progress.ts';
import { DriverLease } from './lease.ts';
import { InDriverTaskQueue } from './in-driver.ts';
import { wakeOf, type WakeSender } from './wake.ts';

export interface DriverHandlerDeps {
  store?: ObjectStore;
  queue?: TaskQueue;
  clock?: Clock;
  /**
   * What a stage waits on between polls of its completions; if it also names the tasks that
   * settled (TaskNotices), the scheduler reads those rather than listing. Default: the driver
   * events queue (DSTREAM_EVENTS_QUEUE_URL) when there is one; else the clock, for the scheduler's pollMs.
   */
  changes?: ChangeFeed | (ChangeFeed & TaskNotices);
  /**
   * A stage whose pending tasks read fewer bytes than this runs in the driver (functions/driver/in-driver.ts); 0: every
   * stage goes to the task queue. Default: DSTREAM_RUN_IN_DRIVER_BELOW_BYTES, else 0.
   */
  runInDriverBelowBytes?: number;
  /** Sends the driver a wake message, delayed. Default: the driver wake queue (DSTREAM_WAKE_QUEUE_URL). */
  wake?: WakeSender;
  /** Default: from the environment (functions/config.ts). */
  config?: DriverConfig;
  /** Default: DSTREAM_STAY_AWAKE_MS, else 2 s. Infinity: wait for every interval in the invocation, handing over near its end. */
  stayAwakeMs?: number;
  /** Default: DSTREAM_DORMANT_AFTER_INTERVALS, else about a minute of intervals. Infinity: never dormant. */
  dormantAfterIntervals?: number;
  /** Hand over once less than this is left of the invocation: room for the tail of one interval. Default 90 s. */
  handoverMarginMs?: number;
  /**
   * How long a lease outlives the end of the interval its driver waits for, and each renewal
   * while a stage runs: how long a crashed driver holds the stream up. Default 45 s.
   */
  leaseGraceMs?: number;
  /** How often the lease is renewed while a stage runs. Default 10 s. */
  leaseRenewMs?: number;
}

/** What Lambda's context offers that the driver uses. */
export interface InvocationContext {
  getRemainingTimeInMillis(): number;
}

export interface DriverRun {
  intervalsRun: number;
  /** The first interval not committed when this invocation returned. */
  next: number;
  /** True when this invocation sent a wake message (a timer or a hand-over) for a driver to carry on. */
  continued: boolean;
  /** Present when the stream is dormant: no driver runs until an upload (or an operator) wakes it. */
  dormant?: true;
}

/** What the driver writes at keys.driverDormant. */
export interface DormantRecord {
  /** The first interval not committed. */
  next: number;
  since: number;
}

const DEFAULT_HANDOVER_MARGIN_MS = 90_000;
const DEFAULT_LEASE_GRACE_MS = 45_000;
const DEFAULT_LEASE_RENEW_MS = 10_000;

/** Another driver took the lease while this one ran a stage: this one stops, the other carries on. */
class LeaseLost extends Error {}

export function createDriverHandler(
  pipeline: Pipeline,
  deps: DriverHandlerDeps = {},
): (event: unknown, context?: InvocationContext) => Promise<DriverRun> {
  const margin = deps.handoverMarginMs ?? DEFAULT_HANDOVER_MARGIN_MS;
  const grace = deps.leaseGraceMs ?? DEFAULT_LEASE_GRACE_MS;
  const renewEvery = deps.leaseRenewMs ?? DEFAULT_LEASE_RENEW_MS;
  // Set by each invocation for its lease; called between the scheduler's polls.
  let renewLease: (() => Promise<void>) | undefined;
  const hooks = { step: (step: string) => (step === 'mid-stage' ? renewLease?.() : undefined) };
  // Built on the first invocation, not when the entry module loads this; kept for the container's
  // later invocations (the driver caches lineage records, which never change).
  let parts: { driver: StreamingDriver; store: ObjectStore; clock: Clock; wake: WakeSender; stayAwakeMs: number; dormantAfter: number } | undefined;
  const setup = () => {
    if (parts) return parts;
    let env: FunctionConfig | undefined;
    const fromEnv = () => (env ??= functionConfig());
    const config = deps.config ?? driverConfig(fromEnv());
    const settings = controlPlaneSettings(process.env, config.intervalMs);
    const store = deps.store ?? s3Store(fromEnv());
    const taskQueue = deps.queue ?? sqsQueue(fromEnv());
    const clock = deps.clock ?? systemClock;
    const remote = deps.changes ?? eventsFeed(settings);
    // Small stages run here, with the task function's code; their notices join the events queue's.
    const board = new NoticeBoard();
    // They take their plan from the interval the driver runs rather than read its lineage record
    // back: the record it was built from, the one the task was sent under. Should an operator
    // rewrite the record meanwhile (`dstream quarantine`), the task runs as one that read it just
    // before would: its result, had it met no bad record, is what the new record gives, and a
    // final failure is the old run's; the driver sees the new record at its next check.
    const tasks = new TaskHandler(pipeline, store, { now: () => clock.now(), executor: 'driver', knownPlan: (scope, planHash): ScopePlan | undefined => driver.scopePlan(scope, planHash) });
    const inDriver = new InDriverTaskQueue(taskQueue, store, tasks, board, clock, {
      belowBytes: deps.runInDriverBelowBytes ?? settings.runInDriverBelowBytes,
      concurrency: DRIVER_TASK_CONCURRENCY,
      // The sizes of persisted parts from the listings the driver already made: no HEAD per part.
      storedSize: (scope: string, key: string): Promise<number> | undefined => driver.storedPartSize(scope, key),
    });
    const queue: TaskQueue = inDriver;
    const changes = inDriver.changes(remote);
    const named = remote && namesTasks(remote) ? remote : undefined;
    const notices: TaskNotices = { takeNotices: () => [...board.takeNotices(), ...(named?.takeNotices() ?? [])] };
    // Checked now, not at the first timer.
    const wake: WakeSender = deps.wake ?? ((queue) => (message, delayMs) => queue.send(message, delayMs))(wakeQueue(settings));
    const stayAwakeMs = deps.stayAwakeMs ?? settings.stayAwakeMs;
    // Never before every window holding the last upload has slid past it: until then an
    // interval's output depends on what came before, and is wanted on time.
    const dormantAfter = Math.max(deps.dormantAfterIntervals ?? settings.dormantAfterIntervals, pipeline.graph.lookback());
    const driver = new StreamingDriver(pipeline, { store, queue, clock, changes, notices }, config, hooks);
    parts = { driver, store, clock, wake, stayAwakeMs, dormantAfter };
    return parts;
  };

  return async (event, context) => {
    const { driver, store, clock, wake, stayAwakeMs, dormantAfter } = setup();
    const woken = wakeOf(event);
    // The operator's way on from an interval failed on a bad record (see the README's runbook).
    const quarantine = (event as { quarantine?: unknown } | null | undefined)?.quarantine;
    if (quarantine !== undefined) {
      if (!Number.isSafeInteger(quarantine) || (quarantine as number) < 0) throw new Error(`{"quarantine": k} needs an interval number, got ${JSON.stringify(quarantine)}`);
      log.info(await quarantineInterval(store, quarantine as number), { interval: quarantine });
    }
    const remaining = () => context?.getRemainingTimeInMillis() ?? Infinity;
    if (remaining() <= margin) {
      // Else every invocation would hand over at once, to another just as short, forever.
      throw new Error(`the driver invocation has ${remaining()} ms to run, not more than the ${margin} ms hand-over margin: give the driver function a longer timeout`);
    }
    if (woken.kind === 'watchdog') {
      // One GET a minute while dormant: the safety net costs next to nothing. The tick tells the
      // Stalled alarm that no commit is expected.
      const dormant = await readDormant(store);
      if (dormant) {
        publishDormantTick(pipeline.options.name, clock.now());
        return { intervalsRun: 0, next: dormant.next, continued: false, dormant: true };
      }
    }
    const lease = new DriverLease(store, clock, randomUUID());
    let renewedAt = clock.now();
    let leaseLost = false;
    // A long stage keeps the lease with short renewals, so a driver that crashes mid-stage holds
    // the stream up for one grace at most, not for the whole stage. Once lost, every interval in
    // flight stops at its next renewal, not only the one that found it lost.
    renewLease = async () => {
      if (leaseLost) throw new LeaseLost();
      if (clock.now() - renewedAt < renewEvery) return;
      renewedAt = clock.now();
      if (!(await lease.acquire(clock.now() + grace))) {
        leaseLost = true;
        throw new LeaseLost();
      }
    };
    let intervalsRun = 0;
    let quiet = woken.quiet;
    // Up to maxIntervalsInFlight at once; reports come as each commits, in interval order.
    const intervals = new IntervalPipeline(driver, (report) => {
      publishIntervalMetrics(pipeline.options.name, report, clock.now());
      intervalsRun++;
      quiet = report.uploads === 0 ? quiet + 1 : 0;
    });
    let progress = await driver.progress();
    /** The next interval to start: those before it have committed or are in flight. */
    let k = progress.next;
    /** Takes (or renews) the lease to wait for interval k and start it; the first time, over from the driver that woke this one. */
    const hold = async (end: number, first: boolean) => {
      renewedAt = clock.now();
      return lease.acquire(Math.max(clock.now(), end) + grace, first ? woken.heirOf : undefined);
    };
    try {
      for (let first = true; ; first = false) {
        const end = intervalEnd(progress, k);
        const ahead = Math.max(0, end - clock.now());
        // This invocation returns (a timer, a hand-over, dormancy) only with nothing in flight, so
        // the driver it hands to resumes from the pointer and every interval before it has
        // committed; and the quiet count is exact only then. So when one of those may come next,
        // the intervals in flight commit first, then it is decided afresh.
        if (intervals.inFlight > 0 && (ahead > stayAwakeMs || remaining() - ahead < margin || (ahead > 0 && quiet + intervals.inFlight >= dormantAfter))) {
          await intervals.drain();
          progress = await driver.progress();
          continue;
        }
        // Taken for the wait for this interval and a grace to start it; its stages renew it as
        // they run. A driver that outlives its lease anyway (a long sink, say) may meet a second
        // one, which costs work, not correctness.
        if (!(await hold(end, first))) {
          // The intervals in flight stop; the driver holding the lease resumes them from their lineage.
          intervals.stop();
          await intervals.drain();
          log.info(first ? 'another driver holds the lease: nothing to do' : 'another driver took the lease: stopping', { next: k });
          return { intervalsRun, next: k, continued: false };
        }
        // Awake: whatever woke this driver, the stream is not dormant (S3 does not charge DELETEs).
        if (first) await store.delete(keys.driverDormant);
        const wait = Math.max(0, end - clock.now());
        if (wait > 0 && quiet >= dormantAfter) {
          const outcome = await goDormant(store, lease, progress, k, clock, () => hold(end, first));
          if (outcome === 'dormant') {
            log.info(`dormant after ${quiet} intervals without uploads: the next upload wakes the stream`, { next: k, quiet });
            return { intervalsRun, next: k, continued: false, dormant: true };
          }
          if (outcome === 'lease-lost') return { intervalsRun, next: k, continued: false };
          quiet = 0;
        }
        if (wait > stayAwakeMs) {
          // A timer, and the lease kept until the interval ends (and a grace): the watchdog stays
          // out, and the invocation the timer starts carries on as this driver's heir.
          await send(wake, { source: 'dstream.wake', reason: 'timer', owner: lease.owner, quiet }, wait);
          log.info('set a timer for the next interval end', { intervalsRun, next: k, inMs: wait });
          return { intervalsRun, next: k, continued: true };
        }
        if (remaining() - wait < margin) {
          // Not time enough to wait for interval k and run it here. Wait what this invocation can
          // (so that a long interval does not bounce between invocations), then carry on in a
          // fresh one; an interval cut short would be resumed by it from its lineage record.
          await clock.sleep(Math.max(0, Math.min(wait, remaining() - margin)));
          await lease.release();
          await send(wake, { source: 'dstream.wake', reason: 'hand-over', quiet }, 0);
          log.info('handed over to a fresh invocation', { intervalsRun, next: k });
          return { intervalsRun, next: k, continued: true };
        }
        await clock.sleep(wait);
        // Returns once k is planned; its stages run while this loop waits for k+1.
        await intervals.start(k, end);
        k++;
        // Starting an interval may have moved the clock to a new interval length.
        progress = await driver.progress();
      }
    } catch (error) {
      // Whatever failed, nothing is in flight any more (start and drain throw only then).
      const failed = intervals.failedInterval ?? k;
      if (error instanceof LeaseLost) {
        log.info('another driver took the lease during a stage: stopping', { intervalsRun, next: failed });
        return { intervalsRun, next: failed, continued: false };
      }
      logFailure(failed, error);
      if (error instanceof TaskFailedError) {
        publishDeadLetteredTask(pipeline.options.name, clock.now(), { interval: failed, stage: error.stage, partition: error.partition });
      }
      await lease.release().catch(() => {});
      throw error;
    }
  };
}

const namesTasks = (feed: ChangeFeed): feed is ChangeFeed & TaskNotices => typeof (feed as Partial<TaskNotices>).takeNotices === 'function';

async function send(wake: WakeSender, message: Parameters<WakeSender>[0], delayMs: number): Promise<void> {
  try {
    await wake(message, delayMs);
  } catch (error) {
    throw new Error(`sending the driver a ${message.reason} wake message failed (the watchdog starts a driver within a minute of the lease's expiry): ${String(error)}`, { cause: error });
  }
}

/**
 * Marks the stream dormant, gives the lease up, then looks for uploads admitted since the last
 * interval: written first, read second, as ingest does the other way round (it admits, then reads
 * the mark), so that of an upload racing the mark, at least one side sees the other. The lease
 * goes before the look so that a driver the upload's ingest wakes finds it free. An upload found:
 * the mark goes and this driver carries on, if it can take the lease back.
 */
async function goDormant(
  store: ObjectStore,
  lease: DriverLease,
  progress: DriverProgress,
  k: number,
  clock: Clock,
  retake: () => Promise<boolean>,
): Promise<'dormant' | 'awake' | 'lease-lost'> {
  const record: DormantRecord = { next: k, since: clock.now() };
  await store.put(keys.driverDormant, JSON.stringify(record));
  await lease.release();
  // An ingest clock ahead of ours admits to the interval after the current one.
  if (!(await hasAdmittedUploads(store, k, intervalAt(progress, clock.now()) + 1))) return 'dormant';
  await store.delete(keys.driverDormant);
  return (await retake()) ? 'awake' : 'lease-lost';
}

async function readDormant(store: ObjectStore): Promise<DormantRecord | undefined> {
  const bytes = await store.get(keys.driverDormant);
  if (!bytes) return undefined;
  try {
    const record = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<DormantRecord>;
    if (typeof record.next === 'number') return { next: record.next, since: Number(record.since) };
  } catch {
    // Unreadable: as good as dormant, with the interval unknown.
  }
  return { next: -1, since: NaN };
}

/**
 * A failed interval fails the invocation, visibly. The watchdog's next driver resumes the
 * interval and runs the failed task again; a cause that persists fails it again the same way,
 * and no later interval commits until the cause is fixed.
 */
function logFailure(interval: number, error: unknown): void {
  if (error instanceof TaskFailedError) {
    log.error(
      error.settled
        ? `interval ${interval} failed: a task failed with an error that recurs on every delivery; it stays failed until the cause is fixed`
        : `interval ${interval} failed: a task failed every delivery and was dead-lettered; it stays failed until the cause is fixed`,
      {
        interval,
        scope: error.scope,
        stage: error.stage,
        partition: error.partition,
        receiveCount: error.receiveCount,
        lastError: error.lastError,
        ...(error.record !== undefined && logRecords() ? { record: error.record } : {}),
      },
    );
    return;
  }
  log.error(`driver failed at interval ${interval}`, { interval, error });
}
