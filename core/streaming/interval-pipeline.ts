/**
 * Intervals run at once, in order (Spark Streaming's `spark.streaming.concurrentJobs`, with the
 * order kept): interval k+1 is sealed and planned once it has ended, while k runs; its stages that
 * read nothing of an earlier interval (the map stages over its own uploads) run at once; those that
 * read what an earlier interval persists (state, windows) wait until that interval's stages are
 * done; its commit (outputs' _SUCCESS, sinks, the committed record, the pointer, garbage
 * collection) waits for k's. So every interval reads and writes exactly what it would one after
 * another, and its outputs are the same bytes.
 */
import type { ObjectStore } from '../ports/object-store.ts';
import type { DeadLetter, TaskQueue } from '../ports/task-queue.ts';
import type { TaskNotice, TaskNotices } from '../ports/task-runner.ts';
import type { ScopePlan } from '../scheduler/dag-scheduler.ts';
import { stagesRun } from '../scheduler/stages.ts';
import { scopeOfKey } from '../layout.ts';
import { stagesWithoutTasks } from './empty-stages.ts';
import type { IntervalOrder, IntervalReport, StreamingDriver } from './driver.ts';

/**
 * DriverConfig.maxIntervalsInFlight's default on AWS: an interval's map stages overlap the previous
 * one's reduce side, where each task has a Lambda's CPU of its own and an interval's time is mostly
 * round trips (the AWS model's 1 s intervals: 81 of 90 committed against 45 of 90 with 1).
 */
export const DEFAULT_MAX_INTERVALS_IN_FLIGHT = 2;
/**
 * Its default in the embedded runtime: on a machine's few cores the tasks of two intervals only
 * contend (the bench's throughput table: WordCount with 2 workers 4.52 s with 1 in flight, 5.56 s
 * with 2; Grep 0.89 s against 1.22 s).
 */
export const DEFAULT_EMBEDDED_INTERVALS_IN_FLIGHT = 1;
/** Its largest value: each interval in flight holds a scheduler polling the store. */
export const MAX_INTERVALS_IN_FLIGHT = 16;

/** An interval stopped because one before it failed: it must not commit before that one does. */
export class EarlierIntervalFailed extends Error {
  constructor(
    readonly interval: number,
    readonly failed: number,
  ) {
    super(`interval ${interval} stopped: interval ${failed} before it failed`);
    this.name = 'EarlierIntervalFailed';
  }
}

/** An interval stopped before its commit because its driver stops (IntervalPipeline.stop): not a failure. */
export class IntervalStopped extends Error {
  constructor() {
    super('stopped before its commit: the driver that resumes the stream resumes it');
    this.name = 'IntervalStopped';
  }
}

/** A bound on intervals in flight, checked where it is configured: the error names `what`. */
export function checkMaxIntervalsInFlight(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 1 || value > MAX_INTERVALS_IN_FLIGHT) {
    throw new Error(`${what} must be a whole number from 1 to ${MAX_INTERVALS_IN_FLIGHT}, got ${value}`);
  }
  return value;
}

/**
 * The stages of `plan` that may run before the intervals before it have run theirs: those that
 * read no persisted RDD of another scope, themselves or through a parent, and that run even if
 * every such RDD were empty (stagesWithoutTasks skips fewer stages as more is known to hold
 * records), so none is run that the interval then finds it need not have run.
 */
export async function stagesBeforeGate(store: ObjectStore, plan: ScopePlan, runEmptyStages: boolean): Promise<string[]> {
  const byId = new Map(plan.stages.map((s) => [s.id, s]));
  const gated = new Map<string, boolean>();
  const isGated = (id: string): boolean => {
    let known = gated.get(id);
    if (known === undefined) {
      const spec = byId.get(id)!;
      known = spec.storedReads.some((r) => scopeOfKey(`${r.location}/`) !== plan.scope) || spec.parents.some(isGated);
      gated.set(id, known);
    }
    return known;
  };
  const skipped = new Set(runEmptyStages ? [] : (await stagesWithoutTasks(store, plan, { earlierEmpty: true })).map((s) => s.id));
  const runs = new Set<string>();
  const add = (id: string) => {
    if (runs.has(id)) return;
    runs.add(id);
    byId.get(id)!.parents.forEach(add);
  };
  for (const spec of stagesRun(plan.stages)) if (spec.kind !== 'shuffle-map' && !skipped.has(spec.id)) add(spec.id);
  return [...runs].filter((id) => !isGated(id));
}

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(error: Error): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // Awaited by the next interval, if one starts: never an unhandled rejection.
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

interface Flight {
  k: number;
  planned: Deferred;
  stagesDone: Deferred;
  committed: Deferred;
  abort: AbortController;
  /** Its report was handed on (at its commit record, or once its run returned one). */
  reported: boolean;
  /** Settles (never rejects) once the interval's run has settled and its report was handed on. */
  settled: Promise<void>;
}

/**
 * Runs a driver's intervals up to `maxIntervalsInFlight` at once, in order. A loop starts each
 * interval once it has ended (start) and waits for the rest before it stops (drain); reports come
 * in interval order, as each commits. When an interval fails, the intervals after it stop before
 * their commit (their durable work kept, for the driver that resumes them), those before it run
 * to their commit, and start or drain throws its error once nothing is in flight: the same
 * outcome, interval for interval, as running them one after another.
 */
export class IntervalPipeline {
  private readonly flights: Flight[] = [];
  private failure?: { k: number; error: unknown };
  private stopped = false;
  readonly max: number;

  constructor(
    private readonly driver: StreamingDriver,
    private readonly onCommitted: (report: IntervalReport) => void = () => {},
  ) {
    this.max = checkMaxIntervalsInFlight(driver.config.maxIntervalsInFlight ?? DEFAULT_MAX_INTERVALS_IN_FLIGHT, 'maxIntervalsInFlight');
  }

