/**
 * Every key the engine reads or writes, in one place: the local root and the S3 bucket share
 * this layout, so a run can move between them and a reader knows where to look.
 *
 *   incoming/                         uploads (the stream's input)
 *   intake/                           which upload belongs to which interval; uploads/ and refused/
 *                                     hold the bytes the embedded runtime pinned at admission
 *   lineage/<scope>/                  the durable record of a scope, task completions, commits
 *   cache/<scope>/                    shuffle blocks and persisted RDDs: may vanish, recomputed
 *   checkpoints/<scope>/              state RDDs every C intervals: durable, truncates lineage
 *   output/<name>/<scope>/            committed outputs, `_SUCCESS` last
 *   errors/<scope>/                   quarantined records and dead-lettered tasks; errors/unreadable-dead-letters/ for stray messages
 *   driver/                           the driver's progress pointer and lease, the pipeline that owns
 *                                     the root, and upgrades/ (what each upgrade carried and set aside)
 */

/** A scope is one unit of planning: an interval of a stream, or a batch job. */
export type Scope = string;

export const pad = (n: number, width = 5) => String(n).padStart(width, '0');

export function intervalScope(k: number): Scope {
  return `interval=${pad(k, 6)}`;
}

/** One run of a batch job: every `dstream batch` is a run of its own, reading the store as it is then. */
export function batchScope(name: string, run: string): Scope {
  return `batch=${name}.run-${run}`;
}

/** The job of a batch run's scope, or undefined for any other scope. */
export function batchJobOf(scope: Scope): string | undefined {
  return /^batch=(.+)\.run-[0-9A-Za-z]+$/.exec(scope)?.[1];
}

/** The scope a cache, checkpoint or lineage key belongs to. */
export function scopeOfKey(key: string): Scope | undefined {
  const m = /^(?:cache|checkpoints|lineage)\/((?:interval|batch)=[^/]+)\//.exec(key);
  return m?.[1];
}

/** Whether a string is a scope as intervalScope and batchScope build them: what a task message may name. */
export function isScope(value: string): boolean {
  return /^(?:interval=\d{6,}|batch=[A-Za-z0-9][A-Za-z0-9._-]{0,63}\.run-[0-9A-Za-z]{1,32})$/.test(value);
}

/** Whose task record a key built by keys.largeTask holds, or undefined for any other key. */
export function parseLargeTask(key: string): { scope: Scope; stage: string; partition: number; attempt: number } | undefined {
  const m = /^lineage\/([^/]+)\/task-records\/([^/]+)\/part-(\d+)-attempt-(\d+)\.json$/.exec(key);
  return m ? { scope: m[1]!, stage: m[2]!, partition: Number(m[3]), attempt: Number(m[4]) } : undefined;
}

/** The interval number of an interval scope, or undefined for a batch scope. */
export function intervalOf(scope: Scope): number | undefined {
  const m = /^interval=(\d+)$/.exec(scope);
  return m ? Number(m[1]) : undefined;
}

export const INCOMING = 'incoming/';

/**
 * What a key holds, as far as a query's scratch (core/query/scratch-store.ts) tells keys apart:
 * - `batch-run`: a batch run's lineage, cache, checkpoints, outputs or errors, or a query's own `query/` keys;
 * - `interval-task-record`: an interval's task records and errors (what a recomputation of it writes);
 * - `interval-data`: an interval's cache or checkpoints;
 * - `other`: every other key (outputs and lineage records of intervals, intake, driver, incoming).
 */
export type KeyKind = 'batch-run' | 'interval-task-record' | 'interval-data' | 'other';

