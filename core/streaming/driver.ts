import { createHash } from 'node:crypto';
import type { ObjectStore } from '../ports/object-store.ts';
import type { SplitRef } from '../rdd/plan.ts';
import { listAll, readJson } from '../ports/object-store.ts';
import type { TaskQueue } from '../ports/task-queue.ts';
import type { Clock } from '../ports/clock.ts';
import type { ChangeFeed } from '../ports/change-feed.ts';
import type { TaskNotices } from '../ports/task-runner.ts';
import type { Pipeline } from '../graph/pipeline.ts';
import { DagScheduler, newRunId, TaskFailedError, type SchedulerOptions, type SchedulerStats, type ScopePlan } from '../scheduler/dag-scheduler.ts';
import { stageOfOutput, stagesRun } from '../scheduler/stages.ts';
import { intervalOf, intervalScope, keys, type Scope } from '../layout.ts';
import { markSealing, sealInterval, uploadId, type IntakeUpload, type UploadCheck } from './intake.ts';
import { readProgress, rebased, type DriverProgress } from './progress.ts';
import { planSplits, spillSplits } from './splits.ts';
import { lastCheckpoint, type IntervalInputs } from './generator.ts';
import {
  beforeBoundaryError,
  readUpgrade,
  stateTable,
  upgradeStream,
  UpgradeRefusedError,
  withdrawUpgrade,
  type StreamOwner,
  type UpgradeOptions,
  type UpgradeRecord,
} from './upgrade.ts';
import { commitEmptyStages, stagesWithoutTasks } from './empty-stages.ts';
import { StoredListings } from './stored-listings.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../util/map-concurrently.ts';
import { SharedDeadLetters, SharedNotices, stagesBeforeGate } from './interval-pipeline.ts';
import { buildLineageRecord, PipelineMismatchError, planFromRecord, readLineageRecord, spillUploads, type LineageRecord, type UploadsRef } from './lineage.ts';

export interface DriverConfig {
  intervalMs: number;
  /** How many splits an interval's input is cut into. */
  inputPartitions: number;
  /** Largest split, in bytes: what one task reads, which bounds its memory. */
  maxSplitBytes: number;
  scheduler: SchedulerOptions;
  /** Intervals of cache kept beyond what recovery needs, before garbage collection. */
  retainIntervals: number;
  /**
   * Checks at the seal that each upload can still be read, for runtimes whose admission cannot
   * promise it alone (the embedded runtime pins by moving a file after entering it).
   */
  checkUpload?: UploadCheck;
  /**
   * Given, a driver whose code differs from the stream's (the same pipeline name) upgrades the
   * stream to it at the boundary after the last committed interval, as `dstream upgrade` does:
   * on AWS, deploying new code is the upgrade. Absent, such a driver refuses to run.
   */
  upgrade?: UpgradeOptions;
  /**
   * Sends tasks for stages known empty too, which are otherwise committed without tasks (see
   * stagesWithoutTasks): the outputs are the same either way; for tests comparing the two.
   * @default false
   */
  runEmptyStages?: boolean;
  /**
   * How many intervals a driver runs at once (see IntervalPipeline): once interval k+1 has ended
   * it is sealed and planned, and its stages that read nothing of an earlier interval (the map
   * stages over its uploads) run while k's later stages finish; its stages that read state or
   * windows wait for the intervals that write them, and commits stay in interval order. 1: one
   * interval after another. A whole number from 1 to 16.
   * @default 2
   */
  maxIntervalsInFlight?: number;
}

/**
 * Where interval k stands among intervals run at once (IntervalPipeline): what it waits for and
 * what it tells. An interval run alone waits for nothing.
 */
export interface IntervalOrder {
  /** Settles once the intervals before k have run their stages: what they persist (state, windows) is complete. Rejects if one failed. */
  earlierStagesDone: Promise<void>;
  /** Settles once the intervals before k have committed. Rejects if one failed. */
  earlierCommitted: Promise<void>;
  /** Aborted when an interval before k failed: k stops at its next wait, its durable work kept for the driver that resumes it. */
  signal: AbortSignal;
  /** k's lineage record is written: the next interval may be planned. */
  planned(): void;
  /** k's stages are done: what it persists is complete. */
  stagesDone(): void;
  /**
   * k's commit record is written: its report may be handed on now, before the pointer moves and
   * garbage is collected (which the next interval's commit still waits for).
   */
  committed(report: IntervalReport): void;
}

const ALONE: IntervalOrder = {
  earlierStagesDone: Promise.resolve(),
  earlierCommitted: Promise.resolve(),
  signal: new AbortController().signal,
  planned() {},
  stagesDone() {},
  committed() {},
};

