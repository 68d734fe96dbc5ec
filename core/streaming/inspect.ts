/**
 * One interval looked at closely, from the object store alone (a local root or the S3 bucket):
 * the RDD DAG its lineage planned and the stages that computed it, each task's start and end,
 * its outputs with a preview, its state and checkpoints, and what it kept under errors/. Only
 * reads, a bounded number of objects: the same few listings of the interval's own folders
 * however long the stream is. What the streaming UI shows on an interval's page.
 */
import { listAll, readJson, readRange, type ObjectInfo, type ObjectStore } from '../ports/object-store.ts';
import { intervalScope, keys, parseErrorKey, parseTaskFailed, parseTaskStarted, partitionOfTaskDone, stageOfTaskKey } from '../layout.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../util/map-concurrently.ts';
import type { TaskDone, TaskFailure } from '../exec/task.ts';
import type { PlanNode } from '../rdd/plan.ts';
import { stageIds, stageWriting, type StageSpec } from '../scheduler/stages.ts';
import type { IntervalReport } from './driver.ts';
import { readLineageRecord, type LineageRecord } from './lineage.ts';
import { readIntervalProgress, type IntervalProgress } from './status.ts';
import { isEmptyPart } from './empty-stages.ts';
import { readIntervalBreakdown, type IntervalBreakdown } from './breakdown.ts';

/** An RDD of the interval's plan, and the stages whose tasks compute it (a shuffle's read side belongs to the stage reading it). */
export interface DagNode {
  id: string;
  kind: PlanNode['kind'];
  label: string;
  partitions: number;
  stages: string[];
  /** Where a stored node reads from (a persisted RDD of this interval or an earlier one). */
  location?: string;
}

/** Data flowing from one RDD to another: within a task (narrow), through a shuffle, a side input read whole, or a persisted RDD. */
export interface DagEdge {
  from: string;
  to: string;
  kind: 'narrow' | 'shuffle' | 'side' | 'stored';
}

/** One task of a stage: the copies started, and the one whose completion record won. */
export interface TaskTimeline {
  stage: string;
  partition: number;
  /** Start markers, one per attempt and driver run (a redelivery of the same copy writes none anew), oldest first. */
  starts: { attempt: number; run: string; at: number }[];
  done?: {
    attempt: number;
    /** 0 for the first copy; more means a speculative copy won. */
    copy: number;
    startedAt: number;
    endedAt: number;
    durationMs: number;
    recordsIn: number;
    recordsOut: number;
    bytesOut: number;
    /** Records written to each persisted RDD, by location (a result stage's). */
    persisted?: Record<string, number>;
    quarantined: number;
    /** The worker or Lambda execution environment that ran it, when recorded. */
    executor?: string;
  };
  /** Failure records of this task (an error every delivery would meet), by driver run. */
  failures: { run: string; error: string; record?: string }[];
}

export interface OutputView {
  name: string;
  format: string;
  /** `_SUCCESS` is written: every part is there. */
  committed: boolean;
  records?: number;
  parts: number;
  bytes: number;
  /** The first lines of the first non-empty part. */
  preview: string[];
}

export interface StateView {
  rdd: string;
  /** 'checkpoint' is durable; 'cache' may vanish and is recomputed from lineage. */
  tier: string;
  location: string;
  /** Records written (for a state, its keys), from the completion records of the stage that wrote it. */
  keys?: number;
  parts: number;
  bytes: number;
  /** False once garbage collection removed it (or before it was written). */
  present: boolean;
}

export interface ErrorsView {
  deadLetters: { key: string; stage: string; partition: number; earlier: boolean; lastError?: string; receiveCount?: number }[];
  quarantined: { key: string; stage: string; partition: number; bytes: number; preview: string[] }[];
  refusedUploads: { key: string; name?: string; reason?: string; size?: number }[];
  /** How many of each there are; the lists above hold the first ERRORS_SHOWN. */
  counts: { deadLetters: number; quarantined: number; refusedUploads: number };
}

