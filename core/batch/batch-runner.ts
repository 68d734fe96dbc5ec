import { randomBytes } from 'node:crypto';
import type { ObjectInfo, ObjectStore } from '../ports/object-store.ts';
import { listAll } from '../ports/object-store.ts';
import type { TaskQueue } from '../ports/task-queue.ts';
import type { Clock } from '../ports/clock.ts';
import { BatchContext, type BatchJob, type BatchSourceSpec } from '../graph/pipeline.ts';
import { listSlice } from './slice.ts';
import { PlanBuilder } from '../rdd/rdd.ts';
import type { SplitRef } from '../rdd/plan.ts';
import { DagScheduler, type SchedulerOptions, type ScopePlan } from '../scheduler/dag-scheduler.ts';
import { planStages } from '../scheduler/stages.ts';
import { batchScope, keys, type Scope } from '../layout.ts';
import { hashPlan, PipelineMismatchError } from '../streaming/lineage.ts';
import { planSplits, spillSplits } from '../streaming/splits.ts';

/** A batch job's lineage: the objects it read, cut into splits, per source in call order. */
export interface BatchRecord {
  v: 2;
  pipeline: string;
  fingerprint: string;
  scope: string;
  /** Each source's splits, whose ranges are stored beside the record. */
  sources: SplitRef[][];
  planHash: string;
}

export interface BatchResult {
  /** This run's id: `dstream batch --resume <run>` finishes it if it stopped. */
  run: string;
  /** Records of each `collect(name)`, in partition order. */
  collected: Record<string, unknown[]>;
  /** Each file output's folder. */
  outputs: Record<string, string>;
}

/** Rebuilds the job's plan: with recorded splits in tasks, with fresh listings in the driver. */
export function buildBatchPlan(job: BatchJob, splits: (index: number, spec: BatchSourceSpec) => SplitRef[]): PlanBuilder {
  const builder = new PlanBuilder(job.options.partitions);
  job.build(new BatchContext(builder, (spec, index) => splits(index, spec)));
  return builder;
}

/** The objects a batch source reads, as the store holds them when the run starts. */
async function listSource(store: ObjectStore, job: BatchJob, spec: BatchSourceSpec): Promise<ObjectInfo[]> {
  if ('slice' in spec) return listSlice(store, spec.slice);
  const objects = await listAll(store, spec.prefix);
  // As in Spark, a path that holds nothing is an error, not an empty input.
  if (objects.length === 0) throw new Error(`batch job ${job.options.name} reads ${JSON.stringify(spec.prefix)}, which holds no objects`);
  return objects;
}

export function batchPlanFromRecord(job: BatchJob, record: BatchRecord): ScopePlan {
  // Nothing reads the earlier form (split ranges inline): say so rather than misread it.
  if (record.v !== 2) throw new Error(`${keys.lineageRecord(record.scope)} is a batch record of version ${record.v}, which this dstream does not read: run the job under a new name or root`);
  if (record.fingerprint !== job.fingerprint) {
    throw new PipelineMismatchError(`${record.scope} was planned by other code (fingerprint ${record.fingerprint}, this is ${job.fingerprint})`);
  }
  const builder = buildBatchPlan(job, (i) => record.sources[i] ?? []);
  const planHash = hashPlan(builder);
  if (planHash !== record.planHash) throw new PipelineMismatchError(`${record.scope}: the job rebuilt a different plan; a function is not deterministic`);
  return { scope: record.scope, pipeline: record.pipeline, fingerprint: record.fingerprint, planHash, builder, stages: planStages(builder), badRecords: job.options.badRecords };
}

/**
 * Runs a batch job over objects already in the store, on the same scheduler and tasks as a
 * stream's interval. Each run is a run of its own, as a Spark job is: it reads the store as it is
 * when the run starts, writes under its own output folders, and may be changed code. `resume`
 * names a run that stopped, to finish it (its completed tasks are kept). A run that reads stored RDDs
 * of other scopes (a query's stream state) recomputes those lost from the scopes' lineage, with
 * `loadScope` to rebuild their plans; without it, such a loss fails the run.
 */
export async function runBatch(
  job: BatchJob,
  deps: { store: ObjectStore; queue: TaskQueue; clock: Clock; loadScope?: (scope: Scope) => Promise<ScopePlan> },
  config: { inputPartitions: number; maxSplitBytes: number; scheduler: SchedulerOptions },
  resume?: string,
): Promise<BatchResult> {
  const { store } = deps;
  const run = resume ?? newBatchRun(deps.clock.now());
  const scope = batchScope(job.options.name, run);
  let record: BatchRecord;
  const existing = await store.get(keys.lineageRecord(scope));
  if (existing) {
    record = JSON.parse(Buffer.from(existing).toString('utf8')) as BatchRecord;
  } else if (resume !== undefined) {
    throw new Error(`batch job ${job.options.name} has no run ${resume} to resume`);
  } else {
    const listings: SplitRef[][] = [];
    // Sources are listed in the order the job declares them; the builder asks by index.
    const specs: BatchSourceSpec[] = [];
    buildBatchPlan(job, (i, spec) => ((specs[i] = spec), []));
    for (const spec of specs) {
      const objects = (await listSource(store, job, spec)).map((o) => ({ key: o.key, name: o.key, size: o.size }));
      listings.push(await spillSplits(store, scope, planSplits(objects, config.inputPartitions, config.maxSplitBytes)));
    }
    const builder = buildBatchPlan(job, (i) => listings[i] ?? []);
    record = { v: 2, pipeline: job.options.name, fingerprint: job.fingerprint, scope, sources: listings, planHash: hashPlan(builder) };
    await store.putIfAbsent(keys.lineageRecord(scope), JSON.stringify(record));
  }
  const plan = batchPlanFromRecord(job, record);
  const scheduler = new DagScheduler({
    ...deps,
    options: config.scheduler,
    loadScope: async (s) => {
      if (s === plan.scope) return plan;
      if (!deps.loadScope) throw new Error(`${plan.scope} reads data of ${s} that is gone, and has no way to recompute it from ${s}'s lineage`);
      return deps.loadScope(s);
    },
  });
  await scheduler.run(plan);

  const result: BatchResult = { run, collected: {}, outputs: {} };
  for (const output of plan.builder.outputs) {
    if (output.format === 'collect') {
      result.collected[output.name] = await scheduler.collect(plan, output.name);
    } else if (output.format !== 'foreach') {
      await store.putIfAbsent(keys.outputSuccess(output.name, scope), '');
      result.outputs[output.name] = keys.outputPrefix(output.name, scope);
    }
  }
  return result;
}

/** A run id that sorts by start time: the UTC time to the second and a few random digits. */
function newBatchRun(now: number): string {
  const time = new Date(now).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  return `${time}${randomBytes(2).toString('hex')}`;
}
