import type { ObjectStore } from '../ports/object-store.ts';
import { RecordWriter } from '../codec/record-codec.ts';
import { checkStorable } from '../codec/storable.ts';
import type { PlanBuilder, Rdd } from '../rdd/rdd.ts';
import { preview, type OperatorContext } from '../rdd/operators.ts';
import { intervalOf, keys, runInKey, type Scope } from '../layout.ts';
import { stageInMemory, stageReads, type Sink, type StageReads, type StageSpec } from '../scheduler/stages.ts';
import { computePartition, MissingInputError, refusedRecord, sharedNodes, type BlockRef, type ComputeEnv } from './compute.ts';
import { LinePosition, plannedSplitReads } from './split-reader.ts';
import { TaskReads, type PlannedRead } from './task-reads.ts';
import { writeShuffleMap } from './shuffle-writer.ts';

/**
 * Which task to run: its identity, and the shuffle blocks the driver found for it. What it
 * computes and where it writes come from its scope's lineage record (immutable, durable), never
 * from the message, so any worker may run it, any number of times, with the same result, and a
 * message can make a task write nothing but its own stage's keys.
 */
export interface TaskRecord {
  v: 1;
  pipeline: string;
  /** Fingerprint of the pipeline's graph; a task built from other code refuses to run. */
  fingerprint: string;
  scope: Scope;
  /** Hash of the scope's plan; the task rebuilds the plan and checks it matches. */
  planHash: string;
  stage: string;
  partition: number;
  /** Bumped when the driver reruns the task after its inputs were recomputed. */
  attempt: number;
  /** 0 for the first copy; speculative duplicates count up. */
  copy: number;
  /**
   * Which driver run sent this copy. A new run sends its unfinished tasks afresh, so a dead letter
   * or a final failure of an earlier run's copy is history, not a failure of this run.
   */
  run?: string;
  /**
   * For each shuffle read in this stage: the blocks of the reduce partitions this task reads
   * (stageShuffleReads, ascending), one per map output, partition after partition.
   */
  shuffleInputs?: Record<string, BlockRef[]>;
}

/** The completion record a task leaves; the first copy to finish writes it, once. */
export interface TaskDone {
  stage: string;
  partition: number;
  attempt: number;
  copy: number;
  recordsIn: number;
  /** Bytes of source splits read. */
  bytesIn: number;
  /** Records read from each source partition, by `<source node>/<partition>`. */
  sourceRecords: Record<string, number>;
  recordsOut: number;
  bytesOut: number;
  durationMs: number;
  quarantined: number;
  /** Who ran it (TaskHandlerOptions.executor), when known. */
  executor?: string;
  /** Result tasks: records written to each output, by name. */
  outputs?: Record<string, number>;
  /** Result tasks: records written to each persisted RDD, by location. */
  persisted?: Record<string, number>;
  /** Shuffle-map tasks: the object and each reduce partition's block in it. */
  mapOutput?: { key: string; blocks: [number, number][] };
}

/** The record of a task settled at once (its error recurs on every delivery); the driver fails the scope with it. */
export interface TaskFailure {
  /** The driver run that sent the failed copy: only that run fails on it. */
  run?: string;
  stage: string;
  partition: number;
  attempt: number;
  copy: number;
  receiveCount: number;
  error: string;
  /** A preview of the bad record the task failed on, if it failed on one. */
  record?: string;
}

export type BadRecordPolicy = 'fail' | 'quarantine';

export class BadRecordError extends Error {
  /**
   * @param record a preview of the record, kept out of the message so that logs need not carry
   *   user data: failure records in the store hold it, and the local CLI shows it.
   */
  constructor(
    message: string,
    readonly record?: string,
  ) {
    super(message);
    this.name = 'BadRecordError';
  }
}

/** A task checked against its scope's lineage: the stage it belongs to and the plan that computes it. */
export interface ResolvedTask {
  task: TaskRecord;
  stage: StageSpec;
  plan: PlanBuilder;
  /** The scope's policy: the pipeline's, unless the interval was rerun to quarantine (`dstream quarantine`). */
  badRecords: BadRecordPolicy;
}