/** The steps of an interval, at any of which a driver may die; a new driver resumes after the last durable one. */
export type DriverStep = 'seal' | 'sealed' | 'lineage-written' | 'mid-stage' | 'stages-done' | 'outputs-committed' | 'sinks-done' | 'committed';

/** How often a driver running an interval looks whether its lineage record was rewritten. */
const RECORD_CHECK_MS = 10_000;

/** An interval's upload list and splits, written to objects of their own: what its record names. */
type Spilled = { uploadsRef: UploadsRef; sources: SplitRef[][] };

/** The lineage record of the interval being run was rewritten (by `dstream quarantine`). */
class RecordChanged extends Error {}

export interface DriverHooks {
  step?(step: DriverStep, interval: number): void | Promise<void>;
}

/** What an interval did, written with its commit: what `dstream run`/`replay` print and the test kit returns. Spark: `BatchInfo`. */
export interface IntervalReport {
  /** The interval's number, from 0. */
  interval: number;
  /** Uploads sealed into the interval. */
  uploads: number;
  /** Their bytes. */
  inputBytes: number;
  /** Uploads that could not be read (refused names, gone before they were pinned), recorded under errors/. */
  refusedUploads: number;
  /** Records read from the interval's input, each source partition counted once. */
  recordsIn: number;
  /** Bad records kept under errors/ (policy 'quarantine'), over all stages. */
  quarantined: number;
  /** Records each output wrote or collected, by output name (`foreachRDD` and `print` outputs have generated names). */
  outputs: Record<string, number>;
  /** From the start of processing to the commit. */
  processingMs: number;
  /** From the end of the interval to the start of its processing. */
  schedulingDelayMs: number;
  /** Tasks the driver sent for the interval's stages, recomputations included (speculative copies are counted in `speculative`). */
  tasks: number;
  /** Tasks not run because an earlier driver had already completed them (a resumed interval). */
  tasksSkipped: number;
  /** Speculative copies of slow tasks sent. */
  speculative: number;
  /** Copies of tasks sent but not started within their deadline. */
  unstartedResent: number;
  /** Times a task found a shuffle or stored input missing, which the driver then recomputed before running it again. */
  fetchFailures: number;
  /** Tasks run again because their output was lost: in this interval or in earlier ones. */
  recomputed: number;
  /** Intervals (this one or earlier) some of whose lost data (shuffle files, stored RDDs) was recomputed from lineage. */
  recoveredIntervals: number[];
}


/**
 * Runs a stream interval by interval: seal the interval's uploads, write its lineage, run its
 * stages, commit its outputs, checkpoint, collect garbage. Everything it knows is in the object
 * store, so any driver, restarted at any step, resumes an interval and produces the same result.
 */
export class StreamingDriver {
  private readonly records = new Map<number, LineageRecord>();
  /** The runner's notices and the queue's dead letters, each given to the schedulers of every interval in flight. */
  private readonly notices?: SharedNotices;
  private readonly deadLetters: SharedDeadLetters;
  /** The schedulers of the intervals in flight. */
  private readonly schedulers = new Set<DagScheduler>();
  /** The listings of the intervals in flight (StoredListings), by scope. */
  private readonly listings = new Map<Scope, StoredListings>();
  private claimed = false;
  /** The upgrade (or savepoint import) that brought this code to the stream, if one did. */
  private upgrade?: UpgradeRecord;

  constructor(
    readonly pipeline: Pipeline,
    /**
     * `changes`: what the stages wait on between polls (default: the clock's sleep, a fixed poll);
     * `notices`: which tasks moved, where the runtime knows, so that a poll reads only those.
     */
    private readonly deps: { store: ObjectStore; queue: TaskQueue; clock: Clock; changes?: ChangeFeed; notices?: TaskNotices },
    readonly config: DriverConfig,
    private readonly hooks: DriverHooks = {},
  ) {
    if (deps.notices) this.notices = new SharedNotices(deps.notices);
    this.deadLetters = new SharedDeadLetters(deps.queue);
  }

  /** The stream's clock and position (set once, by whichever driver or ingest comes first). */
  async progress(): Promise<DriverProgress> {
    return readProgress(this.deps.store, this.deps.clock.now(), this.config.intervalMs);
  }