export interface IntervalDetail {
  interval: number;
  scope: string;
  /** planned: its lineage is written, its tasks run or stopped; committed: its report is written. */
  status: 'planned' | 'committed';
  sealedAt: number;
  uploads: { count: number; bytes: number; refused: number };
  badRecords?: string;
  report?: IntervalReport;
  /** A planned interval's stages as far as they got. */
  progress?: IntervalProgress;
  dag: { nodes: DagNode[]; edges: DagEdge[]; stages: StageSpec[] };
  tasks: TaskTimeline[];
  /**
   * The recovery stages whose tasks ran in this interval: stages that rebuild a lost part of a
   * persisted RDD for a later interval (not among the record's stages, which are those it runs),
   * each with what it rebuilds and the stage that wrote that first.
   */
  recovery: { id: string; location: string; writer: string }[];
  /** Where its time went: seal, plan, each stage, dispatch, commit, and how busy the executors were. */
  breakdown?: IntervalBreakdown;
  outputs: OutputView[];
  state: StateView[];
  errors: ErrorsView;
}

/** Lines and bytes of a preview: enough to recognise the data, never a whole file. */
const PREVIEW_LINES = 10;
const PREVIEW_BYTES = 4096;
/** Dead letters, quarantine files and refused uploads read per kind; the rest are counted. */
export const ERRORS_SHOWN = 50;

/** Interval k looked at closely, or undefined when it was never planned (no lineage record). */
export async function readIntervalDetail(store: ObjectStore, k: number): Promise<IntervalDetail | undefined> {
  const scope = intervalScope(k);
  const record = await readLineageRecord(store, k);
  if (!record) return undefined;
  const [report, tasks, errors] = await Promise.all([readJson<IntervalReport>(store, keys.committed(scope)), readTasks(store, scope), readErrors(store, scope)]);
  const progress = report ? undefined : await readIntervalProgress(store, k);
  const [outputs, state, breakdown] = await Promise.all([readOutputs(store, record, report), readState(store, record, tasks), readIntervalBreakdown(store, k, tasks)]);
  return {
    interval: k,
    scope,
    status: report ? 'committed' : 'planned',
    sealedAt: record.sealedAt,
    uploads: { count: record.uploads.count, bytes: record.uploads.bytes, refused: record.uploads.refused },
    ...(record.badRecords ? { badRecords: record.badRecords } : {}),
    ...(report ? { report } : {}),
    ...(progress ? { progress } : {}),
    dag: lineageDag(record),
    tasks,
    recovery: recoveryStagesRun(record.stages, tasks),
    ...(breakdown ? { breakdown } : {}),
    outputs,
    state,
    errors,
  };
}

/** The recovery stages of persisted RDDs written by `stages` that have a task in `tasks`. */
function recoveryStagesRun(stages: StageSpec[], tasks: TaskTimeline[]): IntervalDetail['recovery'] {
  const ran = new Set(tasks.map((t) => t.stage));
  return stages.flatMap((writer) =>
    writer.kind === 'result'
      ? writer.sinks.flatMap((sink) => (sink.kind === 'persist' && ran.has(stageIds.recover(sink.location)) ? [{ id: stageIds.recover(sink.location), location: sink.location, writer: writer.id }] : []))
      : [],
  );
}

/** The record's plan as a graph, each RDD with the stages that compute it. */
export function lineageDag(record: Pick<LineageRecord, 'plan' | 'persists' | 'stages'>): IntervalDetail['dag'] {
  const byId = new Map(record.plan.map((n) => [n.id, n]));
  const stagesOf = new Map<string, string[]>(record.plan.map((n) => [n.id, []]));
  for (const stage of record.stages) {
    const seen = new Set<string>();
    const visit = (id: string) => {
      const node = byId.get(id);
      if (!node || seen.has(id)) return;
      seen.add(id);
      stagesOf.get(id)!.push(stage.id);
      // A shuffle or a stored RDD is where the stage starts reading: what is before it ran in another stage.
      if (node.kind !== 'shuffle' && node.kind !== 'stored') inputs(node).forEach((e) => visit(e.from));
    };
    if (stage.kind === 'shuffle-map') visit((byId.get(stage.rdd) as { parent: string }).parent);
    else stage.sinks.forEach((sink) => visit(sink.rdd));
  }
  const producer = new Map(record.persists.map((p) => [p.location, p.rdd]));
  const edges = record.plan.flatMap((node): DagEdge[] => {
    if (node.kind === 'stored') {
      const from = producer.get(node.location);
      return from ? [{ from, to: node.id, kind: 'stored' }] : [];
    }
    return inputs(node);
  });
  const nodes = record.plan.map((n): DagNode => ({
    id: n.id,
    kind: n.kind,
    label: n.label,
    partitions: n.partitions,
    stages: stagesOf.get(n.id)!,
    ...(n.kind === 'stored' ? { location: n.location } : {}),
  }));
  return { nodes, edges, stages: record.stages };
}

