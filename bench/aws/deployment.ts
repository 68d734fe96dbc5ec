/**
 * The AWS deployment played in this process on the virtual clock: the real ingest, driver and task
 * handlers (functions/), each invocation an actor with Lambda's start latency, memory and billed
 * duration; S3 notifications to ingest; the SQS event source mapping feeding the task function
 * (batch size 1, maxConcurrency); and a control plane that decides what invokes the driver, when.
 */
import type { S3Event, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import type { DriverConfig } from '../../core/streaming/driver.ts';
import { keys } from '../../core/layout.ts';
import { createDriverHandler, type DriverHandlerDeps, type DriverRun, type InvocationContext } from '../../functions/driver/handler.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { driverConfig, functionConfig } from '../../functions/config.ts';
import { VersionedMemoryStore } from '../../test/support/versioned-store.ts';
import { s3Event, sqsEvent } from '../../test/functions/support.ts';
import * as L from './latency.ts';
import { Actor, Simulation } from './simulation.ts';
import { Meter, ModelledQueue, ModelledStore } from './services.ts';

/** A driver handler as a control plane builds it (one per execution environment). */
export type DriverHandler = (event: unknown, context?: InvocationContext) => Promise<DriverRun | unknown>;

/**
 * What invokes the driver, when, and how long one invocation lives: the part of the deployment
 * the current and the event-driven designs differ in. `start` arranges the invocations (timers on
 * the simulation, `deployment.invokeDriver`); `driverHandler` builds the handler for one
 * execution environment.
 */
export interface ControlPlane {
  name: string;
  driverHandler(pipeline: Pipeline, deps: DriverHandlerDeps & Required<Pick<DriverHandlerDeps, 'store' | 'queue' | 'clock' | 'config' | 'wake'>>): DriverHandler;
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
  readonly ingest: LambdaFunction<(event: S3Event) => Promise<void>>;
  readonly driver: LambdaFunction<DriverHandler>;
  readonly task: LambdaFunction<(event: SQSEvent) => Promise<SQSBatchResponse>>;
  readonly epoch: number;
  readonly config: DriverConfig;
  private readonly taskConcurrency: number;
  private pumpAt = -1;

  constructor(readonly options: DeploymentOptions) {
    this.epoch = options.start ?? Date.parse('2025-01-01T00:00:00.000Z');
    const sim = (this.sim = new Simulation(this.epoch));
    this.bucket = new VersionedMemoryStore(() => sim.now());
    this.store = new ModelledStore(this.bucket, sim, this.meter);
    const env = { DSTREAM_BUCKET: 'bucket', DSTREAM_INTERVAL_MS: String(options.intervalMs), DSTREAM_PARTITIONS: String(options.partitions) };
    const fnConfig = functionConfig(env);
    this.config = driverConfig(fnConfig);
    this.queue = new ModelledQueue(sim, this.meter, fnConfig.maxTaskAttempts);
    this.queue.onVisible = (at) => this.schedulePump(at);
    this.taskConcurrency = Math.min(options.taskConcurrency ?? 20, L.LAMBDA_ACCOUNT_CONCURRENCY);
    const { pipeline, controlPlane } = options;
    // Memory and timeouts as infra/dstream-pipeline.ts deploys them (task memory: its default).
    this.ingest = new LambdaFunction(sim, 'ingest', 256, 30_000, () => createIngestHandler({ store: this.store, now: () => sim.now(), intervalMs: options.intervalMs }));
    this.task = new LambdaFunction(sim, 'task', 1024, 60_000, () => createTaskHandler(pipeline, { store: this.store, queue: this.queue, maxTaskAttempts: fnConfig.maxTaskAttempts }));
    this.driver = new LambdaFunction(sim, 'driver', 1024, 15 * 60_000, () =>
      controlPlane.driverHandler(pipeline, {
        store: this.store,
        queue: this.queue,
        clock: sim,
        config: this.config,
        // The driver wake queue: a message delayed as asked, then picked up by the event source mapping.
        wake: async (message, delayMs) =>
          void this.invokeDriver(sim.now() + delayMs + L.SQS_TO_LAMBDA_MS, sqsEvent([{ id: 'wake', body: JSON.stringify(message), receipt: 'wake', receiveCount: 1 }])),
      }),
    );
  }

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
      void this.ingest.invoke(at + L.S3_NOTIFICATION_MS, (handler) => handler(event));
    });
  }

  /** The event source mapping: one message per invocation (batchSize 1) up to maxConcurrency. */
  private schedulePump(at: number): void {
    if (at === this.pumpAt) return;
    this.pumpAt = at;
    this.sim.at(at, () => this.pump());
  }

  private pump(): void {
    while (this.task.running < this.taskConcurrency) {
      const [message] = this.queue.take(1, VISIBILITY_MS);
      if (!message) return;
      this.meter.sqsRequest('esm', 'receive');
      void this.task.invoke(this.sim.now() + L.SQS_TO_LAMBDA_MS, (handler) => handler(sqsEvent([message]))).then((response) => {
        if (response && !response.batchItemFailures.some((f) => f.itemIdentifier === message.id)) {
          this.meter.sqsRequest('esm', 'delete');
          this.queue.forget(message.receipt);
        }
        this.schedulePump(this.sim.now());
      });
    }
  }
}

/** The task queue's visibility timeout: six times the task function's timeout (infra/dstream-pipeline.ts). */
const VISIBILITY_MS = 6 * 60_000;