  /**
   * A driver configured with another interval length moves the clock to it, from the interval it
   * is about to run when that is the next one. Only a driver running intervals does this (on AWS,
   * one holding the lease), so a driver merely looking never rewrites the clock.
   */
  private async adoptIntervalLength(k: number, progress: DriverProgress): Promise<void> {
    if (progress.intervalMs === this.config.intervalMs || progress.next !== k) return;
    await this.deps.store.put(keys.driverProgress, JSON.stringify(rebased(progress, this.config.intervalMs)));
  }

  /**
   * A persisted part's size as the listing of the interval `scope` (the task's, in flight) found
   * it (0: not found), when that listing holds its location; undefined otherwise. What the
   * in-driver bound weighs a stage's input with. Only the task's own interval's: a later
   * interval's listing waits for this one's stages, which would wait for this task.
   */
  storedPartSize(scope: Scope, key: string): Promise<number> | undefined {
    return this.listings.get(scope)?.sizeOf(key);
  }

  /** Moves the progress pointer past interval k; never back. */
  private async advancePast(k: number): Promise<void> {
    const progress = await this.progress();
    if (progress.next <= k) await this.deps.store.put(keys.driverProgress, JSON.stringify({ ...progress, next: k + 1 }));
  }

  /**
   * A root (or bucket) holds one pipeline's stream: its state, windows and committed outputs
   * mean nothing to other code, which would silently fold onto them. The first driver claims
   * the store; a driver of another pipeline refuses to run on it, and one of changed code upgrades
   * the stream (config.upgrade) or refuses.
   */
  private async claimStore(): Promise<void> {
    if (this.claimed) return;
    const { store } = this.deps;
    const mine: StreamOwner = { name: this.pipeline.options.name, fingerprint: this.pipeline.fingerprint, states: stateTable(this.pipeline) };
    if (!(await store.putIfAbsent(keys.pipelineOwner, JSON.stringify(mine)))) {
      let owner = (await readJson<StreamOwner>(store, keys.pipelineOwner))!;
      if (owner.name === mine.name && owner.fingerprint !== mine.fingerprint && this.config.upgrade) {
        owner = await this.upgradeTo(owner, this.config.upgrade);
      }
      if (owner.name !== mine.name || owner.fingerprint !== mine.fingerprint) {
        throw new PipelineMismatchError(
          `this store holds the stream of pipeline ${owner.name} (fingerprint ${owner.fingerprint}), not of ${mine.name} (fingerprint ${mine.fingerprint}): ` +
            (owner.name === mine.name
              ? `to carry the stream on with changed code, stop it and run dstream upgrade <pipeline> (see "Upgrading a running pipeline")`
              : `a different pipeline starts on a fresh root or bucket`),
        );
      }
      // A root claimed by an earlier dstream: its state table is what an upgrade maps from.
      if (!owner.states) await store.put(keys.pipelineOwner, JSON.stringify({ ...owner, states: mine.states }));
      this.upgrade = await readUpgrade(store, owner);
      // A driver of this code that crashed before it saw the old code win the boundary.
      if (this.upgrade) await this.checkBoundaryOwner(await readLineageRecord(store, this.boundary));
    }
    this.claimed = true;
  }

  /**
   * Upgrades the stream from `owner`'s code to this code at the boundary after its last committed
   * interval, once no interval of the old code is in flight, and returns the owner record then.
   * Idempotent: drivers of this code racing each other, or one finishing another's crashed
   * upgrade, copy the same bytes and write the same records.
   */
  private async upgradeTo(owner: StreamOwner, options: UpgradeOptions): Promise<StreamOwner> {
    const { store } = this.deps;
    const next = (await this.progress()).next;
    const inFlight = await readLineageRecord(store, next);
    if (inFlight && (await store.head(keys.committed(inFlight.scope)))) {
      // A driver died between committing the interval and moving the pointer past it.
      await this.advancePast(next);
      return this.upgradeTo(owner, options);
    }
    if (inFlight && inFlight.fingerprint === owner.fingerprint) throw this.oldCodeInFlight(next, owner.fingerprint);
    try {
      await upgradeStream(store, this.pipeline, options);
    } catch (error) {
      // Another driver of this code finished the upgrade meanwhile, and may be running the boundary.
      const now = await readJson<StreamOwner>(store, keys.pipelineOwner);
      if (!(error instanceof UpgradeRefusedError) || now?.fingerprint !== this.pipeline.fingerprint) throw error;
    }
    return (await readJson<StreamOwner>(store, keys.pipelineOwner))!;
  }

