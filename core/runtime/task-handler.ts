import type { ObjectStore } from '../ports/object-store.ts';
import type { BatchJob, Pipeline } from '../graph/pipeline.ts';
import { BadRecordError, runTask, SupersededTaskError, type ResolvedTask, type TaskFailure, type TaskOutcome, type TaskRecord } from '../exec/task.ts';
import { decodeTaskMessage, InvalidTaskMessageError } from '../scheduler/task-message.ts';
import type { ScopePlan } from '../scheduler/dag-scheduler.ts';
import { stageShuffleReads } from '../scheduler/stages.ts';
import { UnstorableValueError } from '../codec/storable.ts';
import { batchJobOf, intervalOf, keys, runInKey, uploadNameOfKey } from '../layout.ts';
import { PipelineMismatchError, planFromRecord, readLineageRecord } from '../streaming/lineage.ts';
import { batchPlanFromRecord, type BatchRecord } from '../batch/batch-runner.ts';

export type PipelineModule = Pipeline | BatchJob;

/**
 * Modules chosen per task, for a runner whose tasks are not all of one module: a shell session's
 * workers run each query's job and, to recompute lost stream data, the stream's pipeline
 * (core/query/query-modules.ts). A module's default export may be one instead of a pipeline.
 */
export interface ModuleSource {
  kind: 'modules';
  /** The module `task` names; throws InvalidTaskMessageError when it names none this source has. */
  moduleFor(task: TaskRecord, store: ObjectStore): Promise<PipelineModule>;
}

const isModuleSource = (v: unknown): v is ModuleSource => typeof v === 'object' && v !== null && (v as ModuleSource).kind === 'modules';

/**
 * The one policy for a delivery that threw. An error that the same task meets again on every
 * delivery is settled at once, never retried: a bad record under badRecords 'fail', an unstorable
 * value, code that is not the driver's, a message that names no task. A valid task's final failure
 * is recorded beside the completion records, where the driver finds it on its next poll; a message
 * that names no task is dead-lettered with the reason. Anything else (a store outage, a dead
 * worker, a timeout) is retried until its deliveries run out.
 */
export function settlesAtOnce(error: unknown): boolean {
  return (
    error instanceof BadRecordError ||
    error instanceof UnstorableValueError ||
    error instanceof PipelineMismatchError ||
    error instanceof InvalidTaskMessageError
  );
}

/**
 * What a runner does with a delivery that threw, by the policy above: send it back to be retried;
 * acknowledge it, its final failure being recorded (`handle` did); or dead-letter it with the
 * error as the reason, for a message that names no task.
 */
export function settlementOf(error: unknown): 'retry' | 'recorded' | 'dead-letter' {
  if (error instanceof InvalidTaskMessageError) return 'dead-letter';
  return settlesAtOnce(error) ? 'recorded' : 'retry';
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
  /** Who runs these tasks (a worker process, a Lambda execution environment): kept in each completion record, for the UI's task timeline. */
  executor?: string;
  /**
   * The plan of a scope that the caller holds, built from the lineage record it names (the
   * driver's, for the tasks it runs itself): a task whose plan hash it matches is resolved from it,
   * with the same checks, rather than from the record read back. Any other task reads the record.
   */
  knownPlan?(scope: string, planHash: string): ScopePlan | undefined;
}

/**
 * The task side, independent of where it runs: decodes a queue message, rebuilds the task's plan
 * from the lineage record and the pipeline module, runs it, and on failure leaves the error where
 * the driver will find it if the task ends up dead-lettered. The local worker and the task Lambda
 * both call this.
 */
export class TaskHandler {
  private readonly plans = new Map<string, ScopePlan>();

  private readonly now: () => number;
  private readonly supersededCheckMs: number;
  private readonly executor: string | undefined;
  private readonly knownPlan: TaskHandlerOptions['knownPlan'];

  constructor(
    private readonly module: PipelineModule | ModuleSource,
    private readonly store: ObjectStore,
    options: TaskHandlerOptions = {},
  ) {
    this.now = options.now ?? Date.now;
    this.supersededCheckMs = options.supersededCheckMs ?? 0;
    this.executor = options.executor;
    this.knownPlan = options.knownPlan;
  }

  decode(body: string): Promise<TaskRecord> {
    return decodeTaskMessage(this.store, body);
  }

