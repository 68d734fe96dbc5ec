/**
 * The driver function: runs the stream interval by interval for as long as one invocation may
 * live, then hands over to a fresh invocation of itself. Everything it knows is in the bucket
 * (progress, lineage, completions), so the hand-over loses nothing, and a driver that dies is
 * replaced by the watchdog, a scheduled invocation every minute that returns at once while a
 * live driver holds the lease.
 */
import { randomUUID } from 'node:crypto';
import type { Clock } from '../../core/ports/clock.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { StreamingDriver, type DriverConfig } from '../../core/streaming/driver.ts';
import { quarantineInterval } from '../../core/streaming/lineage.ts';
import { TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { driverConfig, functionConfig, logRecords, requireSetting, s3Store, sqsQueue, type FunctionConfig } from '../config.ts';
import { publishDeadLetteredTask, publishIntervalMetrics } from '../metrics.ts';
import { log } from '../log.ts';
import { intervalEnd } from '../../core/streaming/progress.ts';
import { DriverLease } from './lease.ts';
import { invokeSelf } from './invoke-self.ts';

export interface DriverHandlerDeps {
  store?: ObjectStore;
  queue?: TaskQueue;
  clock?: Clock;
  /** Starts a fresh invocation of the driver. Default: an asynchronous invoke of DSTREAM_DRIVER_FUNCTION_NAME. */
  invokeSelf?: () => Promise<void>;
  /** Default: from the environment (functions/config.ts). */
  config?: DriverConfig;
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
  /** True when a fresh invocation was started to carry on. */
  continued: boolean;
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
  let parts: { driver: StreamingDriver; store: ObjectStore; clock: Clock; handOver: () => Promise<void> } | undefined;
  const setup = () => {
    if (parts) return parts;
    let env: FunctionConfig | undefined;
    const fromEnv = () => (env ??= functionConfig());
    const config = deps.config ?? driverConfig(fromEnv());
    const store = deps.store ?? s3Store(fromEnv());
    const queue = deps.queue ?? sqsQueue(fromEnv());
    const clock = deps.clock ?? systemClock;
    // Checked now, not fourteen minutes in at the first hand-over.
    const handOver = deps.invokeSelf ?? invokeSelf(requireSetting(fromEnv().driverFunctionName, 'DSTREAM_DRIVER_FUNCTION_NAME'));
    parts = { driver: new StreamingDriver(pipeline, { store, queue, clock }, config, hooks), store, clock, handOver };
    return parts;
  };

  return async (event, context) => {
    const { driver, store, clock, handOver } = setup();
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
    const lease = new DriverLease(store, clock, randomUUID());
    let renewedAt = clock.now();
    // A long stage keeps the lease with short renewals, so a driver that crashes mid-stage holds
    // the stream up for one grace at most, not for the whole stage.
    renewLease = async () => {
      if (clock.now() - renewedAt < renewEvery) return;
      renewedAt = clock.now();
      if (!(await lease.acquire(clock.now() + grace))) throw new LeaseLost();
    };
    let intervalsRun = 0;
    let progress = await driver.progress();
    let k = progress.next;
    try {
      for (;;) {
        const end = intervalEnd(progress, k);
        // Taken for the wait for this interval and a grace to start it; its stages renew it as
        // they run. A driver that outlives its lease anyway (a long sink, say) may meet a second
        // one, which costs work, not correctness.
        renewedAt = clock.now();
        if (!(await lease.acquire(Math.max(clock.now(), end) + grace))) {
          log.info(intervalsRun === 0 ? 'another driver holds the lease: nothing to do' : 'another driver took the lease: stopping', { next: k });
          return { intervalsRun, next: k, continued: false };
        }
        const wait = Math.max(0, end - clock.now());
        if (remaining() - wait < margin) {
          // Not time enough to wait for interval k and run it here. Wait what this invocation can
          // (so that a long interval does not bounce between invocations), then carry on in a
          // fresh one; an interval cut short would be resumed by it from its lineage record.
          await clock.sleep(Math.max(0, Math.min(wait, remaining() - margin)));
          await lease.release();
          try {
            await handOver();
          } catch (error) {
            throw new Error(`handing over to a fresh driver invocation failed (the watchdog starts one within a minute): ${String(error)}`, { cause: error });
          }
          log.info('handed over to a fresh invocation', { intervalsRun, next: k });
          return { intervalsRun, next: k, continued: true };
        }
        await clock.sleep(wait);
        const report = await driver.runInterval(k, end);
        publishIntervalMetrics(pipeline.options.name, report, clock.now());
        intervalsRun++;
        progress = await driver.progress();
        k = progress.next;
      }
    } catch (error) {
      if (error instanceof LeaseLost) {
        log.info('another driver took the lease during a stage: stopping', { intervalsRun, next: k });
        return { intervalsRun, next: k, continued: false };
      }
      logFailure(k, error);
      if (error instanceof TaskFailedError) {
        publishDeadLetteredTask(pipeline.options.name, clock.now(), { interval: k, stage: error.stage, partition: error.partition });
      }
      await lease.release().catch(() => {});
      throw error;
    }
  };
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