/** The RDDs a node reads, as edges into it (a stored node's producer is found by location, above). */
function inputs(node: PlanNode): DagEdge[] {
  const edge = (from: string, kind: DagEdge['kind'] = 'narrow'): DagEdge => ({ from, to: node.id, kind });
  switch (node.kind) {
    case 'narrow':
      return [edge(node.parent), ...(node.side ? [edge(node.side, 'side')] : [])];
    case 'coalesce':
      return [edge(node.parent)];
    case 'shuffle':
      return [edge(node.parent, 'shuffle')];
    case 'union':
    case 'cogroup':
    case 'cartesian':
      return node.parents.map((p) => edge(p));
    default:
      return [];
  }
}

/** One listing of the interval's tasks/ folder: start markers, completion records (read) and failure records (read). */
export async function readTasks(store: ObjectStore, scope: string): Promise<TaskTimeline[]> {
  const byTask = new Map<string, TaskTimeline>();
  const task = (stage: string, partition: number) => {
    const id = `${stage}/${partition}`;
    let t = byTask.get(id);
    if (!t) byTask.set(id, (t = { stage, partition, starts: [], failures: [] }));
    return t;
  };
  const done: { info: ObjectInfo; stage: string; partition: number }[] = [];
  const failed: { info: ObjectInfo; stage: string; partition: number; run: string }[] = [];
  for (const info of await listAll(store, keys.tasksPrefix(scope))) {
    const stage = stageOfTaskKey(info.key);
    if (stage === undefined) continue;
    const started = parseTaskStarted(info.key);
    const partition = partitionOfTaskDone(info.key);
    const failure = parseTaskFailed(info.key);
    if (started) task(stage, started.partition).starts.push({ attempt: started.attempt, run: started.run, at: info.lastModified });
    else if (partition !== undefined) done.push({ info, stage, partition });
    else if (failure) failed.push({ info, ...failure });
  }
  await mapConcurrently(done, STORE_CONCURRENCY, async ({ info, stage, partition }) => {
    const record = await readJson<TaskDone>(store, info.key);
    if (!record) return;
    const t = task(stage, partition);
    // The winning copy's start: its attempt's latest marker not after the record (a copy that
    // came after the task was done, of a later driver run, leaves one too), else what its own
    // duration says.
    const marker = t.starts.filter((s) => s.attempt === record.attempt && s.at <= info.lastModified).sort((a, b) => a.at - b.at).at(-1);
    t.done = {
      attempt: record.attempt,
      copy: record.copy,
      startedAt: marker?.at ?? info.lastModified - record.durationMs,
      endedAt: info.lastModified,
      durationMs: record.durationMs,
      recordsIn: record.recordsIn,
      recordsOut: record.recordsOut,
      bytesOut: record.bytesOut,
      ...(record.persisted === undefined ? {} : { persisted: record.persisted }),
      quarantined: record.quarantined,
      ...(record.executor === undefined ? {} : { executor: record.executor }),
    };
  });
  await mapConcurrently(failed, STORE_CONCURRENCY, async ({ info, stage, partition, run }) => {
    const record = await readJson<TaskFailure>(store, info.key);
    if (record) task(stage, partition).failures.push({ run, error: record.error, ...(record.record === undefined ? {} : { record: record.record }) });
  });
  for (const t of byTask.values()) t.starts.sort((a, b) => a.at - b.at || a.attempt - b.attempt);
  return [...byTask.values()].sort((a, b) => (a.stage < b.stage ? -1 : a.stage > b.stage ? 1 : a.partition - b.partition));
}

