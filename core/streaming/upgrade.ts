import type { ObjectStore } from '../ports/object-store.ts';
import { listAll, readJson } from '../ports/object-store.ts';
import type { Pipeline } from '../graph/pipeline.ts';
import { intervalScope, keys } from '../layout.ts';
import type { CarriedRdd } from './generator.ts';
import { PipelineMismatchError, readLineageRecord } from './lineage.ts';
import type { DriverProgress } from './progress.ts';

/**
 * Upgrades: new code takes over a running stream at an interval boundary, carrying its state.
 *
 * State is an RDD per operator and interval, and an interval reads the state of earlier ones only
 * through `stored` RDDs: so at boundary b (the first interval not committed) the old code's state
 * RDDs (and window buffers) of the intervals the new code reads are checkpointed under names that
 * do not depend on either code's operator ids, and the new code's lineage records of b on read
 * them as `carried` inputs, placed for the new code's partitions and passed through its
 * `migrate`. Intervals before b keep their records, planned by the old code; the new code never
 * plans or recomputes them (the checkpoint makes it unnecessary; the driver refuses if it would).
 *
 * The switch is one write, the owner record (`driver/pipeline.json`) naming the new fingerprint
 * and the boundary: before it the root is the old stream (the checkpoints written so far are
 * collected as any checkpoint is), after it the new one, so a crash leaves one or the other.
 */

/** One state of a pipeline as an upgrade sees it: recorded with the pipeline that owns a root. */
export interface StateEntry {
  /** `.name()` if given, else the operator's id. */
  name: string;
  /** The stream whose RDDs hold it, in its code. */
  id: string;
  kind: string;
  /** Named by the user: an upgrade that would lose it refuses unless told to (`--drop-state`). */
  named: boolean;
  /** For a window's state: its length and slide, which its RDDs depend on. */
  shape: string;
  /** Keyed partitions, or null when not placed by key (a plain window's buffer). */
  partitions: number | null;
  /** How many intervals before an interval the code reads this state's RDDs. */
  need: number;
}

/** The pipeline whose stream a root holds, and, after an upgrade or a savepoint import, the interval its code starts at. */
export interface StreamOwner {
  name: string;
  fingerprint: string;
  states?: StateEntry[];
  /** The boundary of the last upgrade: intervals before it were planned by other code (or ran on another root). */
  since?: number;
}

/** The state of a stream at a boundary: what an upgrade carries over, and what a savepoint holds. */
export interface BoundaryState {
  v: 1;
  pipeline: string;
  fingerprint: string;
  boundary: number;
  intervalMs: number;
  /** Each state, with the partitions of its RDD at each interval checkpointed (absent: no RDD there). */
  states: (StateEntry & { intervals: Record<string, number> })[];
}

/** Written before the owner switches: what the new code's intervals read from before the boundary. */
export interface UpgradeRecord {
  v: 1;
  boundary: number;
  from: { name: string; fingerprint: string };
  to: { name: string; fingerprint: string };
  /** By `<new stream>@<interval>`. */
  carried: Record<string, CarriedRdd>;
  /** New code's state streams that start at the boundary (from their initial state, or empty). */
  starting: string[];
  /** Old state carried to new state of the same name. */
  mapped: { name: string; from: string; to: string }[];
  /** Old state no operator of the new code takes: copied under `keys.keptAsideState`. */
  keptAside: { name: string; kind: string; intervals: Record<string, number> }[];
  /** The boundary state it was made from: code changed again before the boundary ran is mapped from it too. */
  source: BoundaryState;
  /** The owner record the upgrade replaced (none for a savepoint import): put back if the old code wins the boundary's interval (see withdrawUpgrade). */
  replaced?: StreamOwner;
}

export interface UpgradeOptions {
  /** Named states the new code may lose (set aside, not carried): `--drop-state`, on AWS the construct's `dropState`. */
  dropState?: string[];
}

export class UpgradeRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UpgradeRefusedError';
  }
}

