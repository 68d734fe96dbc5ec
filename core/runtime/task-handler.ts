import type { ObjectStore } from '../ports/object-store.ts';
import type { BatchJob, Pipeline } from '../graph/pipeline.ts';
import { BadRecordError, runTask, type TaskFailure, type TaskOutcome, type TaskRecord } from '../exec/task.ts';
import type { PlanBuilder } from '../rdd/rdd.ts';
import { decodeTaskMessage, keepUnreadableMessage, MalformedTaskMessageError } from '../scheduler/task-message.ts';
import { UnstorableValueError } from '../codec/storable.ts';
import { INCOMING, intervalOf, keys } from '../layout.ts';
import { PipelineMismatchError, planFromRecord, readLineageRecord } from '../streaming/lineage.ts';
import { batchPlanFromRecord, type BatchRecord } from '../batch/batch-runner.ts';

export type PipelineModule = Pipeline | BatchJob;

/**
 * The one policy for a delivery that threw. An error that the same task meets again on every
 * delivery (a bad record under badRecords 'fail', an unstorable value, code that is not the
 * driver's, a message that is no task) is settled at once: the runner acknowledges the message,
 * and the failure is recorded where the driver finds it on its next poll. Retrying it would only
 * delay the same failure. Anything else (a store outage, a dead worker, a timeout) is retried,
 * until the queue dead-letters it.
 */
export function settlesAtOnce(error: unknown): boolean {
  return (
    error instanceof BadRecordError ||
    error instanceof UnstorableValueError ||
    error instanceof PipelineMismatchError ||
    error instanceof MalformedTaskMessageError
  );
}


/** Plans rebuilt recently, by scope: a worker runs many tasks of the same interval. */
const PLAN_CACHE_SIZE = 8;

export interface TaskHandlerOptions {
  now?: () => number;
  /**
   * While a task runs, how often to look for another copy's completion record; when one appears
   * this copy stops, as Spark kills the losing attempts of a speculated task, freeing its worker.
   * Each look is one HEAD request; 0 never looks.
   */
  supersededCheckMs?: number;
}

/**
 * The task side, independent of where it runs: decodes a queue message, rebuilds the task's plan
 * from the lineage record and the pipeline module, runs it, and on failure leaves the error where
 * the driver will find it if the task ends up dead-lettered. The local worker and the task Lambda
 * both call this.
 */
export class TaskHandler {
  private readonly plans = new Map<string, PlanBuilder>();

  private readonly now: () => number;
  private readonly supersededCheckMs: number;

  constructor(
    private readonly module: PipelineModule,
    private readonly store: ObjectStore,
    options: TaskHandlerOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.supersededCheckMs = options.supersededCheckMs ?? 0;
  }

  decode(body: string): Promise<TaskRecord> {
    return decodeTaskMessage(this.store, body);
  }

  /**
   * For a message that could not be decoded: true when it is no task on any delivery (the runner
   * acknowledges it; it is kept under errors/unreadable-dead-letters/), false when decoding may
   * succeed on a retry (the store failed).
   */
  async settleUndecodable(message: { id: string; body: string; receiveCount: number }, error: unknown): Promise<boolean> {
    if (!settlesAtOnce(error)) return false;
    await keepUnreadableMessage(this.store, message, error);
    return true;
  }

  /**
   * Runs the task; `cancel` is aborted when another copy commits first (the caller may watch it).
   * On an error that `settlesAtOnce`, the task's final failure is recorded before it is rethrown,
   * and the runner acknowledges the message instead of returning it.
   */
  async handle(task: TaskRecord, receiveCount: number, cancel = new AbortController()): Promise<TaskOutcome> {
    const stopWatching = this.watchForWinner(task, cancel);
    try {
      return await runTask(task, {
        store: this.store,
        loadPlan: (t) => this.loadPlan(t),
        badRecords: this.module.options.badRecords,
        maxLineBytes: this.module.options.maxLineBytes,
        now: this.now,
        inputName: uploadName,
        signal: cancel.signal,
      });
    } catch (error) {
      await this.recordFailure(task, receiveCount, error);
      if (settlesAtOnce(error)) await this.recordFinalFailure(task, receiveCount, error);
      throw error;
    } finally {
      stopWatching();
    }
  }