async function readOutputs(store: ObjectStore, record: LineageRecord, report: IntervalReport | undefined): Promise<OutputView[]> {
  return mapConcurrently(record.outputs, STORE_CONCURRENCY, async (o) => {
    const [success, parts] = await Promise.all([store.head(keys.outputSuccess(o.name, record.scope)), listAll(store, keys.outputPartsPrefix(o.name, record.scope))]);
    const first = parts.find((p) => p.size > 0);
    return {
      name: o.name,
      format: o.format,
      committed: success !== undefined,
      ...(report?.outputs[o.name] === undefined ? {} : { records: report.outputs[o.name] }),
      parts: parts.length,
      bytes: parts.reduce((n, p) => n + p.size, 0),
      preview: first ? await previewLines(store, first) : [],
    };
  });
}

/** The first lines of an object, read from its first few KiB (a line cut at the end is left out). */
async function previewLines(store: ObjectStore, info: ObjectInfo): Promise<string[]> {
  const text = Buffer.from(await readRange(store, info.key, 0, Math.min(info.size, PREVIEW_BYTES))).toString('utf8');
  const lines = text.split('\n');
  if (info.size > PREVIEW_BYTES) lines.pop();
  return lines.filter((l) => l !== '').slice(0, PREVIEW_LINES);
}

async function readState(store: ObjectStore, record: LineageRecord, tasks: TaskTimeline[]): Promise<StateView[]> {
  return mapConcurrently(record.persists, STORE_CONCURRENCY, async (p) => {
    const parts = await listAll(store, keys.persistedPrefix(p.location));
    const writer = stageWriting(record.stages, p.location);
    const written = writer ? tasks.filter((t) => t.stage === writer.id && t.done?.persisted?.[p.location] !== undefined) : [];
    // Committed by the driver without tasks (see stagesWithoutTasks): every part there, each with no record.
    const withoutTasks = writer !== undefined && written.length === 0 && parts.length === writer.tasks && parts.every((o) => isEmptyPart(o.size));
    return {
      rdd: p.rdd,
      tier: p.tier,
      location: p.location,
      ...(writer && written.length === writer.tasks ? { keys: written.reduce((n, t) => n + t.done!.persisted![p.location]!, 0) } : withoutTasks ? { keys: 0 } : {}),
      parts: parts.length,
      bytes: parts.reduce((n, o) => n + o.size, 0),
      present: parts.length > 0,
    };
  });
}

/** One listing of errors/<scope>/; the first ERRORS_SHOWN of each kind read. */
async function readErrors(store: ObjectStore, scope: string): Promise<ErrorsView> {
  const listed = (await listAll(store, keys.errorsPrefix(scope))).flatMap((info) => {
    const parsed = parseErrorKey(info.key);
    return parsed ? [{ info, parsed }] : [];
  });
  const of = <K extends string>(kind: K) => listed.filter((e): e is { info: ObjectInfo; parsed: Extract<typeof e.parsed, { kind: K }> } => e.parsed.kind === kind);
  const letters = of('dead-letter');
  const quarantine = of('quarantine');
  const refused = of('refused-upload');
  const [deadLetters, quarantined, refusedUploads] = await Promise.all([
    mapConcurrently(letters.slice(0, ERRORS_SHOWN), STORE_CONCURRENCY, async ({ info, parsed }) => {
      const letter = await readJson<{ lastError?: string; receiveCount?: number }>(store, info.key);
      return {
        key: info.key,
        stage: parsed.stage,
        partition: parsed.partition,
        earlier: parsed.earlier,
        ...(letter?.lastError === undefined ? {} : { lastError: letter.lastError }),
        ...(letter?.receiveCount === undefined ? {} : { receiveCount: letter.receiveCount }),
      };
    }),
    mapConcurrently(quarantine.slice(0, ERRORS_SHOWN), STORE_CONCURRENCY, async ({ info, parsed }) => ({
      key: info.key,
      stage: parsed.stage,
      partition: parsed.partition,
      bytes: info.size,
      preview: await previewLines(store, info),
    })),
    mapConcurrently(refused.slice(0, ERRORS_SHOWN), STORE_CONCURRENCY, async ({ info }) => {
      const why = await readJson<{ name?: string; reason?: string; size?: number }>(store, info.key);
      return { key: info.key, ...(why?.name === undefined ? {} : { name: why.name }), ...(why?.reason === undefined ? {} : { reason: why.reason }), ...(why?.size === undefined ? {} : { size: why.size }) };
    }),
  ]);
  return { deadLetters, quarantined, refusedUploads, counts: { deadLetters: letters.length, quarantined: quarantine.length, refusedUploads: refused.length } };
}