/** The states of a pipeline, as recorded with its owner. */
export function stateTable(pipeline: Pipeline): StateEntry[] {
  const { graph } = pipeline;
  return graph.carriedStreams().map((s) => ({
    name: s.stateKey,
    id: s.id,
    kind: s.kind,
    named: s.stateName !== undefined,
    shape: s.kind === 'reduceByKeyAndWindow' ? `length ${(s.params as unknown[])[3]}, slide ${(s.params as unknown[])[4]}` : '',
    partitions: s.keyedPartitions ?? null,
    need: Math.max(s.lookback, ...graph.streams.filter((c) => c.parents.includes(s)).map((c) => c.lookback)),
  }));
}

/**
 * Upgrades the stream a root holds to `pipeline` at the boundary after its last committed
 * interval. The stream must be stopped (no driver running it). Idempotent: run again after a
 * crash, it finishes or finds the upgrade done.
 */
export async function upgradeStream(store: ObjectStore, pipeline: Pipeline, options: UpgradeOptions = {}): Promise<UpgradeRecord | undefined> {
  const owner = await readJson<StreamOwner>(store, keys.pipelineOwner);
  if (!owner) throw new UpgradeRefusedError('this root holds no stream yet: run the new pipeline on it directly');
  checkSameName(owner.name, pipeline);
  if (owner.fingerprint === pipeline.fingerprint) return undefined;
  // Upgraded again before the boundary ran (a fix to the new code): from the same boundary state.
  const previous = await readUpgrade(store, owner);
  const next = (await readJson<DriverProgress>(store, keys.driverProgress))?.next ?? 0;
  if (previous && previous.boundary === next && !(await readLineageRecord(store, next))) return adoptBoundary(store, previous.source, pipeline, options, previous.replaced);
  // The owner as read here, not again: another driver may switch it meanwhile (see checkpointBoundary).
  const state = await checkpointBoundary(store, owner);
  return adoptBoundary(store, state, pipeline, options, owner);
}

/**
 * Undoes an upgrade whose boundary interval was planned by the old code after all (a driver of
 * the old code, outliving its lease, sealed it while the upgrade ran): the interval's lineage
 * record decides which code runs it, so the owner goes back to the old code, which commits it;
 * the new code upgrades at a later boundary. Only while the owner is still this upgrade's.
 */
export async function withdrawUpgrade(store: ObjectStore, record: UpgradeRecord): Promise<void> {
  const owner = await readJson<StreamOwner>(store, keys.pipelineOwner);
  if (!record.replaced || owner?.fingerprint !== record.to.fingerprint || owner.since !== record.boundary) return;
  await store.put(keys.pipelineOwner, JSON.stringify(record.replaced));
}

/** The upgrade record that the owner names, checked to belong to this code: what the driver plans from the boundary on. */
export async function readUpgrade(store: ObjectStore, owner: StreamOwner): Promise<UpgradeRecord | undefined> {
  if (owner.since === undefined) return undefined;
  const record = await readJson<UpgradeRecord>(store, keys.upgradeRecord(owner.since));
  if (!record || record.to.fingerprint !== owner.fingerprint) {
    throw new Error(`${keys.pipelineOwner} starts this stream at interval ${owner.since}, but ${keys.upgradeRecord(owner.since)} is missing or names other code`);
  }
  return record;
}

/**
 * Checkpoints, under names independent of operator ids, every state RDD and window buffer of the
 * root's stream that its code reads from the boundary on. Reads the root; writes only checkpoints.
 * `owner` is the owner record the caller read: each interval read must have been planned by that
 * code, so a driver that read the owner before another switched it copies nothing of other code.
 */
