/**
 * A stream's status, read from its object store alone (a local root or the S3 bucket, the same
 * code): where the stream is, how its last intervals went, and what went wrong. Only reads: a
 * status never creates the clock, claims the store or moves anything.
 */
import { listAll, readJson, type ObjectStore } from '../ports/object-store.ts';
import { intervalOf, intervalScope, keys, parseErrorKey, parseTaskFailed, partitionOfTaskDone, stageOfTaskKey } from '../layout.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../util/map-concurrently.ts';
import { intervalAt, type DriverProgress } from './progress.ts';
import type { IntervalReport } from './driver.ts';
import { readLineageRecord } from './lineage.ts';
import type { TaskFailure } from '../exec/task.ts';
import { stagesRun, type StageSpec } from '../scheduler/stages.ts';
import { isEmptyPart } from './empty-stages.ts';

/** One stage of an interval being run: tasks whose completion is recorded, of all its tasks. */
export interface StageProgress {
  id: string;
  kind: StageSpec['kind'];
  tasks: number;
  done: number;
  /** Tasks that failed with an error every delivery would meet (recorded beside the completions). */
  failed: number;
  /**
   * Done without tasks: the driver committed the stage's empty outputs and persisted parts itself
   * (its RDDs are known empty, see stagesWithoutTasks), or, a map stage, no stage that runs reads it.
   */
  withoutTasks?: true;
}

/** An interval planned but not committed: its stages as far as they got. */
export interface IntervalProgress {
  interval: number;
  sealedAt: number;
  uploads: number;
  inputBytes: number;
  stages: StageProgress[];
}

/** A committed interval, as its commit reported it. */
export interface IntervalSummary {
  interval: number;
  uploads: number;
  inputBytes: number;
  recordsIn: number;
  /** Records in per second of the interval's length; absent before the clock's last change of length, whose old length is not kept. */
  inputRate?: number;
  processingMs: number;
  schedulingDelayMs: number;
  tasks: number;
  quarantined: number;
  refusedUploads: number;
  outputs: Record<string, number>;
  /** Speculative copies launched, tasks recomputed after lost inputs, and fetch failures met. */
  speculative: number;
  recomputed: number;
  fetchFailures: number;
}

/**
 * A task of an interval not committed that failed for good: dead-lettered, or failed with an error
 * every delivery would meet (a bad record). The stream does not go on past it until it is dealt with (see the runbook).
 */
export interface Failure {
  interval: number;
  stage: string;
  partition: number;
  error: string;
  key: string;
}

/** What `dstream replay` records once the staged intervals it was given are all committed (keys.finishedReplay). */
export interface FinishedReplay {
  /** The first and last staged intervals, and how many there were. */
  first: number;
  last: number;
  intervals: number;
  /** When the replay ended, by its clock. */
  at: number;
}

export interface StreamStatus {
  /** When this was read, by the reader's clock. */
  at: number;
  /** The pipeline whose stream the store holds; absent before its first driver ran. */
  pipeline?: { name: string; fingerprint: string };
  /** Absent when no stream has started in this store. */
  clock?: { epoch: number; base: number; intervalMs: number };
  position?: {
    /** The last committed interval, or null when none is. */
    lastCommitted: number | null;
    /** The first interval not committed: the one the driver runs next, or is running. */
    next: number;
    /** The interval the clock is in: an upload arriving now lands in it. */
    current: number;
    /** Intervals whose time has ended but that are not committed: the driver's backlog. 0 for a finished replay, which has none. */
    behind: number;
  };
  /**
   * Present when the stream's intervals were staged and a replay committed them all, and nothing
   * ran after it: the clock has run on since, but no interval is waiting for a driver.
   */
  replay?: FinishedReplay;
  /** The interval after the last committed one, when its uploads are sealed: running, or stopped mid-run. */
  running?: IntervalProgress;
  /** Intervals not sealed yet that hold uploads, from `next` on (the first few only). */
  open: { interval: number; uploads: number }[];
  /** The last committed intervals, oldest first. */
  recent: IntervalSummary[];
  /** Tasks of intervals not committed that failed for good: the stream does not go on past them until they are dealt with. */
  failures: Failure[];
  /** What is kept under errors/, per interval: dead letters (this run's and earlier runs'), quarantined record files and refused uploads. */
  errors: {
    intervals: { interval: number; deadLetters: number; quarantineFiles: number; refusedUploads: number }[];
    /** Dead letters that are no task message (errors/unreadable-dead-letters/). */
    unreadableDeadLetters: number;
  };
}

/** How many of the last committed intervals a status summarises unless told. */
export const RECENT_INTERVALS = 10;

export interface StatusOptions {
  /** How many of the last committed intervals to summarise. Default RECENT_INTERVALS. */
  intervals?: number;
  now?: number;
}

/** Open intervals looked at past `next`: a stopped stream's clock runs on without it. */
const OPEN_INTERVALS_SHOWN = 5;