/** The task was sent under a plan its scope's record no longer holds (the interval was rerun with another policy). */
export class SupersededTaskError extends Error {
  constructor(task: TaskRecord, recorded: string) {
    super(`task ${task.scope} ${task.stage}/${task.partition} was planned as ${task.planHash}, but the lineage record now holds ${recorded}: a newer copy runs instead`);
    this.name = 'SupersededTaskError';
  }
}

export interface TaskEnvironment {
  store: ObjectStore;
  maxLineBytes: number;
  now(): number;
  /** The name a user knows an input object by (an upload's name), for error reports; default the key. */
  inputName?(key: string): string;
  /** Aborted when another copy of the task has committed: this one stops, its work unneeded. */
  signal?: AbortSignal;
  /** Who runs the task, recorded in its completion record. */
  executor?: string;
}

export type TaskOutcome =
  | { status: 'done'; done: TaskDone; skipped: boolean }
  | { status: 'fetch-failed'; missing: string[] }
  /** Another copy committed first: this one's work was not needed (and stopped early if it noticed). */
  | { status: 'superseded' };

/** Runs a task to its completion record; safe to run any number of times, at once or later. */
export async function runTask({ task, stage, plan, badRecords }: ResolvedTask, env: TaskEnvironment): Promise<TaskOutcome> {
  const started = env.now();
  const reads = stageReads(plan, stage, task.partition);
  const shuffleBlocks = (id: string, p: number): BlockRef[] => {
    const blocks = task.shuffleInputs?.[id];
    const partitions = reads.shuffles.get(id);
    const i = partitions?.indexOf(p) ?? -1;
    if (!blocks || i < 0) throw new Error(`task ${task.stage}/${task.partition} has no block list for partition ${p} of shuffle ${id}`);
    const maps = blocks.length / partitions!.length;
    return blocks.slice(i * maps, (i + 1) * maps);
  };
  const planned = plannedReads(task, plan, reads, shuffleBlocks);
  const doneKey = keys.taskDone(task.scope, task.stage, task.partition);
  // One round trip for both, and the compute waits only for the first. A copy that finds the task
  // done has then left a start marker too, which is harmless: a marker says only that a copy of
  // that attempt started (which it did), the scheduler notes it only for a task of its own run
  // still running (its start time, for speculation and the deadline for unstarted tasks) and then
  // reads the completion record, and a marker of a copy already delivered in the same run has the
  // same key (create-if-absent). The marker is there before the completion record, as ever.
  const existing = env.store.get(doneKey, { absentIfRefused: true });
  const marked = env.store.putIfAbsent(keys.taskStarted(task.scope, task.stage, task.partition, task.attempt, runInKey(task.run)), '');
  // Awaited on every path below; one that fails while the compute goes on is not unhandled.
  marked.catch(() => {});
  // The inputs start on their way meanwhile (after the two: a store may read small objects with
  // blocking calls): reads change nothing, so a copy that finds the task done has only spent them.
  const inputs = new TaskReads(env.store);
  try {
    inputs.plan(planned);
    const found = await existing;
    if (found) {
      await marked;
      return { status: 'done', done: JSON.parse(Buffer.from(found).toString('utf8')), skipped: true };
    }

    const quarantine: string[] = [];
    const position = new LinePosition();
    const source: SourceOf = () => (position.key === undefined ? undefined : { input: env.inputName?.(position.key) ?? position.key, offset: position.offset });
    const computeEnv: ComputeEnv = {
      store: inputs,
      scope: task.scope,
      maxLineBytes: env.maxLineBytes,
      ...(env.signal ? { signal: env.signal } : {}),
      input: { records: 0, bytes: 0, sources: {} },
      shuffleBlocks,
      position,
      operatorContext: (p, label) => badRecordContext(task, p, label, badRecords, quarantine, source),
    };

    // The task's writes go at once, each as soon as its bytes are computed; the completion record
    // waits for every one of them, so it never names output that is not durable. A copy killed
    // before its record leaves some of them written: plain puts of the bytes any copy writes.
    const writes: Promise<void>[] = [];
    const write: Write = (key, body) => {
      const written = env.store.put(key, body);
      // Awaited below, with the rest; one that fails while the compute goes on is not unhandled.
      written.catch(() => {});
      writes.push(written);
    };
    let result: TaskOutput;
    try {
      result = await computeTaskOutput(task, stage, plan, computeEnv, write);
      if (quarantine.length > 0 && !env.signal?.aborted) write(keys.quarantine(task.scope, task.stage, task.partition), quarantine.join('\n') + '\n');
      await Promise.all(writes);
    } catch (error) {
      // None of its writes outlives the task.
      await Promise.allSettled([...writes, marked]);
      if (env.signal?.aborted) return { status: 'superseded' };
      if (error instanceof MissingInputError) {
        await env.store.putIfAbsent(
          keys.fetchFailed(task.scope, task.stage, task.partition, task.attempt),
          JSON.stringify({ stage: task.stage, partition: task.partition, attempt: task.attempt, missing: error.missing }),
        );
        return { status: 'fetch-failed', missing: error.missing };
      }
      throw error;
    }

    await marked;
    if (env.signal?.aborted) return { status: 'superseded' };
    const done: TaskDone = {
      stage: task.stage,
      partition: task.partition,
      attempt: task.attempt,
      copy: task.copy,
      recordsIn: computeEnv.input.records,
      bytesIn: computeEnv.input.bytes,
      sourceRecords: computeEnv.input.sources,
      durationMs: env.now() - started,
      quarantined: quarantine.length,
      ...(env.executor === undefined ? {} : { executor: env.executor }),
      ...result,
    };
    if (!(await env.store.putIfAbsent(doneKey, JSON.stringify(done)))) return { status: 'superseded' };
    return { status: 'done', done, skipped: false };
  } finally {
    inputs.close();
  }
}