  private oldCodeInFlight(k: number, fingerprint: string): UpgradeRefusedError {
    return new UpgradeRefusedError(
      `interval ${k} was planned by the code this stream ran before (fingerprint ${fingerprint}) and has not committed: this code ` +
        `(fingerprint ${this.pipeline.fingerprint}) takes the stream over at the boundary after it. A driver of the old code still running commits it; ` +
        `if none is (it failed mid-interval), run the old code until interval ${k} commits, then this code again`,
    );
  }

  /**
   * The boundary's lineage record decides which code runs the boundary interval: a driver of the
   * old code that outlived its lease may have planned it while this code upgraded. Then the upgrade
   * is withdrawn, the old code commits the interval, and this code upgrades after it.
   */
  private async checkBoundaryOwner(record: LineageRecord | undefined): Promise<void> {
    if (!this.upgrade || !record || record.interval !== this.boundary || record.fingerprint === this.pipeline.fingerprint) return;
    await withdrawUpgrade(this.deps.store, this.upgrade);
    this.claimed = false;
    this.upgrade = undefined;
    if (!(await this.deps.store.head(keys.committed(record.scope)))) throw this.oldCodeInFlight(record.interval, record.fingerprint);
    // The old code has committed it already: upgrade at the boundary after it.
    await this.claimStore();
  }

  /**
   * Before this code plans an interval: the stream is still its. A driver of code the stream has
   * since been upgraded from (on AWS, an invocation of the code deployed before) stops here.
   */
  private async checkStillOwner(k: number): Promise<void> {
    const owner = await readJson<StreamOwner>(this.deps.store, keys.pipelineOwner);
    if (owner && owner.name === this.pipeline.options.name && owner.fingerprint === this.pipeline.fingerprint) return;
    throw new PipelineMismatchError(
      `the stream of pipeline ${this.pipeline.options.name} was upgraded to fingerprint ${owner?.fingerprint} from interval ${owner?.since}: ` +
        `this code (fingerprint ${this.pipeline.fingerprint}) plans no interval from ${k} on`,
    );
  }

  /** The first interval this code runs: 0, or where an upgrade or savepoint import handed the stream to it. */
  async firstInterval(): Promise<number> {
    await this.claimStore();
    return this.boundary;
  }

  /** The first interval this code plans: 0, or the boundary of the upgrade (or savepoint import) that brought it. */
  private get boundary(): number {
    return this.upgrade?.boundary ?? 0;
  }

  /** What interval k reads from before the boundary: the old code's RDDs checkpointed at the upgrade. */
  private carriedInto(k: number): Pick<IntervalInputs, 'carried' | 'starting'> {
    if (!this.upgrade) return {};
    const from = k - this.pipeline.graph.lookback();
    const carried = Object.entries(this.upgrade.carried).filter(([at]) => Number(at.split('@')[1]) >= from);
    return {
      ...(carried.length > 0 ? { carried: Object.fromEntries(carried) } : {}),
      ...(k === this.boundary && this.upgrade.starting.length > 0 ? { starting: this.upgrade.starting } : {}),
    };
  }