  /** Intervals started and not yet settled. */
  get inFlight(): number {
    return this.flights.length;
  }

  /** The interval whose failure start or drain threw, if one failed. */
  get failedInterval(): number | undefined {
    return this.failure?.k;
  }

  /**
   * Starts interval k (which has ended; the interval after the last one started) once fewer than
   * the bound are in flight, and returns once it is planned, when k+1 may be started. After stop,
   * starts nothing.
   */
  async start(k: number, intervalEnd?: number): Promise<void> {
    while (this.flights.length >= this.max && !this.failure) await this.flights[0]!.settled;
    if (this.failure) return this.drain();
    // Stopped meanwhile: k is not started; the driver that resumes the stream starts it.
    if (this.stopped) return;
    const before = this.flights.at(-1);
    const flight: Flight = { k, planned: deferred(), stagesDone: deferred(), committed: deferred(), abort: new AbortController(), reported: false, settled: Promise.resolve() };
    const report = (r: IntervalReport) => {
      if (flight.reported) return;
      flight.reported = true;
      this.onCommitted(r);
    };
    const order: IntervalOrder = {
      earlierStagesDone: before?.stagesDone.promise ?? Promise.resolve(),
      earlierCommitted: before?.committed.promise ?? Promise.resolve(),
      signal: flight.abort.signal,
      planned: () => flight.planned.resolve(),
      stagesDone: () => flight.stagesDone.resolve(),
      committed: report,
    };
    flight.settled = this.driver.runInterval(k, intervalEnd, order).then(
      (result) => {
        this.flights.splice(this.flights.indexOf(flight), 1);
        // Before the next interval may commit: reports are handed on in interval order.
        report(result);
        flight.planned.resolve();
        flight.stagesDone.resolve();
        flight.committed.resolve();
      },
      (error: unknown) => {
        this.flights.splice(this.flights.indexOf(flight), 1);
        // Stopped, or stopped waiting for an interval that was: left for the driver that resumes the stream.
        const benign = error instanceof IntervalStopped || (this.stopped && error instanceof EarlierIntervalFailed);
        if (!benign && (!this.failure || k < this.failure.k)) this.failure = { k, error };
        const reason = benign ? new IntervalStopped() : new EarlierIntervalFailed(k + 1, k);
        for (const d of [flight.planned, flight.stagesDone, flight.committed]) d.reject(reason);
        for (const later of this.flights) if (later.k > k) later.abort.abort(benign ? new IntervalStopped() : new EarlierIntervalFailed(later.k, k));
      },
    );
    this.flights.push(flight);
    await Promise.race([flight.planned.promise.catch(() => undefined), flight.settled]);
    if (this.failure) await this.drain();
  }

  /**
   * Waits for every interval in flight; throws the failure of the first that failed, if one did.
   * A pipeline that failed starts nothing more: a driver resumes from the failed interval.
   */
  async drain(): Promise<void> {
    while (this.flights.length > 0) await Promise.all(this.flights.map((f) => f.settled));
    if (this.failure) throw this.failure.error;
  }

  /**
   * Stops every interval in flight that has not committed, at its next wait (a stage's poll, or
   * before its commit), their durable work kept for the driver that resumes the stream: when the
   * runtime stops, or another driver took the stream over. Drain to wait for them.
   */
  stop(): void {
    this.stopped = true;
    for (const flight of this.flights) flight.abort.abort(new IntervalStopped());
  }
}

/**
 * What one source yields, given to every reader open when it came, whichever reader fetched it:
 * the schedulers of the intervals in flight share a runner's notices and a queue's dead letters.
 */
class Broadcast<T> {
  private readonly readers = new Set<T[]>();

  /** A reader: `take(fresh)` hands what it just fetched to every reader, then answers its own (up to `max`). */
  open(): { take(fresh: T[], max?: number): T[]; close(): void } {
    const mine: T[] = [];
    this.readers.add(mine);
    return {
      take: (fresh, max) => {
        for (const reader of this.readers) reader.push(...fresh);
        return mine.splice(0, max ?? mine.length);
      },
      close: () => void this.readers.delete(mine),
    };
  }
}

/** One runner's notices shared by the schedulers of the intervals in flight: each reader gets every notice given while it is open, once. */
export class SharedNotices {
  private readonly broadcast = new Broadcast<TaskNotice>();

  constructor(private readonly source: TaskNotices) {}

  reader(): TaskNotices & { close(): void } {
    const reader = this.broadcast.open();
    return { takeNotices: () => reader.take(this.source.takeNotices()), close: reader.close };
  }
}

/**
 * The queue as the schedulers of the intervals in flight use it: each reader drains every dead
 * letter, whichever drained it from the queue, so the scheduler whose task it is sees it (a
 * scheduler leaves the letters of another's stages to that one: SchedulerDeps.elsewhere).
 */
export class SharedDeadLetters {
  private readonly broadcast = new Broadcast<DeadLetter>();

  constructor(private readonly queue: TaskQueue) {}

  reader(): TaskQueue & { close(): void } {
    const reader = this.broadcast.open();
    const queue = this.queue;
    return {
      send: (bodies) => queue.send(bodies),
      receive: (max, visibilityTimeoutMs, waitMs) => queue.receive(max, visibilityTimeoutMs, waitMs),
      delete: (receipt) => queue.delete(receipt),
      changeVisibility: (receipt, ms) => queue.changeVisibility(receipt, ms),
      deadLetter: (message, reason) => queue.deadLetter(message, reason),
      drainDeadLetters: async (max) => reader.take(await queue.drainDeadLetters(max), max),
      close: reader.close,
    };
  }
}