/** Starts a write of the task's; runTask awaits them all before the completion record. */
type Write = (key: string, body: Uint8Array | string) => void;

/**
 * What the task will read, in about the order its compute reads it (a fold reads its state before
 * the interval's values): each source's split and its input, stored partitions, shuffle blocks.
 */
function plannedReads(task: TaskRecord, plan: PlanBuilder, reads: StageReads, shuffleBlocks: ComputeEnv['shuffleBlocks']): PlannedRead[] {
  const planned: PlannedRead[] = [];
  for (const [rdd, split] of reads.sources) {
    const node = plan.get(rdd).node;
    const ref = node.kind === 'source' ? node.splits[split] : undefined;
    if (ref) planned.push(plannedSplitReads(task.scope, ref));
  }
  for (const [location, q] of reads.stored) planned.push({ key: keys.persisted(location, q) });
  for (const [id, partitions] of reads.shuffles) {
    for (const q of partitions) for (const [key, start, end] of shuffleBlocks(id, q)) if (end > start) planned.push({ key, range: { start, end } });
  }
  return planned;
}

/** What a task wrote: totals, and for a result stage, records by output and by persisted location. */
type TaskOutput = Pick<TaskDone, 'recordsOut' | 'bytesOut' | 'mapOutput' | 'outputs' | 'persisted'>;

async function computeTaskOutput(task: TaskRecord, stage: StageSpec, plan: PlanBuilder, env: ComputeEnv, write: Write): Promise<TaskOutput> {
  if (stage.kind === 'shuffle-map') {
    const out = await writeShuffleMap(plan.get(stage.rdd), task.partition, env);
    const key = keys.shuffleMap(task.scope, stage.rdd, task.partition);
    write(key, out.bytes);
    return { recordsOut: out.records, bytesOut: out.bytes.length, mapOutput: { key, blocks: out.blocks } };
  }
  // Every sink's partition in one pass: what two sinks read is computed once (memoised) and a
  // persisted RDD this stage writes is read from memory (it is still written, for later scopes).
  const inMemory = stageInMemory(stage);
  const computeEnv: ComputeEnv = { ...env, inMemory, memo: { shared: sharedNodes(plan, stage.sinks.map((s) => s.rdd), inMemory), records: new Map() } };
  const result: TaskOutput & { outputs: Record<string, number>; persisted: Record<string, number> } = { recordsOut: 0, bytesOut: 0, outputs: {}, persisted: {} };
  for (const sink of stage.sinks) {
    const written = await writeSink(task, sink, plan.get(sink.rdd), computeEnv, write);
    result.recordsOut += written.records;
    result.bytesOut += written.bytes;
    if (sink.kind === 'persist') result.persisted[sink.location] = written.records;
    else result.outputs[sink.output.name] = written.records;
  }
  return result;
}