export function kindOfKey(key: string): KeyKind {
  if (/^(?:(?:lineage|cache|checkpoints|errors|output\/[^/]+)\/batch=[^/]+\/|query\/)/.test(key)) return 'batch-run';
  if (/^(?:lineage\/interval=[^/]+\/(?:tasks|task-records|task-errors|fetch-failed)\/|errors\/interval=[^/]+\/)/.test(key)) return 'interval-task-record';
  if (/^(?:cache|checkpoints)\/interval=[^/]+\//.test(key)) return 'interval-data';
  return 'other';
}

/** Where queries keep their scratch (`queries/<session>/`) and code (`queries/code/`): never under a prefix the stream writes. */
export const QUERIES_PREFIX = 'queries/';
/** Where a shell leaves code for the query function (`keys.queryCode`); no session is named `code`. */
export const QUERY_CODE_PREFIX = `${QUERIES_PREFIX}code/`;

/** Whether a string is a query session's id, as the scratch takes it: 1-64 letters, digits or '-', and not the code's folder. */
export function isQuerySession(value: string): boolean {
  return /^[0-9A-Za-z-]{1,64}$/.test(value) && value !== 'code';
}

/** The stream a persisted RDD's location (`keys.persistLocation`) holds, or undefined for another key. */
export function streamOfPersistLocation(location: string): string | undefined {
  return /^(?:cache|checkpoints)\/[^/]+\/persist\/([^/]+)$/.exec(location)?.[1];
}

/** The scope, shuffle and map partition of a shuffle block's key (keys.shuffleMap), or undefined for any other key. */
export function parseShuffleMap(key: string): { scope: Scope; rdd: string; map: number } | undefined {
  const m = /^cache\/([^/]+)\/shuffle\/([^/]+)\/map-(\d+)$/.exec(key);
  return m ? { scope: m[1]!, rdd: m[2]!, map: Number(m[3]) } : undefined;
}

/** The location and partition of a persisted part's key (keys.persisted), or undefined for a key that is no part. */
export function parsePersisted(key: string): { location: string; partition: number } | undefined {
  const m = /^(.*)\/part-(\d+)$/.exec(key);
  return m ? { location: m[1]!, partition: Number(m[2]) } : undefined;
}

/** The partition of a completion record's key, or undefined for any other key in that folder. */
export function partitionOfTaskDone(key: string): number | undefined {
  const m = /\/part-(\d+)\.json$/.exec(key);
  return m ? Number(m[1]) : undefined;
}

/** The name an upload goes by (what sources match and reports show), from the key its bytes are read at. */
export function uploadNameOfKey(key: string): string {
  if (key.startsWith(INCOMING)) return key.slice(INCOMING.length);
  const pinned = /^intake\/uploads\/[^/]+\/(.+)$/.exec(key);
  return pinned ? pinned[1]! : key;
}

/** The partition, attempt and run of a start marker's key (keys.taskStarted), or undefined for any other key. */
export function parseTaskStarted(key: string): { partition: number; attempt: number; run: string } | undefined {
  const m = /\/part-(\d+)\.attempt-(\d+)\.run-([0-9a-z]+)\.started$/.exec(key);
  return m ? { partition: Number(m[1]), attempt: Number(m[2]), run: m[3]! } : undefined;
}

/** The stage, partition and run of a failure record's key (keys.taskFailed), or undefined for any other key. */
export function parseTaskFailed(key: string): { stage: string; partition: number; run: string } | undefined {
  const m = /^lineage\/[^/]+\/tasks\/([^/]+)\/part-(\d+)\.failed-([^/]+)\.json$/.exec(key);
  return m ? { stage: m[1]!, partition: Number(m[2]), run: m[3]! } : undefined;
}

/** The stage folder of a key under a scope's tasks/ (completion, start and failure records), or undefined for any other key. */
export function stageOfTaskKey(key: string): string | undefined {
  return /^lineage\/[^/]+\/tasks\/([^/]+)\//.exec(key)?.[1];
}

/** What a key under errors/ holds: the scope's dead letters, quarantined records or refused uploads (keys.deadLetter, keys.quarantine, keys.refusedUpload). */
export type ErrorKey =
  | { kind: 'dead-letter'; scope: Scope; stage: string; partition: number; /** An earlier run's (keys.earlierDeadLetter): history. */ earlier: boolean }
  | { kind: 'quarantine'; scope: Scope; stage: string; partition: number }
  | { kind: 'refused-upload'; scope: Scope; id: string };

/** The kind of an errors/ key with its parts, or undefined for any other key (errors/unreadable-dead-letters/ among them). */
export function parseErrorKey(key: string): ErrorKey | undefined {
  const m = /^errors\/((?:interval|batch)=[^/]+)\/(dead-letters|records|uploads)\/(.+)$/.exec(key);
  if (!m) return undefined;
  const [, scope, folder, rest] = m as unknown as [string, string, string, string];
  if (folder === 'uploads') {
    const id = /^([^/]+)\.json$/.exec(rest)?.[1];
    return id === undefined ? undefined : { kind: 'refused-upload', scope, id };
  }
  const part = /^([^/]+)\/part-(\d+)(\.earlier-[^/]*)?\.(json|jsonl)$/.exec(rest);
  if (!part) return undefined;
  if (folder === 'records') return part[3] || part[4] !== 'jsonl' ? undefined : { kind: 'quarantine', scope, stage: part[1]!, partition: Number(part[2]) };
  return part[4] !== 'json' ? undefined : { kind: 'dead-letter', scope, stage: part[1]!, partition: Number(part[2]), earlier: part[3] !== undefined };
}

/** A run id as it may stand in a key: the scheduler's hex ids, never whatever a message carries. */
export function runInKey(run: string | undefined): string {
  return typeof run === 'string' && /^[0-9a-f]{1,32}$/.test(run) ? run : 'none';
}

export const keys = {
  lineageRecord: (scope: Scope) => `lineage/${scope}/record.json`,
  lineagePrefix: (scope: Scope) => `lineage/${scope}/`,
  /** A scope's list of uploads and each of its source splits, kept beside the record and named by their content hash. */
  lineageUploads: (scope: Scope, hash: string) => `lineage/${scope}/uploads/${hash}.json`,
  lineageSplit: (scope: Scope, hash: string) => `lineage/${scope}/splits/${hash}.json`,
  /** A store object the pipeline reads (an initial state), its bytes pinned in the scope's lineage under their hash. */
  lineageObject: (scope: Scope, hash: string) => `lineage/${scope}/objects/${hash}`,
  taskDone: (scope: Scope, stage: string, p: number) => `lineage/${scope}/tasks/${stage}/part-${pad(p)}.json`,
  /** Written when a copy starts, beside the completion records, so one listing shows both. */
  taskStarted: (scope: Scope, stage: string, p: number, attempt: number, run: string) =>
    `lineage/${scope}/tasks/${stage}/part-${pad(p)}.attempt-${attempt}.run-${run}.started`,
  /**
   * A copy sent by driver run `run` failed with an error that recurs on every delivery, so it was
   * not retried: beside the completion records, so the driver's listing of them shows it.
   */
  taskFailed: (scope: Scope, stage: string, p: number, run: string) => `lineage/${scope}/tasks/${stage}/part-${pad(p)}.failed-${run}.json`,
  taskDonePrefix: (scope: Scope, stage: string) => `lineage/${scope}/tasks/${stage}/`,
  /** Every stage's completion, start and failure records of a scope: one listing shows all its tasks. */
  tasksPrefix: (scope: Scope) => `lineage/${scope}/tasks/`,
  fetchFailed: (scope: Scope, stage: string, p: number, attempt: number) =>
    `lineage/${scope}/fetch-failed/${stage}/part-${pad(p)}-attempt-${attempt}.json`,
  fetchFailedPrefix: (scope: Scope) => `lineage/${scope}/fetch-failed/`,
  taskError: (scope: Scope, stage: string, p: number) => `lineage/${scope}/task-errors/${stage}/part-${pad(p)}.json`,
  sinkDone: (scope: Scope, name: string) => `lineage/${scope}/sinks/${name}.done`,
  committed: (scope: Scope) => `lineage/${scope}/_COMMITTED`,
  /** The interval's current run: replaced once a run's failure is reported, so the next run starts afresh. */
  intervalRun: (scope: Scope) => `lineage/${scope}/run.json`,
  cachePrefix: (scope: Scope) => `cache/${scope}/`,
  shuffleMap: (scope: Scope, rdd: string, m: number) => `cache/${scope}/shuffle/${rdd}/map-${pad(m)}`,
  collected: (scope: Scope, name: string, p: number) => `cache/${scope}/collect/${name}/part-${pad(p)}`,
  collectedPrefix: (scope: Scope, name: string) => `cache/${scope}/collect/${name}/part-`,
  persistLocation: (tier: 'cache' | 'checkpoint', scope: Scope, stream: string) =>
    `${tier === 'cache' ? 'cache' : 'checkpoints'}/${scope}/persist/${stream}`,
  persisted: (location: string, p: number) => `${location}/part-${pad(p)}`,
  persistedPrefix: (location: string) => `${location}/part-`,
  output: (name: string, scope: Scope, p: number) => `output/${name}/${scope}/part-${pad(p)}`,
  outputPrefix: (name: string, scope: Scope) => `output/${name}/${scope}/`,
  outputPartsPrefix: (name: string, scope: Scope) => `output/${name}/${scope}/part-`,
  outputSuccess: (name: string, scope: Scope) => `output/${name}/${scope}/_SUCCESS`,
  quarantine: (scope: Scope, stage: string, p: number) => `errors/${scope}/records/${stage}/part-${pad(p)}.jsonl`,
  /** Everything a scope keeps under errors/: dead letters, quarantined records, refused uploads. */
  errorsPrefix: (scope: Scope) => `errors/${scope}/`,
  deadLetter: (scope: Scope, stage: string, p: number) => `errors/${scope}/dead-letters/${stage}/part-${pad(p)}.json`,
  /** A dead letter of an earlier driver run's copy, kept as history: a later run sent the task afresh. */
  earlierDeadLetter: (scope: Scope, stage: string, p: number, id: string) =>
    `errors/${scope}/dead-letters/${stage}/part-${pad(p)}.earlier-${id.replace(/[^\w.-]/g, '_')}.json`,
  /** Where the embedded runtime keeps an upload's bytes from admission on: no later write to incoming/ reaches them. */
  pinnedUpload: (id: string, name: string) => `intake/uploads/${id}/${name}`,
  /** Where the embedded runtime keeps the bytes of an upload it refused, out of incoming/. */
  refusedUploadBytes: (id: string) => `intake/refused/${id}`,
  /** Why an upload of interval k was not read, written when the interval is sealed. */
  refusedUpload: (scope: Scope, id: string) => `errors/${scope}/uploads/${id}.json`,
  /** A dead letter that is no task message (sent to the queue by something else): kept, not dropped. */
  unreadableDeadLetter: (messageId: string) => `errors/unreadable-dead-letters/${messageId.replace(/[^\w.-]/g, '_')}.json`,
  driverProgress: 'driver/progress.json',
  driverLease: 'driver/lease.json',
  /**
   * Written by a driver that stopped because no upload came for a while (no timer left to wake it);
   * removed by the upload that wakes the stream (the ingest function) or by the next driver.
   */
  driverDormant: 'driver/dormant.json',
  /** The pipeline (name and fingerprint) whose stream this root holds. */
  pipelineOwner: 'driver/pipeline.json',
  /** Written when a replay of staged intervals has committed them all: which, and when (status reads it). */
  finishedReplay: 'driver/replay.json',
  /** What an upgrade at interval `b` did: the old code's state carried to the new, and what was set aside. */
  upgradeRecord: (b: number) => `driver/upgrades/${intervalScope(b)}.json`,
  /**
   * The old code's RDD of state `name` at interval j, checkpointed at the upgrade (or savepoint import) at
   * interval b: under interval j, so garbage collection removes it once the new code no longer reads it,
   * and beside the persisted RDDs, so whatever may read those (a task Lambda's role) reads it too.
   */
  boundaryState: (b: number, name: string, j: number) => `checkpoints/${intervalScope(j)}/persist/boundary-${pad(b, 6)}.${name}`,
  /** State whose operator the new code no longer has, kept out of garbage collection's way. */
  keptAsideState: (b: number, name: string, j: number) => `driver/upgrades/${intervalScope(b)}/kept-aside/${name}/${intervalScope(j)}`,
  keptAsidePrefix: (b: number, name: string) => `driver/upgrades/${intervalScope(b)}/kept-aside/${name}/`,
  /** In a savepoint folder: its description (written last), and each state's RDD at interval j. */
  savepointManifest: 'savepoint.json',
  savepointState: (name: string, j: number) => `state/${name}/${intervalScope(j)}`,
  /** A query's spec, by its fingerprint, in the query's scratch: where the workers of a shell session find what a task of it runs. */
  querySpec: (fingerprint: string) => `query/specs/${fingerprint}.json`,
  /** Every key of a query session: its scratch, deleted when the session ends. */
  queryScratch: (session: string) => `${QUERIES_PREFIX}${session}/`,
  /**
   * Code a shell session sends the query function (the stream's pipeline, bundled, to recompute
   * lost state), named by the SHA-256 of its bytes, which the function checks before it loads it.
   */
  queryCode: (session: string, sha256: string) => `${QUERY_CODE_PREFIX}${session}/${sha256}.mjs`,
  largeTask: (scope: Scope, stage: string, p: number, attempt: number) =>
    `lineage/${scope}/task-records/${stage}/part-${pad(p)}-attempt-${attempt}.json`,
};
