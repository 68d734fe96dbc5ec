/**
 * The AWS deployment played in this process on the virtual clock: the real ingest, driver and task
 * handlers (functions/), each invocation an actor with Lambda's start latency, memory and billed
 * duration; S3 notifications to ingest; the task queue's event source mapping feeding the task
 * function (batch size 1, maxConcurrency) and the wake queue's feeding the driver; the events
 * queue; and a control plane that decides how the handlers use them.
 */
import type { S3Event, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import type { DriverConfig } from '../../core/streaming/driver.ts';
import { keys } from '../../core/layout.ts';
import { createDriverHandler, type DriverHandlerDeps, type DriverRun, type InvocationContext } from '../../functions/driver/handler.ts';
import type { WakeSender } from '../../functions/driver/wake.ts';
import { createIngestHandler, type IngestHandlerDeps } from '../../functions/ingest/handler.ts';
import { createTaskHandler, type TaskHandlerDeps } from '../../functions/task/handler.ts';
import { driverConfig, functionConfig } from '../../functions/config.ts';
import { VersionedMemoryStore } from '../../test/support/versioned-store.ts';
import { s3Event, sqsEvent } from '../../test/functions/support.ts';
import * as L from './latency.ts';
import { Actor, Simulation } from './simulation.ts';
import { Meter, ModelledQueue, ModelledStore } from './services.ts';

/** A driver handler as a control plane builds it (one per execution environment). */
export type DriverHandler = (event: unknown, context?: InvocationContext) => Promise<DriverRun | unknown>;

/** The handlers' deps a control plane decides, over the deployment's store, task queue, clock and config. */
export interface ControlPlaneDeps {
  driver: Pick<DriverHandlerDeps, 'changes' | 'wake' | 'stayAwakeMs' | 'dormantAfterIntervals' | 'runInDriverBelowBytes'>;
  task: Pick<TaskHandlerDeps, 'notify'>;
  ingest: Pick<IngestHandlerDeps, 'wake'>;
}

/**
 * What invokes the driver, when, how long one invocation lives, and how it learns that a stage's
 * tasks settled: the part of the deployment the current and the event-driven designs differ in.
 * `env` is what the construct sets for it (read by functionConfig: the scheduler's poll);
 * `deps` wires the handlers to the deployment's modelled queues; `start` arranges the
 * invocations that nothing in the deployment sends (the watchdog's schedule).
 */
export interface ControlPlane {
  name: string;
  env: Record<string, string>;
  deps(deployment: Deployment): ControlPlaneDeps;
  start(deployment: Deployment): void;
}

export interface DeploymentOptions {
  pipeline: Pipeline;
  controlPlane: ControlPlane;
  intervalMs: number;
  /** Input splits per interval (DSTREAM_PARTITIONS). */
  partitions: number;
  /** The event source mapping's maxConcurrency (the construct's taskConcurrency, default 20). */
  taskConcurrency?: number;
  /** When the stream starts (its epoch), virtual ms since the Unix epoch. */
  start?: number;
  /** S3's delay from an upload to its notification reaching ingest. @default S3_NOTIFICATION_MS */
  notificationMs?: number;
  /** Every stage's tasks go to the task function, none run in the driver: what the growth table fits a cost per task to. @default false */
  fanOutAll?: boolean;
}

/** One Lambda function: its memory, timeout, warm execution environments, and what it was billed. */
export class LambdaFunction<H> {
  invocations = 0;
  coldStarts = 0;
  billedMs = 0;
  busyMs = 0;
  errors = 0;
  running = 0;
  /** Start times of the invocations still running. */
  private readonly live = new Set<{ started: number }>();
  private readonly idle: { handler: H; since: number }[] = [];

  constructor(
    private readonly sim: Simulation,
    readonly role: string,
    readonly memoryMb: number,
    readonly timeoutMs: number,
    private readonly build: () => H,
  ) {}

  /** Billed duration so far, counting invocations still running up to `now`. */
  billedUntil(now: number): number {
    let ms = this.billedMs;
    for (const { started } of this.live) ms += Math.ceil(now - started);
    return ms;
  }

  /** Starts an invocation at `at`; the promise settles when it ends (never rejects: errors are counted). */
  invoke<T>(at: number, run: (handler: H, context: InvocationContext) => Promise<T>): Promise<T | undefined> {
    const actor = new Actor(this.role, Math.max(1, L.LAMBDA_MB_PER_VCPU / this.memoryMb));
    return this.sim.spawn(actor, at, async () => {
      this.running++;
      this.invocations++;
      const started = this.sim.now();
      const invocation = { started };
      this.live.add(invocation);
      while (this.idle.length > 0 && this.idle[this.idle.length - 1]!.since + L.LAMBDA_KEEP_WARM_MS < started) this.idle.pop();
      const warm = this.idle.shift();
      if (!warm) this.coldStarts++;
      const handler = warm?.handler ?? this.build();
      await this.sim.sleep(warm ? L.LAMBDA_WARM_START_MS : L.LAMBDA_COLD_START_MS);
      const deadline = started + this.timeoutMs;
      let result: T | undefined;
      try {
        result = await run(handler, { getRemainingTimeInMillis: () => deadline - this.sim.now() });
      } catch {
        this.errors++;
      }
      await this.sim.sleep(0);
      // Billed to the millisecond, INIT included (prices.ts).
      this.billedMs += Math.ceil(this.sim.now() - started);
      this.busyMs += actor.busyMs;
      this.running--;
      this.live.delete(invocation);
      this.idle.unshift({ handler, since: this.sim.now() });
      return result;
    });
  }
}

export class Deployment {
  readonly sim: Simulation;
  readonly meter = new Meter();
  readonly bucket: VersionedMemoryStore;
  readonly store: ModelledStore;
  readonly queue: ModelledQueue;
  /** The driver wake queue: timers, hand-overs, uploads to a dormant stream. */
  readonly wakeQueue: ModelledQueue;
  /** The driver events queue: task functions' notices, long-polled by a driver while a stage runs. */
  readonly eventsQueue: ModelledQueue;
  /** The task queue's and the wake queue's event source mappings. */
  readonly mappings: EventSourceMapping[];
  readonly ingest: LambdaFunction<(event: S3Event) => Promise<void>>;
  readonly driver: LambdaFunction<DriverHandler>;
  readonly task: LambdaFunction<(event: SQSEvent) => Promise<SQSBatchResponse>>;
  readonly epoch: number;
  readonly config: DriverConfig;

  constructor(readonly options: DeploymentOptions) {
    this.epoch = options.start ?? Date.parse('2025-01-01T00:00:00.000Z');
    const sim = (this.sim = new Simulation(this.epoch));
    this.bucket = new VersionedMemoryStore(() => sim.now());
    this.store = new ModelledStore(this.bucket, sim, this.meter);
    const env = { DSTREAM_BUCKET: 'bucket', DSTREAM_INTERVAL_MS: String(options.intervalMs), DSTREAM_PARTITIONS: String(options.partitions), ...options.controlPlane.env };
    const fnConfig = functionConfig(env);
    this.config = driverConfig(fnConfig);
    this.queue = new ModelledQueue(sim, this.meter, fnConfig.maxTaskAttempts);
    const { pipeline, controlPlane } = options;
    // As infra/dstream-pipeline.ts deploys them: the wake queue (batch 10, maxConcurrency 2; its
    // visibility six driver timeouts) and the events queue (retention 60 s), read by the driver itself.
    this.wakeQueue = new ModelledQueue(sim, this.meter, Infinity);
    this.eventsQueue = new ModelledQueue(sim, this.meter, Infinity, 60_000);
    const planeDeps = controlPlane.deps(this);
    const deps = options.fanOutAll ? { ...planeDeps, driver: { ...planeDeps.driver, runInDriverBelowBytes: 0 } } : planeDeps;
    // Memory and timeouts as infra/dstream-pipeline.ts deploys them (task memory: its default).
    this.ingest = new LambdaFunction(sim, 'ingest', 256, 30_000, () => createIngestHandler({ store: this.store, now: () => sim.now(), intervalMs: options.intervalMs, ...deps.ingest }));
    this.task = new LambdaFunction(sim, 'task', 1024, 60_000, () =>
      createTaskHandler(pipeline, { store: this.store, queue: this.queue, maxTaskAttempts: fnConfig.maxTaskAttempts, ...deps.task }),
    );
    this.driver = new LambdaFunction(sim, 'driver', 1024, 15 * 60_000, () =>
      createDriverHandler(pipeline, { store: this.store, queue: this.queue, clock: sim, config: this.config, ...deps.driver }),
    );
    const taskConcurrency = Math.min(options.taskConcurrency ?? 20, L.LAMBDA_ACCOUNT_CONCURRENCY);
    this.mappings = [
      new EventSourceMapping(sim, this.meter, this.queue, (at, event) => this.task.invoke(at, (handler) => handler(event)), 1, taskConcurrency, TASK_VISIBILITY_MS),
      new EventSourceMapping(sim, this.meter, this.wakeQueue, (at, event) => this.invokeDriver(at, event), 10, 2, WAKE_VISIBILITY_MS),
    ];
  }

  /** Sends the driver a wake message through the wake queue, delayed in whole seconds as SqsWakeQueue asks. */
  readonly wake: WakeSender = (message, delayMs) => this.wakeQueue.send([JSON.stringify(message)], Math.floor(Math.min(delayMs, 900_000) / 1000) * 1000);

  /** Starts the stream (its progress pointer, as the tests do) and the control plane. */
  async begin(): Promise<void> {
    await this.bucket.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: this.epoch, intervalMs: this.options.intervalMs }));
    this.options.controlPlane.start(this);
  }

  invokeDriver(at: number, event: unknown): Promise<unknown> {
    return this.driver.invoke(at, (handler, context) => handler(event, context));
  }

  /**
   * A producer's upload at `at` (its own PUT, not the pipeline's bill), and S3's notification of
   * it to the ingest function.
   */
  upload(key: string, text: string, at: number): void {
    this.sim.at(at, () => {
      const versionId = this.bucket.write(key, text);
      const event = s3Event([{ key, size: Buffer.byteLength(text), at, versionId }]);
      void this.ingest.invoke(at + (this.options.notificationMs ?? L.S3_NOTIFICATION_MS), (handler) => handler(event));
    });
  }

}