  /**
   * Seals interval k and writes its lineage record, unless a driver already did. `existing`: the
   * record as read (afresh) at the interval's start, when the caller read it there; `stored`: the
   * interval's listings of what it reads from earlier intervals, started as soon as its plan is known;
   * `marked`: the seal's first step (markSealing), when the caller took it already. `created` when
   * this call wrote the record.
   */
  async planInterval(
    k: number,
    options: { existing?: Promise<LineageRecord | undefined>; stored?: StoredListings; marked?: Promise<IntakeUpload[] | undefined> } = {},
  ): Promise<{ record: LineageRecord; created: boolean }> {
    const { store, clock } = this.deps;
    // Read afresh, not from memory: an operator may have rewritten the record of an interval that
    // failed (`dstream quarantine`) since this driver, or this warm container, last ran it.
    const found = await (options.existing ?? readLineageRecord(store, k));
    if (found) {
      options.stored?.prefetch(found);
      await this.checkBoundaryOwner(found);
      this.records.set(k, found);
      return { record: found, created: false };
    }
    await this.claimStore();
    // Looked at during the seal (which any code may do: its list is the same for all), and
    // awaited before this code plans anything.
    const stillOwner = this.checkStillOwner(k);
    stillOwner.catch(() => undefined);
    if (k < this.boundary) throw new Error(`interval ${k} is before interval ${this.boundary}, where this code took the stream over (an upgrade or a savepoint import): it is not this code's to run`);
    // Before the seal: a missing initial state stops the stream before interval 0 (or an upgrade's boundary) takes any upload.
    const objects = this.pinsStoreObjects(k) ? await this.pinStoreObjects(k === 0 ? undefined : this.upgrade!.starting) : undefined;
    const persisted = this.persistedBefore(k);
    persisted.catch(() => undefined);
    await this.step('seal', k);
    // The upload list and the splits go to objects of their own (all at once), so the record only
    // names them; those of the list this seal proposes are written while the list is made final.
    // Written early, they are harmless: content-addressed, they mean nothing until a record names
    // them, and the record comes after the final list. A racing seal's list that won gets its own.
    let proposed: { uploads: IntakeUpload[]; spilled: Promise<Spilled> } | undefined;
    const uploads = await sealInterval(store, k, {
      ...(this.config.checkUpload ? { check: this.config.checkUpload } : {}),
      ...(options.marked ? { marked: options.marked } : {}),
      beside: (list) => (proposed = { uploads: list, spilled: this.spill(k, list) }).spilled,
    });
    const { uploadsRef, sources } = await (proposed?.uploads === uploads ? proposed.spilled : this.spill(k, uploads));
    await this.recordRefused(k, uploads);
    await this.step('sealed', k);
    const inputs: IntervalInputs = { sources, persisted: await persisted, ...(objects === undefined ? {} : { objects }), ...this.carriedInto(k) };
    await stillOwner;
    let record = buildLineageRecord(this.pipeline, k, uploadsRef, inputs, clock.now());
    // Listings are reads: started beside the record, they mean nothing to a driver that dies before it.
    options.stored?.prefetch(record);
    const created = await store.putIfAbsent(keys.lineageRecord(record.scope), JSON.stringify(record));
    if (!created) {
      record = (await readLineageRecord(store, k))!;
      await this.checkBoundaryOwner(record);
    }
    this.records.set(k, record);
    await this.step('lineage-written', k);
    return { record, created };
  }

  /** Writes interval k's upload list and each source's splits to objects of their own, at once. */
  private async spill(k: number, uploads: IntakeUpload[]): Promise<Spilled> {
    const { inputPartitions, maxSplitBytes } = this.config;
    const readable = uploads.filter((u) => u.refused === undefined);
    const [uploadsRef, ...sources] = await Promise.all([
      spillUploads(this.deps.store, k, uploads),
      ...this.pipeline.sources.map((spec) => spillSplits(this.deps.store, intervalScope(k), planSplits(readable.filter((u) => u.name.startsWith(spec.prefix)), inputPartitions, maxSplitBytes))),
    ]);
    return { uploadsRef, sources };
  }

  /**
   * Copies each store object the pipeline reads (initial states) into interval 0's lineage (or an upgrade boundary's), named
   * by the hash of its bytes, and cuts the copy into splits: every computation of interval 0
   * reads those bytes, whatever later happens to the object. A missing object is an error.
   */
  private async pinStoreObjects(starting?: string[]): Promise<SplitRef[][]> {
    const { store } = this.deps;
    const scope = intervalScope(starting === undefined ? 0 : this.boundary);
    const pinned: SplitRef[][] = [];
    // At an upgrade's boundary only the operators starting there read theirs (see initialParam).
    const read = starting && new Set(this.pipeline.graph.streams.filter((s) => starting.includes(s.id)).flatMap((s) => (Array.isArray(s.params) ? s.params : [])));
    for (const key of this.pipeline.graph.storeObjects) {
      if (read && !read.has(`object:${key}`)) {
        pinned.push([]);
        continue;
      }
      const bytes = await store.get(key);
      if (!bytes) throw new Error(`pipeline ${this.pipeline.options.name} starts its state from ${key} (ctx.jsonFile), which does not exist in the store: put it there, then run again`);
      const copy = keys.lineageObject(scope, createHash('sha256').update(bytes).digest('hex').slice(0, 32));
      await store.putIfAbsent(copy, bytes);
      const splits = planSplits([{ key: copy, name: key, size: bytes.length }], this.config.inputPartitions, this.config.maxSplitBytes);
      pinned.push(await spillSplits(store, scope, splits));
    }
    return pinned;
  }

  /** Whether interval k starts from store objects, pinned before its seal: interval 0, or an upgrade's boundary. */
  private pinsStoreObjects(k: number): boolean {
    return k === 0 || (k === this.boundary && this.upgrade !== undefined);
  }

  /** Each refused upload of interval k gets a record under errors/ saying what and why (all at once). */
  private async recordRefused(k: number, uploads: IntakeUpload[]): Promise<void> {
    await mapConcurrently(uploads.filter((u) => u.refused !== undefined), STORE_CONCURRENCY, async (upload) => {
      const { key, name, size, version, refused } = upload;
      await this.deps.store.putIfAbsent(
        keys.refusedUpload(intervalScope(k), uploadId(upload)),
        JSON.stringify({ interval: k, name, key, ...(version === undefined ? {} : { version }), size, reason: refused }, null, 2),
      );
    });
  }