export async function readStreamStatus(store: ObjectStore, options: StatusOptions = {}): Promise<StreamStatus> {
  const at = options.now ?? Date.now();
  const count = options.intervals ?? RECENT_INTERVALS;
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`intervals must be a whole number >= 0, got ${count}`);
  const [progress, pipeline, errors, replay] = await Promise.all([
    readJson<Omit<DriverProgress, 'base'> & { base?: number }>(store, keys.driverProgress),
    readJson<{ name: string; fingerprint: string }>(store, keys.pipelineOwner),
    readErrors(store),
    readJson<FinishedReplay>(store, keys.finishedReplay),
  ]);
  const status: StreamStatus = { at, open: [], recent: [], failures: [], errors, ...(pipeline ? { pipeline: { name: pipeline.name, fingerprint: pipeline.fingerprint } } : {}) };
  if (!progress) return status;
  // A pointer written before the clock had a base counts from interval 0 (as readProgress does).
  const clock = { epoch: progress.epoch, base: progress.base ?? 0, intervalMs: progress.intervalMs };
  const { next } = progress;
  const current = Math.max(next, intervalAt({ ...clock, next }, at));
  status.clock = clock;
  status.position = { lastCommitted: next > 0 ? next - 1 : null, next, current, behind: Math.max(0, intervalAt({ ...clock, next }, at) - next) };

  const committed = Array.from({ length: Math.min(count, next) }, (_, i) => next - Math.min(count, next) + i);
  status.recent = await readIntervalSummaries(store, clock, committed);

  const tasks = await readTasks(store, next);
  const running = tasks?.progress;
  if (running) status.running = running;
  // A live run on the same root afterwards moves `next` past the replay's last interval, or is running one.
  if (replay && replay.last === next - 1 && !running) {
    status.replay = replay;
    status.position.behind = 0;
  }
  for (let k = running ? next + 1 : next; k <= Math.min(current, next + OPEN_INTERVALS_SHOWN); k++) {
    const uploads = (await listAll(store, `intake/${intervalScope(k)}/entries/`)).length;
    if (uploads > 0) status.open.push({ interval: k, uploads });
  }
  status.failures = [
    ...(await readFailedTasks(store, next, tasks?.failed ?? [])),
    ...(await readFailures(store, errors.intervals.filter((e) => e.interval >= next && e.deadLetters > 0).map((e) => e.interval))),
  ];
  return status;
}

/**
 * The commit reports of intervals `ks` (in that order), summarised; an interval not committed is
 * left out. One read per interval: a reader pages through a long stream by choosing `ks`.
 */
export async function readIntervalSummaries(store: ObjectStore, clock: { base: number; intervalMs: number }, ks: number[]): Promise<IntervalSummary[]> {
  const reports = await mapConcurrently(ks, STORE_CONCURRENCY, (k) => readJson<IntervalReport>(store, keys.committed(intervalScope(k))));
  return reports.filter((r): r is IntervalReport => r !== undefined).map((r) => summarise(r, clock));
}

/**
 * Interval k's stages as far as they got, from its lineage record and the completion records
 * beside it; undefined when it is not planned yet, or already committed.
 */
export async function readIntervalProgress(store: ObjectStore, k: number): Promise<IntervalProgress | undefined> {
  return (await readTasks(store, k))?.progress;
}

/** A planned interval's progress, and its tasks that failed and are not done since. */
async function readTasks(store: ObjectStore, k: number): Promise<{ progress: IntervalProgress; failed: { stage: string; partition: number; key: string }[] } | undefined> {
  const scope = intervalScope(k);
  if (await store.head(keys.committed(scope))) return undefined;
  const record = await readLineageRecord(store, k);
  if (!record) return undefined;
  const done = new Set<string>();
  const failedKeys: { stage: string; partition: number; key: string }[] = [];
  const prefix = `lineage/${scope}/tasks/`;
  for (const { key } of await listAll(store, prefix)) {
    const stage = stageOfTaskKey(key)!;
    const partition = partitionOfTaskDone(key);
    if (partition !== undefined) done.add(`${stage}/${partition}`);
    const failed = parseTaskFailed(key);
    if (failed) failedKeys.push({ stage, partition: failed.partition, key });
  }
  // A partition that failed in one run and was done in a later one (after `dstream quarantine`, say) no longer stops anything.
  const failed = failedKeys.filter((f) => !done.has(`${f.stage}/${f.partition}`));
  const count = (stage: string, of: Iterable<string>) => [...of].filter((id) => id.startsWith(`${stage}/`)).length;
  const stages = record.stages.map((s): StageProgress => ({
    id: s.id,
    kind: s.kind,
    tasks: s.tasks,
    done: count(s.id, done),
    failed: count(s.id, new Set(failed.map((f) => `${f.stage}/${f.partition}`))),
  }));
  const withoutTasks = await stagesDoneWithoutTasks(store, scope, stagesRun(record.stages), new Set(stages.filter((s) => s.done > 0 || s.failed > 0).map((s) => s.id)));
  for (const s of stages) if (withoutTasks.has(s.id)) s.withoutTasks = true;
  const progress: IntervalProgress = { interval: k, sealedAt: record.sealedAt, uploads: record.uploads.count, inputBytes: record.uploads.bytes, stages };
  return { progress, failed };
}