  /**
   * Runs the task; `cancel` is aborted when another copy commits first (the caller may watch it).
   * The message is checked against its scope's lineage before anything is written: a message that
   * names no task of it throws InvalidTaskMessageError and leaves no trace in the store. On another
   * error that `settlesAtOnce`, the task's final failure is recorded before it is rethrown, and the
   * runner acknowledges the message instead of returning it.
   */
  async handle(task: TaskRecord, receiveCount: number, cancel = new AbortController()): Promise<TaskOutcome> {
    let resolved: ResolvedTask;
    let module: PipelineModule;
    try {
      ({ resolved, module } = await this.resolveWithModule(task));
    } catch (error) {
      // Sent before its interval's record was rewritten: the driver sends the task anew.
      if (error instanceof SupersededTaskError) return { status: 'superseded' };
      if (error instanceof InvalidTaskMessageError) throw error;
      await this.recordFailure(task, receiveCount, error);
      if (settlesAtOnce(error)) await this.recordFinalFailure(task, receiveCount, error);
      throw error;
    }
    const stopWatching = this.watchForWinner(task, cancel);
    try {
      return await runTask(resolved, {
        store: this.store,
        maxLineBytes: module.options.maxLineBytes,
        now: this.now,
        inputName: uploadNameOfKey,
        signal: cancel.signal,
        ...(this.executor === undefined ? {} : { executor: this.executor }),
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
        .head(doneKey, { absentIfRefused: true })
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
    const failure: TaskFailure = { ...(task.run ? { run: task.run } : {}), stage: task.stage, partition: task.partition, attempt: task.attempt, copy: task.copy, receiveCount, ...failureOf(error) };
    await this.store.put(keys.taskFailed(task.scope, task.stage, task.partition, runInKey(task.run)), JSON.stringify(failure));
  }

  /**
   * The task's stage and plan, from its scope's lineage record and this pipeline module; throws
   * InvalidTaskMessageError when the message names no task of that record, or blocks its stage
   * does not read.
   */
  async resolve(task: TaskRecord): Promise<ResolvedTask> {
    return (await this.resolveWithModule(task)).resolved;
  }

  private async resolveWithModule(task: TaskRecord): Promise<{ resolved: ResolvedTask; module: PipelineModule }> {
    const module = isModuleSource(this.module) ? await this.module.moduleFor(task, this.store) : this.module;
    const invalid = (why: string): never => {
      throw new InvalidTaskMessageError(`task message for ${task.scope} stage ${task.stage} partition ${task.partition}: ${why}`);
    };
    if (task.pipeline !== module.options.name || task.fingerprint !== module.fingerprint) {
      invalid(
        `it is for pipeline ${task.pipeline} (fingerprint ${task.fingerprint}), but this worker runs ${module.options.name} ` +
          `(fingerprint ${module.fingerprint}): the driver and the tasks must load the same pipeline module`,
      );
    }
    const plan = await this.scopePlan(task, module, invalid);
    if (plan.planHash !== task.planHash) throw new SupersededTaskError(task, plan.planHash);
    const stage = plan.stages.find((s) => s.id === task.stage);
    if (!stage) return invalid(`the lineage record has no such stage (its stages: ${plan.stages.map((s) => s.id).join(', ')})`);
    if (task.partition >= stage.tasks) invalid(`the stage has ${stage.tasks} tasks, numbered from 0`);
    // Blocks are read by key: only the map outputs of the shuffles this task reads, one per map task.
    const reads = stageShuffleReads(plan.builder, stage, task.partition);
    const given = task.shuffleInputs ?? {};
    for (const shuffle of Object.keys(given)) if (!reads.has(shuffle)) invalid(`it lists blocks of shuffle ${shuffle}, which this task does not read`);
    for (const [shuffle, reduced] of reads) {
      const blocks = given[shuffle];
      if (!blocks) return invalid(`it lists no blocks of shuffle ${shuffle}, which this task reads`);
      const maps = plan.builder.get((plan.builder.get(shuffle).node as { parent: string }).parent).partitions;
      // One block per map output for each reduce partition read, partition after partition.
      if (blocks.length !== maps * reduced.length) {
        const each = reduced.length > 1 ? ` and the task reads ${reduced.length} of its partitions, one block per map output of each` : '';
        invalid(`shuffle ${shuffle} has ${maps} map outputs${each}, the message lists ${blocks.length}`);
      }
      blocks.forEach(([key], i) => {
        const expected = keys.shuffleMap(task.scope, shuffle, i % maps);
        if (key !== expected) invalid(`block ${i} of shuffle ${shuffle} must be read from ${expected}, not ${JSON.stringify(key)}`);
      });
    }
    return { resolved: { task, stage, plan: plan.builder, badRecords: plan.badRecords }, module };
  }

  private async scopePlan(task: TaskRecord, module: PipelineModule, invalid: (why: string) => never): Promise<ScopePlan> {
    const known = this.knownPlan?.(task.scope, task.planHash);
    if (known) return known;
    const cacheKey = `${task.scope}#${task.planHash}`;
    const cached = this.plans.get(cacheKey);
    if (cached) return cached;
    let plan: ScopePlan;
    const k = intervalOf(task.scope);
    if (module.kind === 'stream') {
      if (k === undefined) invalid('a streaming pipeline runs tasks of intervals only');
      const record = await readLineageRecord(this.store, k!);
      if (!record) return invalid('its scope has no lineage record');
      plan = planFromRecord(module, record);
    } else {
      if (batchJobOf(task.scope) !== module.options.name) invalid(`batch job ${module.options.name} runs tasks of its own runs only`);
      const bytes = await this.store.get(keys.lineageRecord(task.scope));
      if (!bytes) return invalid('its scope has no lineage record');
      plan = batchPlanFromRecord(module, JSON.parse(Buffer.from(bytes).toString('utf8')) as BatchRecord);
    }
    // Only plans that match: a stale or forged hash must not evict the plans in use.
    if (plan.planHash === task.planHash) {
      this.plans.set(cacheKey, plan);
      if (this.plans.size > PLAN_CACHE_SIZE) this.plans.delete(this.plans.keys().next().value!);
    }
    return plan;
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
  await store
    .put(keys.taskError(task.scope, task.stage, task.partition), JSON.stringify({ attempt: task.attempt, copy: task.copy, receiveCount, ...failureOf(error) }))
    .catch(() => {});
}

/** What a failure record holds of an error: its name and message, and the bad record apart from them. */
function failureOf(error: unknown): Pick<TaskFailure, 'error' | 'record'> {
  const described = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return error instanceof BadRecordError && error.record !== undefined ? { error: described, record: error.record } : { error: described };
}

/** What a worker runs from a module: its default export, a pipeline or a ModuleSource. */
export function taskModulesFromModule(loaded: unknown, path: string): PipelineModule | ModuleSource {
  const candidate = (loaded as { default?: unknown })?.default;
  return isModuleSource(candidate) ? candidate : pipelineFromModule(loaded, path);
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