  /** The plan of a scope an interval in flight runs under, if it is the one `planHash` names: for the tasks the driver runs itself. */
  scopePlan(scope: string, planHash: string): ScopePlan | undefined {
    for (const scheduler of this.schedulers) {
      const plan = scheduler.plan(scope, planHash);
      if (plan) return plan;
    }
    return undefined;
  }

  /**
   * Runs interval k to its commit; a committed interval is not run again. With `order`, k runs
   * while earlier intervals are in flight (IntervalPipeline does this).
   */
  async runInterval(k: number, intervalEnd?: number, order: IntervalOrder = ALONE): Promise<IntervalReport> {
    const notices = this.notices?.reader();
    const queue = this.deadLetters.reader();
    const scheduled: DagScheduler[] = [];
    // Listed once the intervals before k have run their stages: what they persist is complete then.
    const stored = new StoredListings(this.deps.store, intervalScope(k), order.earlierStagesDone);
    this.listings.set(intervalScope(k), stored);
    try {
      return await this.runInOrder(k, intervalEnd, order, { queue, scheduled, stored, ...(notices ? { notices } : {}) });
    } finally {
      notices?.close();
      queue.close();
      for (const scheduler of scheduled) this.schedulers.delete(scheduler);
      this.listings.delete(intervalScope(k));
    }
  }