/**
 * The stages of a scope that the driver committed without tasks, read from the store: a result
 * stage with no task recorded whose every sink holds all its parts, each empty (what
 * commitEmptyStages writes); then each map stage read only by such stages. `started` are the
 * stages with a task recorded.
 */
async function stagesDoneWithoutTasks(store: ObjectStore, scope: string, stages: StageSpec[], started: Set<string>): Promise<Set<string>> {
  const emptyParts = async (prefix: string, tasks: number, empty: (size: number) => boolean) => {
    const parts = await listAll(store, prefix);
    return parts.length === tasks && parts.every((o) => empty(o.size));
  };
  const committedEmpty = async (spec: StageSpec): Promise<boolean> => {
    if (spec.kind !== 'result' || started.has(spec.id)) return false;
    for (const sink of spec.sinks) {
      const empty =
        sink.kind === 'persist' ? await emptyParts(keys.persistedPrefix(sink.location), spec.tasks, isEmptyPart)
        : sink.output.format === 'collect' ? await emptyParts(keys.collectedPrefix(scope, sink.output.name), spec.tasks, isEmptyPart)
        : sink.output.format === 'foreach' ? false
        : await emptyParts(keys.outputPartsPrefix(sink.output.name, scope), spec.tasks, (size) => size === 0);
      if (!empty) return false;
    }
    return true;
  };
  const without = new Set((await mapConcurrently(stages, STORE_CONCURRENCY, async (s) => ((await committedEmpty(s)) ? [s.id] : []))).flat());
  // Children come after their parents (planStages): walking back, a map stage's readers are decided before it.
  for (const spec of [...stages].reverse()) {
    if (spec.kind !== 'shuffle-map' || started.has(spec.id)) continue;
    const readers = stages.filter((s) => s.parents.includes(spec.id));
    if (readers.length > 0 && readers.every((s) => without.has(s.id))) without.add(spec.id);
  }
  return without;
}

function summarise(r: IntervalReport, clock: { base: number; intervalMs: number }): IntervalSummary {
  return {
    interval: r.interval,
    uploads: r.uploads,
    inputBytes: r.inputBytes,
    recordsIn: r.recordsIn,
    ...(r.interval >= clock.base ? { inputRate: r.recordsIn / (clock.intervalMs / 1000) } : {}),
    processingMs: r.processingMs,
    schedulingDelayMs: r.schedulingDelayMs,
    tasks: r.tasks,
    quarantined: r.quarantined,
    refusedUploads: r.refusedUploads,
    outputs: r.outputs,
    speculative: r.speculative,
    recomputed: r.recomputed,
    fetchFailures: r.fetchFailures,
  };
}

/** One listing of errors/, counted by interval and kind. */
async function readErrors(store: ObjectStore): Promise<StreamStatus['errors']> {
  const byInterval = new Map<number, StreamStatus['errors']['intervals'][number]>();
  let unreadableDeadLetters = 0;
  for (const { key } of await listAll(store, 'errors/')) {
    if (key.startsWith('errors/unreadable-dead-letters/')) {
      unreadableDeadLetters++;
      continue;
    }
    const parsed = parseErrorKey(key);
    const k = parsed ? intervalOf(parsed.scope) : undefined;
    if (k === undefined) continue;
    let entry = byInterval.get(k);
    if (!entry) byInterval.set(k, (entry = { interval: k, deadLetters: 0, quarantineFiles: 0, refusedUploads: 0 }));
    if (parsed!.kind === 'dead-letter') entry.deadLetters++;
    else if (parsed!.kind === 'quarantine') entry.quarantineFiles++;
    else entry.refusedUploads++;
  }
  return { intervals: [...byInterval.values()].sort((a, b) => a.interval - b.interval), unreadableDeadLetters };
}

/** Tasks of interval k that failed with an error every delivery would meet, and are not done since. */
async function readFailedTasks(store: ObjectStore, k: number, failed: { key: string }[]): Promise<Failure[]> {
  const records = await mapConcurrently(failed, STORE_CONCURRENCY, ({ key }) => readJson<TaskFailure>(store, key));
  return records.flatMap((r, i) => (r ? [{ interval: k, stage: r.stage, partition: r.partition, error: r.error, key: failed[i]!.key }] : []));
}

/** The dead letters of the current runs of intervals not committed (earlier runs' are history). */
async function readFailures(store: ObjectStore, intervals: number[]): Promise<Failure[]> {
  const failures: Failure[] = [];
  for (const k of intervals) {
    const prefix = `errors/${intervalScope(k)}/dead-letters/`;
    const letters = (await listAll(store, prefix)).filter((o) => {
      const parsed = parseErrorKey(o.key);
      return parsed?.kind === 'dead-letter' && !parsed.earlier;
    });
    for (const { key } of letters) {
      const letter = await readJson<{ stage?: string; partition?: number; lastError?: string }>(store, key);
      if (!letter) continue;
      failures.push({ interval: k, stage: letter.stage ?? '?', partition: letter.partition ?? -1, error: letter.lastError ?? 'no error was recorded', key });
    }
  }
  return failures;
}
