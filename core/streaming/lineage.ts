import { putContentAddressed, readContentAddressed, type ObjectStore } from '../ports/object-store.ts';
import type { Pipeline } from '../graph/pipeline.ts';
import type { PlanNode } from '../rdd/plan.ts';
import type { BadRecordPolicy } from '../exec/task.ts';
import type { PlanBuilder } from '../rdd/rdd.ts';
import { planStages, stagesRun, type StageSpec } from '../scheduler/stages.ts';
import { newRunId, type ScopePlan } from '../scheduler/dag-scheduler.ts';
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
  /**
   * Set by an operator to carry on from a failed interval (`dstream quarantine`): this interval's
   * bad records are quarantined whatever the pipeline says. Covered by the plan hash, so every
   * recomputation of the interval does the same, and a task sent before the change is told apart.
   */
  badRecords?: BadRecordPolicy;
  planHash: string;
  plan: PlanNode[];
  outputs: { name: string; format: string; rdd: string }[];
  persists: { rdd: string; location: string; tier: string }[];
  /** The stages the interval runs; its recovery stages are planned again from the plan when needed. */
  stages: StageSpec[];
}

/** Totals of an interval's uploads, and the hash naming the object that lists them (`keys.lineageUploads`). */
export interface UploadsRef {
  /** Uploads read, and their bytes. */
  count: number;
  bytes: number;
  /** Uploads refused (listed too, each with why). */
  refused: number;
  hash: string;
}

/** Stores an interval's upload list beside its record (before the record is written). */
export async function spillUploads(store: ObjectStore, k: number, uploads: IntakeUpload[]): Promise<UploadsRef> {
  const { hash } = await putContentAddressed(store, (h) => keys.lineageUploads(intervalScope(k), h), uploads);
  const read = uploads.filter((u) => u.refused === undefined);
  return { count: read.length, bytes: read.reduce((n, u) => n + u.size, 0), refused: uploads.length - read.length, hash };
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

type PlannedParts = Pick<LineageRecord, 'plan' | 'outputs' | 'persists' | 'badRecords'>;

/** What a task checks it rebuilt: the plan, its outputs and persists, and the interval's bad-record policy if overridden. */
function planDigest({ plan, outputs, persists, badRecords }: PlannedParts): string {
  return shortHash(
    JSON.stringify([
      plan,
      outputs.map((o) => [o.name, o.format, o.rdd]),
      persists.map((p) => [p.rdd, p.location, p.tier]),
      ...(badRecords === undefined ? [] : [badRecords]),
    ]),
  );
}

export function hashPlan(builder: PlanBuilder, badRecords?: BadRecordPolicy): string {
  return planDigest({ ...plannedParts(builder), ...(badRecords === undefined ? {} : { badRecords }) });
}

function plannedParts(builder: PlanBuilder): Pick<LineageRecord, 'plan' | 'outputs' | 'persists'> {
  return {
    plan: builder.plan(),
    outputs: builder.outputs.map((o) => ({ name: o.name, format: o.format, rdd: o.rdd.id })),
    persists: builder.persists.map((p) => ({ rdd: p.rdd.id, location: p.location, tier: p.tier })),
  };
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
    ...plannedParts(builder),
    stages: stagesRun(planStages(builder)),
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
  const planHash = hashPlan(builder, record.badRecords);
  if (planHash !== record.planHash) {
    throw new PipelineMismatchError(`${record.scope}: the pipeline rebuilt a different plan (${planHash}) than the one recorded (${record.planHash}); a user function is not deterministic`);
  }
  return {
    scope: record.scope,
    pipeline: record.pipeline,
    fingerprint: record.fingerprint,
    planHash,
    builder,
    stages: planStages(builder),
    badRecords: record.badRecords ?? pipeline.options.badRecords,
  };
}

/**
 * The way on from an interval that failed on a bad record under `badRecords: 'fail'`, without
 * changing the pipeline's code: its lineage record is rewritten to quarantine bad records. Tasks
 * that completed keep their results (having met no bad record, they computed what quarantine
 * would have); the rest run again when the stream is resumed, and any later recomputation of the
 * interval quarantines the same records. Answers what it did, for the operator.
 */
export async function quarantineInterval(store: ObjectStore, k: number): Promise<string> {
  const record = await readLineageRecord(store, k);
  if (!record) throw new Error(`interval ${k} has no lineage record: it was never planned, so it has not failed`);
  if (await store.head(keys.committed(record.scope))) throw new Error(`interval ${k} is committed: there is nothing to rerun`);
  if (record.badRecords === 'quarantine') return `interval ${k} already quarantines its bad records`;
  const changed: LineageRecord = { ...record, badRecords: 'quarantine' };
  changed.planHash = planDigest(changed);
  await store.put(keys.lineageRecord(record.scope), JSON.stringify(changed));
  // A new run: what the failed one left (dead letters, final failures) is history from now on.
  await store.put(keys.intervalRun(record.scope), JSON.stringify({ id: newRunId() }));
  return `interval ${k} will quarantine its bad records under errors/${record.scope}/records/ when the stream resumes`;
}