  private async runInOrder(
    k: number,
    intervalEnd: number | undefined,
    order: IntervalOrder,
    shared: { queue: TaskQueue; notices?: TaskNotices; scheduled: DagScheduler[]; stored: StoredListings },
  ): Promise<IntervalReport> {
    const { store, clock, changes } = this.deps;
    const { queue, notices, stored } = shared;
    await this.claimStore();
    const scope = intervalScope(k);
    // At once: each is a read, and what one answers changes nothing the others read. The record is
    // looked at only for an interval not committed (a committed one may hold a form not read now).
    const existing = readLineageRecord(store, k);
    existing.catch(() => undefined);
    // The seal's first step with them (see markSealing: harmless if k needs no seal); not where the
    // seal waits for the initial state to be pinned, so a missing one stops the stream first.
    const marked = this.pinsStoreObjects(k) ? undefined : markSealing(store, k);
    marked?.catch(() => undefined);
    const [committed, progress] = await Promise.all([readJson<IntervalReport>(store, keys.committed(scope)), this.progress()]);
    if (committed) {
      // A driver that died between the commit and moving the pointer left this to do.
      await this.advancePast(k);
      return committed;
    }
    // Created with the planning, not after it: a run names the tasks sent, and none is sent before the record.
    const run = this.currentRun(scope);
    run.catch(() => undefined);
    await this.adoptIntervalLength(k, progress);

    const { record, created } = await this.planInterval(k, { existing, stored, ...(marked ? { marked } : {}) });
    order.planned();
    // From the seal: a driver resuming the interval after another died counts the time lost too.
    const started = record.sealedAt;
    const plan = { ...planFromRecord(this.pipeline, record), fresh: created };
    const hooks = this.hooks;
    let recordCheckedAt = clock.now();
    const scheduler: DagScheduler = new DagScheduler({
      store,
      queue,
      ...(notices ? { notices } : {}),
      // The driver may die between any two polls; the clock is where the scheduler waits.
      clock: {
        now: () => clock.now(),
        sleep: async (ms) => {
          await (changes ? changes.waitForChange(ms) : clock.sleep(ms));
          // An earlier interval failed: this one must not commit, and stops here; what its tasks
          // wrote stays, for the driver that resumes it.
          order.signal.throwIfAborted();
          await hooks.step?.('mid-stage', k);
          if (clock.now() - recordCheckedAt < RECORD_CHECK_MS) return;
          recordCheckedAt = clock.now();
          // An operator rerunning the interval (`dstream quarantine`) while this driver runs it.
          if ((await readLineageRecord(store, k))?.planHash !== record.planHash) throw new RecordChanged();
        },
      },
      options: this.config.scheduler,
      runId: await run,
      // Recovery only reads lineage: an earlier interval is never sealed or planned anew.
      loadScope: async (s) => {
        const j = intervalOf(s);
        if (j !== undefined && j < this.boundary) throw beforeBoundaryError(j, this.boundary);
        const earlier = j === undefined ? undefined : (this.records.get(j) ?? (await readLineageRecord(store, j)));
        if (!earlier) throw new Error(`cannot recompute data of ${s}: its lineage record is gone`);
        return planFromRecord(this.pipeline, earlier);
      },
      elsewhere: (s, stage, planHash): boolean => [...this.schedulers].some((other) => other !== scheduler && other.runs(s, stage, planHash)),
      storedParts: stored.parts,
    });
    this.schedulers.add(scheduler);
    shared.scheduled.push(scheduler);
    let stats: SchedulerStats;
    let skipped: Set<string>;
    try {
      // While earlier intervals run, the stages that read nothing of theirs; the rest wait until
      // what the earlier intervals persist (state, windows) is complete. Waiting for their stages,
      // not their commits, is enough: a stage reads persisted RDDs, never commit records, and an
      // earlier interval that fails aborts this one before it commits (order.signal). Waiting here
      // also keeps recovery honest: the scheduler recomputes a persisted part of an earlier interval
      // when it finds it missing, which it is, not lost, until that interval's stage has written it.
      let earlierDone = false;
      void order.earlierStagesDone.then(() => (earlierDone = true), () => undefined);
      // Decided from the plan alone; by then an interval run alone knows it waits for nothing.
      const early = await stagesBeforeGate(store, plan, this.config.runEmptyStages === true);
      if (!earlierDone && early.length > 0) await scheduler.run(plan, early, () => earlierDone);
      await order.earlierStagesDone;
      order.signal.throwIfAborted();
      // Stages known empty (no uploads, empty state and windows) are committed here, without tasks.
      const withoutTasks = this.config.runEmptyStages ? [] : await stagesWithoutTasks(store, plan, { parts: stored.parts });
      await commitEmptyStages(store, plan, withoutTasks);
      skipped = new Set(withoutTasks.map((s) => s.id));
      // The stages that write something; the scheduler adds the map stages they need.
      stats = await scheduler.run(plan, stagesRun(plan.stages).filter((s) => s.kind !== 'shuffle-map' && !skipped.has(s.id)).map((s) => s.id));
    } catch (error) {
      // Its tasks were sent under the old record; run the interval again under the new one.
      if (error instanceof RecordChanged) return this.runInOrder(k, intervalEnd, order, shared);
      // Reported: the next run, once the cause is fixed, sends every unfinished task afresh.
      if (error instanceof TaskFailedError) await store.put(keys.intervalRun(scope), JSON.stringify({ id: newRunId() }));
      throw error;
    }
    order.stagesDone();
    await this.step('stages-done', k);
    // Outputs, sinks and the pointer move in interval order.
    await order.earlierCommitted;
    order.signal.throwIfAborted();

    const done = scheduler.completions(scope);
    const outputs: Record<string, number> = {};
    const successes: Promise<boolean>[] = [];
    for (const output of record.outputs) {
      const stage = stageOfOutput(plan.stages, output.name)!;
      const parts = done.flatMap((d) => (d.outputs?.[output.name] === undefined ? [] : [d.outputs[output.name]!]));
      outputs[output.name] = parts.reduce((n, records) => n + records, 0);
      // An output committed without tasks has every part, each empty.
      const partCount = skipped.has(stage.id) ? stage.tasks : parts.length;
      if (output.format === 'text' || output.format === 'json') {
        successes.push(store.putIfAbsent(keys.outputSuccess(output.name, scope), JSON.stringify({ interval: k, parts: partCount, records: outputs[output.name] })));
      }
    }
    // Each output's marker is its own; all of them come before the interval's commit.
    await Promise.all(successes);
    // Each source partition once, however many stages read it.
    const sourceRecords: Record<string, number> = {};
    for (const d of done) Object.assign(sourceRecords, d.sourceRecords);
    const recordsIn = Object.values(sourceRecords).reduce((n, c) => n + c, 0);
    const quarantined = done.reduce((n, d) => n + d.quarantined, 0);
    await this.step('outputs-committed', k);

    for (const output of this.pipeline.graph.outputs) {
      if (!output.sink || !record.outputs.some((o) => o.name === output.name)) continue;
      if (await store.head(keys.sinkDone(scope, output.name))) continue;
      const collected = await scheduler.collect(plan, output.name);
      try {
        await output.sink(collected, k);
      } catch (error) {
        // Not marked done: the next driver calls the sink again (sinks run at least once).
        throw new Error(
          `the foreachRDD sink ${output.name} (on ${output.stream.kind} ${output.stream.id}) failed at interval ${k} with ${collected.length} records: ` +
            (error instanceof Error ? error.message : String(error)),
          { cause: error },
        );
      }
      await store.putIfAbsent(keys.sinkDone(scope, output.name), '');
    }
    await this.step('sinks-done', k);

    const end = intervalEnd ?? record.sealedAt;
    const report: IntervalReport = {
      interval: k,
      uploads: record.uploads.count,
      inputBytes: record.uploads.bytes,
      refusedUploads: record.uploads.refused,
      recordsIn,
      quarantined,
      outputs,
      processingMs: clock.now() - started,
      schedulingDelayMs: Math.max(0, started - end),
      ...summarise(stats),
    };
    await store.putIfAbsent(keys.committed(scope), JSON.stringify(report));
    order.committed(report);
    // At once: each follows from the commit alone. A driver starting from a pointer not yet moved
    // finds k committed and moves it; what recovery may still need is decided by k's commit.
    const garbage = this.collectGarbage(k);
    garbage.catch(() => undefined);
    await this.advancePast(k);
    await this.step('committed', k);
    await garbage;
    return report;
  }