/**
 * One sink's partition. Outputs are plain puts, as before fusion: a copy or rerun of the task
 * writes the same bytes (determinism), and a lost persisted partition is rebuilt by its recovery
 * stage, which writes no output. (A conditional write would also need the task to read outputs.)
 */
async function writeSink(task: TaskRecord, sink: Sink, rdd: Rdd<unknown>, env: ComputeEnv, write: Write): Promise<{ records: number; bytes: number }> {
  if (sink.kind === 'persist') {
    const writer = new RecordWriter();
    await computePartition(rdd, task.partition, env, storing(rdd, task.partition, env, writer));
    const bytes = writer.finish();
    write(keys.persisted(sink.location, task.partition), bytes);
    return { records: writer.count, bytes: bytes.length };
  }
  const output = sink.output;
  if (output.format === 'foreach') {
    // foreachPartition: the records go to the user's function, here on the worker; nothing is written.
    const records: unknown[] = [];
    await computePartition(rdd, task.partition, env, (r) => records.push(r));
    await rdd.behaviour.foreach!(records, task.partition);
    return { records: records.length, bytes: 0 };
  }
  if (output.format === 'collect') {
    const writer = new RecordWriter();
    await computePartition(rdd, task.partition, env, storing(rdd, task.partition, env, writer));
    const bytes = writer.finish();
    write(keys.collected(task.scope, output.name, task.partition), bytes);
    return { records: writer.count, bytes: bytes.length };
  }
  const lines: string[] = [];
  const format = output.format === 'text' ? textLine : jsonLine;
  // JSON would write what the codec refuses silently changed (a Map as {}): the codec's check first.
  const ctx = env.operatorContext(task.partition, rdd.node.label);
  await computePartition(rdd, task.partition, env, (r) => {
    try {
      checkStorable(r, 'record');
    } catch (error) {
      return refusedRecord(ctx, rdd.node.label, r, error);
    }
    lines.push(format(r));
  });
  const body = lines.length > 0 ? lines.join('\n') + '\n' : '';
  write(keys.output(output.name, task.scope, task.partition), body);
  return { records: lines.length, bytes: Buffer.byteLength(body) };
}

const textLine = (r: unknown) => (typeof r === 'string' ? r : JSON.stringify(r));
const jsonLine = (r: unknown) => JSON.stringify(r);

/** Writes each record; one the codec refuses is a bad record of the operator that produced it. */
function storing(rdd: Rdd<unknown>, p: number, env: ComputeEnv, writer: RecordWriter): (record: unknown) => void {
  const ctx = env.operatorContext(p, rdd.node.label);
  return (r) => {
    try {
      writer.write(r);
    } catch (error) {
      refusedRecord(ctx, rdd.node.label, r, error);
    }
  };
}

/** The upload and byte offset of the input line being processed, if a source is being read. */
type SourceOf = () => { input: string; offset: number } | undefined;

function badRecordContext(task: TaskRecord, partition: number, label: string | undefined, policy: BadRecordPolicy, quarantine: string[], source: SourceOf): OperatorContext {
  return {
    partition,
    badRecord(operator, record, error) {
      const name = label ?? operator;
      const message = error instanceof Error ? error.message : String(error);
      const at = source();
      if (policy === 'fail') {
        const where = at ? `reading ${at.input} at byte ${at.offset}` : 'after a shuffle or from state (at no single input line)';
        throw new BadRecordError(
          `${name} failed on a record in ${task.scope}, stage ${task.stage}, partition ${partition}, ${where}: ${message} (${wayOn(task.scope)})`,
          preview(record),
        );
      }
      quarantine.push(JSON.stringify({ operator: name, error: message, record: safeRecord(record), ...at }));
    },
  };
}

/** What an operator can do about a bad record that failed its interval or job. */
function wayOn(scope: Scope): string {
  const k = intervalOf(scope);
  if (k === undefined) return `set badRecords: 'quarantine' in the job to keep such records under errors/ and go on`;
  return (
    `to rerun the interval with its bad records kept under errors/${scope}/records/, run dstream quarantine ${k} --root <dir> ` +
    `(on AWS, invoke the driver with {"quarantine": ${k}})`
  );
}

function safeRecord(record: unknown): unknown {
  try {
    JSON.stringify(record);
    return record;
  } catch {
    return preview(record, 10_000);
  }
}