export async function checkpointBoundary(store: ObjectStore, owner?: StreamOwner): Promise<BoundaryState> {
  owner ??= await readJson<StreamOwner>(store, keys.pipelineOwner);
  if (!owner) throw new UpgradeRefusedError('this root holds no stream');
  if (!owner.states) {
    throw new UpgradeRefusedError(`${keys.pipelineOwner} does not list the stream's state (it was written by an earlier dstream): run the stream once with its current code, then try again`);
  }
  const progress = await readJson<DriverProgress>(store, keys.driverProgress);
  const b = progress?.next ?? 0;
  if (await readLineageRecord(store, b)) {
    throw new UpgradeRefusedError(`interval ${b} has been planned by the running code and is not committed: stop the stream after it commits (or let it finish with dstream replay), then try again`);
  }
  const planned = async (j: number) => {
    const record = await readLineageRecord(store, j);
    if (!record) throw new UpgradeRefusedError(`interval ${j}'s lineage record is missing: the stream's state cannot be read there`);
    if (record.fingerprint !== owner.fingerprint) {
      throw new UpgradeRefusedError(`interval ${j} was planned by fingerprint ${record.fingerprint}, not by ${owner.fingerprint}, which ${keys.pipelineOwner} named: the stream changed hands during the upgrade; try again`);
    }
    return record;
  };
  // The last committed interval too, for a pipeline without state: it must be the owner's code's.
  if (b > (owner.since ?? 0)) await planned(b - 1);
  const states: BoundaryState['states'] = [];
  for (const entry of owner.states) {
    const intervals: Record<string, number> = {};
    for (let j = Math.max(0, b - entry.need); j < b; j++) {
      if (j < (owner.since ?? 0)) {
        throw new UpgradeRefusedError(`state ${entry.name} reads ${entry.need} intervals back, which reaches before interval ${owner.since}, where the last upgrade or import started: run the stream past interval ${(owner.since ?? 0) + entry.need - 1} first`);
      }
      const record = await planned(j);
      const partitions = record.persistedHere[entry.id];
      if (partitions === undefined) continue;
      const source = record.persists.find((p) => p.location.endsWith(`/persist/${entry.id}`))!.location;
      await copyParts(store, source, store, keys.boundaryState(b, entry.name, j), partitions, `state ${entry.name} of interval ${j}`, RECOMPUTE_WITH_OLD_CODE);
      intervals[String(j)] = partitions;
    }
    states.push({ ...entry, intervals });
  }
  return { v: 1, pipeline: owner.name, fingerprint: owner.fingerprint, boundary: b, intervalMs: progress?.intervalMs ?? 0, states };
}

/**
 * Makes `pipeline` the owner of the root from the boundary on, with the checkpointed state
 * mapped by name; refuses a change that would lose named state it was not told to drop.
 */
