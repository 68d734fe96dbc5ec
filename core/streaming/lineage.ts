import { putContentAddressed, readContentAddressed, type ObjectStore } from '../ports/object-store.ts';
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
  v: 2;
  pipeline: string;
  fingerprint: string;
  scope: string;
  interval: number;
  sealedAt: number;
  /** The interval's uploads, kept in their own object (`readLineageUploads`) so the record stays small. */
  uploads: UploadsRef;
  inputs: IntervalInputs;
  persistedHere: Record<string, number>;
  planHash: string;
  plan: PlanNode[];
  outputs: { name: string; format: string; rdd: string }[];
  persists: { rdd: string; location: string; tier: string }[];
  stages: StageSpec[];
}

/** Totals of an interval's uploads, and the hash naming the object that lists them (`keys.lineageUploads`). */
export interface UploadsRef {
  count: number;
  bytes: number;
  hash: string;
}

/** Stores an interval's upload list beside its record (before the record is written). */
export async function spillUploads(store: ObjectStore, k: number, uploads: IntakeUpload[]): Promise<UploadsRef> {
  const { hash } = await putContentAddressed(store, (h) => keys.lineageUploads(intervalScope(k), h), uploads);
  return { count: uploads.length, bytes: uploads.reduce((n, u) => n + u.size, 0), hash };
}

/** The uploads an interval read, as sealed: for inspection, never needed to compute. */
export function readLineageUploads(store: ObjectStore, record: LineageRecord): Promise<IntakeUpload[]> {
  return readContentAddressed<IntakeUpload[]>(store, keys.lineageUploads(record.scope, record.uploads.hash), record.uploads.hash);
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

export function buildLineageRecord(pipeline: Pipeline, k: number, uploads: UploadsRef, inputs: IntervalInputs, sealedAt: number): LineageRecord {
  const { builder, persistedHere } = generateInterval(pipeline, k, inputs);
  return {
    v: 2,
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
  const key = keys.lineageRecord(intervalScope(k));
  const bytes = await store.get(key);
  if (!bytes) return undefined;
  const record = JSON.parse(Buffer.from(bytes).toString('utf8')) as LineageRecord;
  // Nothing reads the earlier form (its uploads and split ranges were inline): say so rather than misread it.
  if (record.v !== 2) throw new Error(`${key} is a lineage record of version ${record.v}, which this dstream does not read: start on a fresh root or bucket`);
  return record;
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
