import type { ObjectStore } from '../ports/object-store.ts';
import type { Pipeline } from '../graph/pipeline.ts';
import type { PlanNode } from '../rdd/plan.ts';
import type { PlanBuilder } from '../rdd/rdd.ts';
import { planStages, type StageSpec } from '../scheduler/stages.ts';
import type { ScopePlan } from '../scheduler/dag-scheduler.ts';
import { intervalScope, keys } from '../layout.ts';
import { shortHash } from '../util/hash.ts';
import type { IntakeUpload } from './intake.ts';
import { generateInterval, type IntervalInputs } from './generator.ts';

/**
 * The durable record of one interval, written before any of its tasks runs: what it read, the
 * RDD DAG it planned, and its stages. With the pipeline module it is enough to recompute any
 * partition of the interval, which is how lost data is rebuilt and how a new driver resumes.
 */
export interface LineageRecord {
  v: 1;
  pipeline: string;
  fingerprint: string;
  scope: string;
  interval: number;
  sealedAt: number;
  uploads: IntakeUpload[];
  inputs: IntervalInputs;
  persistedHere: Record<string, number>;
  planHash: string;
  plan: PlanNode[];
  outputs: { name: string; format: string; rdd: string }[];
  persists: { rdd: string; location: string; tier: string }[];
  stages: StageSpec[];
}

export class PipelineMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PipelineMismatchError';
  }
}

export function hashPlan(builder: PlanBuilder): string {
  return shortHash(
    JSON.stringify([
      builder.plan(),
      builder.outputs.map((o) => [o.name, o.format, o.rdd.id]),
      builder.persists.map((p) => [p.rdd.id, p.location, p.tier]),
    ]),
  );
}

export function buildLineageRecord(pipeline: Pipeline, k: number, uploads: IntakeUpload[], inputs: IntervalInputs, sealedAt: number): LineageRecord {
  const { builder, persistedHere } = generateInterval(pipeline, k, inputs);
  return {
    v: 1,
    pipeline: pipeline.options.name,
    fingerprint: pipeline.fingerprint,
    scope: intervalScope(k),
    interval: k,
    sealedAt,
    uploads,
    inputs,
    persistedHere,
    planHash: hashPlan(builder),
    plan: builder.plan(),
    outputs: builder.outputs.map((o) => ({ name: o.name, format: o.format, rdd: o.rdd.id })),
    persists: builder.persists.map((p) => ({ rdd: p.rdd.id, location: p.location, tier: p.tier })),
    stages: planStages(builder),
  };
}

export async function readLineageRecord(store: ObjectStore, k: number): Promise<LineageRecord | undefined> {
  const bytes = await store.get(keys.lineageRecord(intervalScope(k)));
  return bytes ? (JSON.parse(Buffer.from(bytes).toString('utf8')) as LineageRecord) : undefined;
}

/**
 * Rebuilds an interval's plan from its record, and refuses when the pipeline code differs from
 * the code that planned it: computing anything else under the same name would corrupt results.
 */
export function planFromRecord(pipeline: Pipeline, record: LineageRecord): ScopePlan {
  if (record.pipeline !== pipeline.options.name || record.fingerprint !== pipeline.fingerprint) {
    throw new PipelineMismatchError(
      `${record.scope} was planned by pipeline ${record.pipeline} (fingerprint ${record.fingerprint}), but this code is ` +
        `${pipeline.options.name} (fingerprint ${pipeline.fingerprint}): deploy the same pipeline module to the driver and the tasks, ` +
        `or start the changed pipeline on a fresh root or bucket`,
    );
  }
  const { builder } = generateInterval(pipeline, record.interval, record.inputs);
  const planHash = hashPlan(builder);
  if (planHash !== record.planHash) {
    throw new PipelineMismatchError(`${record.scope}: the pipeline rebuilt a different plan (${planHash}) than the one recorded (${record.planHash}); a user function is not deterministic`);
  }
  return { scope: record.scope, pipeline: record.pipeline, fingerprint: record.fingerprint, planHash, builder, stages: planStages(builder) };
}