export async function adoptBoundary(store: ObjectStore, state: BoundaryState, pipeline: Pipeline, options: UpgradeOptions, replaced?: StreamOwner): Promise<UpgradeRecord> {
  checkSameName(state.pipeline, pipeline);
  const b = state.boundary;
  const drop = options.dropState ?? [];
  const dropped = (name: string) => drop.some((d) => name === d || name.startsWith(`${d}.`));
  for (const d of drop) {
    if (!state.states.some((s) => s.name === d || s.name.startsWith(`${d}.`))) {
      throw new UpgradeRefusedError(
        `--drop-state ${d} (on AWS, dropState): the stream has no state of that name (it has ${state.states.map((s) => s.name).join(', ') || 'none'}); a name dropped by an earlier upgrade is no longer there to drop`,
      );
    }
  }
  const newStreams = new Map(pipeline.graph.carriedStreams().map((s) => [s.stateKey, s]));
  const newTable = new Map(stateTable(pipeline).map((e) => [e.name, e]));
  const record: UpgradeRecord = {
    v: 1,
    boundary: b,
    from: { name: state.pipeline, fingerprint: state.fingerprint },
    to: { name: pipeline.options.name, fingerprint: pipeline.fingerprint },
    carried: {},
    starting: [],
    mapped: [],
    keptAside: [],
    source: state,
    ...(replaced ? { replaced } : {}),
  };
  const taken = new Set<string>();
  for (const old of state.states) {
    const stream = newStreams.get(old.name);
    if (!stream || dropped(old.name)) {
      if (old.named && !dropped(old.name)) {
        throw new UpgradeRefusedError(
          `the new code has no state named ${old.name} (a ${old.kind}): its state would be lost. Name the operator that keeps it ${old.name}, ` +
            `or set it aside with --drop-state ${old.name.split('.')[0]} (on AWS, the DStreamPipeline's dropState: ['${old.name.split('.')[0]}'])`,
        );
      }
      record.keptAside.push({ name: old.name, kind: old.kind, intervals: old.intervals });
      continue;
    }
    checkCompatible(old, newTable.get(old.name)!, b);
    taken.add(old.name);
    record.mapped.push({ name: old.name, from: old.id, to: stream.id });
    const need = newTable.get(old.name)!.need;
    for (const [j, partitions] of Object.entries(old.intervals)) {
      if (Number(j) < b - need) continue;
      record.carried[`${stream.id}@${j}`] = { location: keys.boundaryState(b, old.name, Number(j)), partitions, hashPartitioned: old.partitions !== null };
    }
  }
  for (const [name, stream] of newStreams) if (!taken.has(name)) record.starting.push(stream.id);
  // Set aside before the switch: from then on the checkpoints are the new stream's to collect.
  for (const aside of record.keptAside) {
    for (const [j, partitions] of Object.entries(aside.intervals)) {
      await copyParts(store, keys.boundaryState(b, aside.name, Number(j)), store, keys.keptAsideState(b, aside.name, Number(j)), partitions, `state ${aside.name}`, CHECKPOINTED_THEN_LOST);
    }
  }
  await store.put(keys.upgradeRecord(b), JSON.stringify(record, null, 2));
  const owner: StreamOwner = { name: pipeline.options.name, fingerprint: pipeline.fingerprint, states: [...newTable.values()], since: b };
  // The switch: one write.
  await store.put(keys.pipelineOwner, JSON.stringify(owner));
  return record;
}

/** Writes a savepoint of the root's stream at its boundary into `out` (its manifest last: a savepoint without one is incomplete). */
export async function exportSavepoint(store: ObjectStore, out: ObjectStore): Promise<BoundaryState> {
  const state = await checkpointBoundary(store);
  for (const entry of state.states) {
    for (const [j, partitions] of Object.entries(entry.intervals)) {
      await copyParts(store, keys.boundaryState(state.boundary, entry.name, Number(j)), out, keys.savepointState(entry.name, Number(j)), partitions, `state ${entry.name}`, CHECKPOINTED_THEN_LOST);
    }
  }
  await out.put(keys.savepointManifest, JSON.stringify(state, null, 2));
  return state;
}

/**
 * Starts a fresh root from a savepoint, with `pipeline` (the same code or upgraded code, mapped
 * as an upgrade maps it): the stream goes on at the savepoint's boundary.
 */
export async function importSavepoint(store: ObjectStore, from: ObjectStore, pipeline: Pipeline, now: number, options: UpgradeOptions = {}): Promise<UpgradeRecord> {
  const state = await readJson<BoundaryState>(from, keys.savepointManifest);
  if (!state || state.v !== 1) throw new UpgradeRefusedError(`no savepoint here: ${keys.savepointManifest} is missing (an export that stopped midway writes none)`);
  const owner = await readJson<StreamOwner>(store, keys.pipelineOwner);
  if (owner) throw new UpgradeRefusedError(`this root already holds the stream of pipeline ${owner.name}: import a savepoint into a fresh root`);
  if ((await listAll(store, 'lineage/')).length > 0) throw new UpgradeRefusedError('this root already holds intervals: import a savepoint into a fresh root');
  checkSameName(state.pipeline, pipeline);
  const b = state.boundary;
  for (const entry of state.states) {
    for (const [j, partitions] of Object.entries(entry.intervals)) {
      await copyParts(from, keys.savepointState(entry.name, Number(j)), store, keys.boundaryState(b, entry.name, Number(j)), partitions, `savepoint state ${entry.name}`, 'the savepoint is incomplete: export it again');
    }
  }
  const progress: DriverProgress = { next: b, base: b, epoch: now, intervalMs: state.intervalMs };
  await store.put(keys.driverProgress, JSON.stringify(progress));
  return adoptBoundary(store, state, pipeline, options);
}