/**
 * A Lambda event source mapping on a modelled queue: up to `batchSize` visible messages per
 * invocation, up to `maxConcurrency` invocations at once, each picked up SQS_TO_LAMBDA_MS after
 * its message is visible; the messages of an invocation that returns are deleted, but those it
 * reports failed (ReportBatchItemFailures); those of one that throws come back after the
 * visibility timeout. Its receives and deletes are billed requests; its idle long polls are
 * priced in cost.ts.
 */
class EventSourceMapping {
  private inFlight = 0;
  private pumpAt = -1;

  constructor(
    private readonly sim: Simulation,
    private readonly meter: Meter,
    private readonly queue: ModelledQueue,
    private readonly invoke: (at: number, event: SQSEvent) => Promise<unknown>,
    private readonly batchSize: number,
    private readonly maxConcurrency: number,
    private readonly visibilityMs: number,
  ) {
    queue.onVisible = (at) => this.schedule(at);
  }

  private schedule(at: number): void {
    if (at === this.pumpAt) return;
    this.pumpAt = at;
    this.sim.at(at, () => this.pump());
  }

  private pump(): void {
    while (this.inFlight < this.maxConcurrency) {
      const messages = this.queue.take(this.batchSize, this.visibilityMs);
      if (messages.length === 0) return;
      this.meter.sqsRequest('esm', 'receive');
      this.inFlight++;
      void this.invoke(this.sim.now() + L.SQS_TO_LAMBDA_MS, sqsEvent(messages)).then((response) => {
        this.inFlight--;
        if (response !== undefined) {
          const failed = new Set(((response as Partial<SQSBatchResponse>).batchItemFailures ?? []).map((f) => f.itemIdentifier));
          const done = messages.filter((m) => !failed.has(m.id));
          if (done.length > 0) this.meter.sqsRequest('esm', 'delete');
          for (const m of done) this.queue.forget(m.receipt);
        }
        this.schedule(this.sim.now());
      });
    }
  }
}

/** The task queue's visibility timeout: six times the task function's timeout (infra/dstream-pipeline.ts). */
const TASK_VISIBILITY_MS = 6 * 60_000;
/** The wake queue's: six times the driver function's 15-minute timeout (infra/dstream-pipeline.ts). */
const WAKE_VISIBILITY_MS = 6 * 15 * 60_000;