  /**
   * The interval's run, the same for every driver until one reports a failure of it: a driver that
   * hands over, times out or crashes leaves its run's dead letters to the next, which fails on
   * them rather than filing them as history.
   */
  private async currentRun(scope: string): Promise<string> {
    const key = keys.intervalRun(scope);
    const id = newRunId();
    // Created: the run is the one just written.
    if (await this.deps.store.putIfAbsent(key, JSON.stringify({ id }))) return id;
    return (await readJson<{ id: string }>(this.deps.store, key))!.id;
  }

  /** Partition counts of RDDs persisted by the intervals that interval k may read. */
  private async persistedBefore(k: number): Promise<Record<string, number>> {
    const persisted: Record<string, number> = {};
    // Before the boundary, the old code's RDDs are read as carried, never by its records' ids.
    const from = Math.max(this.boundary, k - this.pipeline.graph.lookback());
    for (let j = from; j < k; j++) {
      const record = this.records.get(j) ?? (await readLineageRecord(this.deps.store, j));
      if (!record) throw new Error(`interval ${k} needs the lineage of interval ${j}, which is missing: intervals run in order from 0`);
      this.records.set(j, record);
      for (const [stream, n] of Object.entries(record.persistedHere)) persisted[`${stream}@${j}`] = n;
    }
    return persisted;
  }

  /**
   * After interval k commits, the intervals that fell behind what recovery may need (the lookback
   * of windows and state, and every stateful stream's last checkpoint, less a margin) lose their
   * cache and their checkpoints: each stateful stream keeps a newer checkpoint. Intervals after k
   * in flight lose nothing they read: keepFrom grows with k, so what k+1 may read or recover from
   * is at or after keepFrom(k), and commits (hence collections) run in interval order.
   */
  private async collectGarbage(k: number): Promise<void> {
    const from = Math.max(0, this.keepFrom(k - 1));
    const to = this.keepFrom(k);
    const { store } = this.deps;
    // Every interval at once: the first collection of a stream may have many behind it.
    const doomed = (
      await mapConcurrently(Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i), STORE_CONCURRENCY, async (j) =>
        (await Promise.all([listAll(store, keys.cachePrefix(intervalScope(j))), listAll(store, `checkpoints/${intervalScope(j)}/`)])).flat(),
      )
    ).flat();
    await mapConcurrently(doomed, STORE_CONCURRENCY, (o) => store.delete(o.key));
    for (let j = from; j < to; j++) this.records.delete(j - this.pipeline.graph.lookback());
  }

  /** The first interval whose cache and checkpoints recovery may still need once k has committed. */
  private keepFrom(k: number): number {
    const { graph, options } = this.pipeline;
    let floor = k - graph.lookback();
    for (const stream of graph.streams) if (stream.stateful) floor = Math.min(floor, lastCheckpoint(stream, k, options.checkpointEvery));
    return floor - this.config.retainIntervals;
  }

  private async step(step: DriverStep, k: number): Promise<void> {
    await this.hooks.step?.(step, k);
  }
}

function summarise(stats: SchedulerStats) {
  return {
    tasks: stats.tasksLaunched,
    tasksSkipped: stats.tasksSkipped,
    speculative: stats.speculativeLaunched,
    unstartedResent: stats.unstartedResent,
    fetchFailures: stats.fetchFailures,
    recomputed: stats.tasksRecomputed,
    recoveredIntervals: [...stats.scopesRecovered].flatMap((s) => intervalOf(s) ?? []),
  };
}