  private watchForWinner(task: TaskRecord, cancel: AbortController): () => void {
    if (this.supersededCheckMs <= 0) return () => {};
    const doneKey = keys.taskDone(task.scope, task.stage, task.partition);
    let looking = false;
    const timer = setInterval(() => {
      if (looking || cancel.signal.aborted) return;
      looking = true;
      this.store
        .head(doneKey)
        .then((info) => info && cancel.abort(new Error(`another copy of ${task.stage}/${task.partition} committed first`)))
        // A failed look is no reason to stop a task that may be the only copy.
        .catch(() => {})
        .finally(() => (looking = false));
    }, this.supersededCheckMs);
    timer.unref?.();
    return () => clearInterval(timer);
  }

  /** Leaves the error where the driver looks if the task is dead-lettered; best effort. */
  recordFailure(task: TaskRecord, receiveCount: number, error: unknown): Promise<void> {
    return recordTaskFailure(this.store, task, receiveCount, error);
  }

  /** Not best effort: a runner that acknowledges the message must leave this, or the driver waits forever. */
  private async recordFinalFailure(task: TaskRecord, receiveCount: number, error: unknown): Promise<void> {
    const failure: TaskFailure = { ...(task.run ? { run: task.run } : {}), stage: task.stage, partition: task.partition, attempt: task.attempt, copy: task.copy, receiveCount, error: describeError(error) };
    // The run goes into a key: only the scheduler's hex ids, never whatever a message carries.
    const run = typeof task.run === 'string' && /^[0-9a-f]{1,32}$/.test(task.run) ? task.run : 'none';
    await this.store.put(keys.taskFailed(task.scope, task.stage, task.partition, run), JSON.stringify(failure));
  }

  private async loadPlan(task: TaskRecord): Promise<PlanBuilder> {
    const cacheKey = `${task.scope}#${task.planHash}`;
    const cached = this.plans.get(cacheKey);
    if (cached) return cached;
    if (task.pipeline !== this.module.options.name || task.fingerprint !== this.module.fingerprint) {
      throw new PipelineMismatchError(
        `task for pipeline ${task.pipeline} (fingerprint ${task.fingerprint}) reached a worker running ${this.module.options.name} ` +
          `(fingerprint ${this.module.fingerprint}): the driver and the tasks must load the same pipeline module`,
      );
    }
    let builder: PlanBuilder;
    const k = intervalOf(task.scope);
    if (this.module.kind === 'stream') {
      if (k === undefined) throw new Error(`a streaming pipeline got a task of ${task.scope}`);
      const record = await readLineageRecord(this.store, k);
      if (!record) throw new Error(`lineage record of ${task.scope} is missing`);
      builder = planFromRecord(this.module, record).builder;
    } else {
      const bytes = await this.store.get(keys.lineageRecord(task.scope));
      if (!bytes) throw new Error(`lineage record of ${task.scope} is missing`);
      builder = batchPlanFromRecord(this.module, JSON.parse(Buffer.from(bytes).toString('utf8')) as BatchRecord).builder;
    }
    this.plans.set(cacheKey, builder);
    if (this.plans.size > PLAN_CACHE_SIZE) this.plans.delete(this.plans.keys().next().value!);
    return builder;
  }
}

/**
 * Leaves a task's last error where the driver reads it when the task is dead-lettered; best
 * effort. Also for whatever ran the task when the task could not say itself (its process died).
 */
export async function recordTaskFailure(
  store: ObjectStore,
  task: Pick<TaskRecord, 'scope' | 'stage' | 'partition' | 'attempt' | 'copy'>,
  receiveCount: number,
  error: unknown,
): Promise<void> {
  const message = describeError(error);
  await store
    .put(keys.taskError(task.scope, task.stage, task.partition), JSON.stringify({ attempt: task.attempt, copy: task.copy, receiveCount, error: message }))
    .catch(() => {});
}

function describeError(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** An upload's name is its key under incoming/; other objects (a batch job's inputs) go by their key. */
function uploadName(key: string): string {
  return key.startsWith(INCOMING) ? key.slice(INCOMING.length) : key;
}

/** Loads a pipeline module's default export and checks it is one. */
export function pipelineFromModule(loaded: unknown, path: string): PipelineModule {
  const candidate = (loaded as { default?: unknown })?.default;
  if (candidate && typeof candidate === 'object' && 'kind' in candidate && 'fingerprint' in candidate) {
    return candidate as PipelineModule;
  }
  throw new Error(
    `${path} exports no pipeline: its default export must be definePipeline(...) or defineBatch(...) from dstream` +
      (candidate === undefined ? ' (it has no default export)' : ` (found ${typeof candidate})`),
  );
}