/** What an upgrade did, for the operator. */
export function describeUpgrade(record: UpgradeRecord): string {
  const names = (list: string[]) => (list.length > 0 ? list.join(', ') : 'none');
  return [
    `pipeline ${record.to.name} runs fingerprint ${record.to.fingerprint} from interval ${record.boundary} on (before: ${record.from.fingerprint})`,
    `  state carried: ${names(record.mapped.map((m) => m.name))}`,
    `  operators whose state starts at interval ${record.boundary} (new, or dropped): ${names(record.starting)}`,
    `  state set aside (no operator of the new code takes it): ${names(record.keptAside.map((k) => `${k.name} under ${keys.keptAsidePrefix(record.boundary, k.name)}`))}`,
  ].join('\n');
}

/** Where recovery would need the old code: the new code never recomputes an interval before its boundary. */
export function beforeBoundaryError(j: number, b: number): PipelineMismatchError {
  return new PipelineMismatchError(
    `interval ${j} ran under the code before the upgrade at interval ${b}, and data it wrote is gone: this code cannot recompute it. ` +
      `The upgrade checkpointed what the new code reads, under checkpoints/${intervalScope(j)}/persist/boundary-*; restore it from a backup or savepoint`,
  );
}

function checkSameName(name: string, pipeline: Pipeline): void {
  if (name !== pipeline.options.name) {
    throw new UpgradeRefusedError(`this stream is pipeline ${name}, not ${pipeline.options.name}: an upgrade keeps the pipeline's name (a different pipeline starts on a fresh root or bucket)`);
  }
}

function checkCompatible(old: StateEntry, next: StateEntry, b: number): void {
  if (old.kind !== next.kind) {
    throw new UpgradeRefusedError(`state ${old.name} was kept by a ${old.kind} and the new code keeps it with a ${next.kind}: name the new operator differently, or pass --drop-state ${old.name.split('.')[0]}`);
  }
  if (old.shape !== next.shape) {
    throw new UpgradeRefusedError(`state ${old.name} is a window of ${old.shape}, and the new code's is of ${next.shape}: a window's state holds its length and slide; give the new window another name`);
  }
  if (next.need > old.need && b > old.need) {
    throw new UpgradeRefusedError(`state ${old.name} is now read ${next.need} intervals back, but the old code kept ${old.need}: give the longer window another name`);
  }
}

/**
 * State the boundary needs that is gone (the cache tier expires, or was deleted): recomputing it
 * from lineage would take the code that wrote it, which an upgrade does not have (the new code
 * never computes an interval of the old). The running code recomputes it when it next reads it.
 */
const RECOMPUTE_WITH_OLD_CODE =
  'an upgrade cannot recompute it, which would take the code that wrote it. Run the stream one more interval with that code ' +
  '(dstream run or replay with its module; on AWS, that code deployed): the interval recomputes from lineage the state it reads, and the upgrade then takes the boundary after it';
/** Written by this upgrade a moment ago: deleted by something else meanwhile. */
const CHECKPOINTED_THEN_LOST = 'it was deleted while the upgrade ran: run the upgrade again';

async function copyParts(from: ObjectStore, source: string, to: ObjectStore, target: string, partitions: number, what: string, wayOn: string): Promise<void> {
  for (let p = 0; p < partitions; p++) {
    const bytes = await from.get(keys.persisted(source, p));
    if (!bytes) throw new UpgradeRefusedError(`${what} is gone from the store (${keys.persisted(source, p)} is missing): ${wayOn}`);
    await to.put(keys.persisted(target, p), bytes);
  }
}
