import type { ObjectStore } from '../ports/object-store.ts';
import { listAll, readJson } from '../ports/object-store.ts';
import type { TaskQueue } from '../ports/task-queue.ts';
import type { Clock } from '../ports/clock.ts';
import type { TaskNotice, TaskNotices } from '../ports/task-runner.ts';
import type { PlanBuilder } from '../rdd/rdd.ts';
import type { BlockRef } from '../exec/compute.ts';
import { randomBytes } from 'node:crypto';
import type { BadRecordPolicy, TaskDone, TaskFailure, TaskRecord } from '../exec/task.ts';
import { keys, parsePersisted, parseShuffleMap, parseTaskStarted, partitionOfTaskDone, runInKey, scopeOfKey, type Scope } from '../layout.ts';
import type { StageSpec } from './stages.ts';
import { decodeTaskMessage, encodeTaskMessage, keepUnreadableMessage } from './task-message.ts';
import { stageIds, stageOfOutput, stageRecovering, stageShuffleReads, stagesRun, stageWriting, writesLocation } from './stages.ts';
import { decodeRecords } from '../codec/record-codec.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../util/map-concurrently.ts';

/** A scope's plan as the scheduler needs it. */
export interface ScopePlan {
  scope: Scope;
  pipeline: string;
  fingerprint: string;
  planHash: string;
  builder: PlanBuilder;
  stages: StageSpec[];
  /** What the scope's tasks do with a bad record: the pipeline's policy, unless the scope overrides it. */
  badRecords: BadRecordPolicy;
  /**
   * The caller created the scope's lineage record a moment ago, so no task of the scope has run
   * before this scheduler sends one: its stages' task folders are not listed before their first
   * tasks go out. Safe with a stale driver running the scope at the same time: a task that driver
   * completed is sent again, and the copy finds the completion record and stops there (runTask);
   * one it failed for good (an error that recurs on every delivery) fails this run's copy too.
   */
  fresh?: boolean;
}

export interface SpeculationOptions {
  enabled: boolean;
  /** Fraction of a stage's tasks that must be done before any is duplicated. */
  quantile: number;
  /** A task running longer than this multiple of the stage's median gets a duplicate. */
  multiplier: number;
  /** Never duplicate a task that has run less than this. */
  minMs: number;
}

/**
 * A task sent but not started (no start marker) within a deadline is sent again, as a copy: its
 * delivery may have died before the task could start (an init crash, out of memory, throttling),
 * and would otherwise wait out the queue's visibility timeout. The deadline is `multiplier` times
 * the longest start latency (send to start marker) observed in the stage, or in recent stages
 * when none of its tasks has started, and at least `minMs`; it doubles with each copy. Copies are
 * sent only while no task of this scheduler is running and none has started or completed within
 * the deadline: then nothing holds the workers, and a task still waiting is not queued behind
 * others but lost. So a lost task in a large stage is copied once the rest are done.
 */
export interface UnstartedOptions {
  enabled: boolean;
  multiplier: number;
  /** The floor: no copy before this; on AWS, where S3 dates start markers to the second, 2 s. */
  minMs: number;
}

export interface SchedulerOptions {
  pollMs: number;
  speculation: SpeculationOptions;
  unstarted: UnstartedOptions;
  /** How often one task may lose its inputs and be rerun before the scope fails. */
  maxFetchFailures: number;
}

export const defaultSchedulerOptions: SchedulerOptions = {
  pollMs: 25,
  speculation: { enabled: true, quantile: 0.5, multiplier: 2, minMs: 200 },
  // Off by default: locally a worker holds its message, and the queue redelivers what a dead
  // worker held within seconds. The AWS driver turns it on.
  unstarted: { enabled: false, multiplier: 4, minMs: 1000 },
  maxFetchFailures: 16,
};

export interface SchedulerStats {
  tasksLaunched: number;
  tasksSkipped: number;
  speculativeLaunched: number;
  /** Copies of tasks sent but not started within their deadline. */
  unstartedResent: number;
  fetchFailures: number;
  /** Tasks run again because their output was lost: in this scope or in earlier ones. */
  tasksRecomputed: number;
  scopesRecovered: Set<Scope>;
}

export class TaskFailedError extends Error {
  constructor(
    readonly scope: Scope,
    readonly stage: string,
    readonly partition: number,
    readonly receiveCount: number,
    readonly lastError: string | undefined,
    /** Failed with an error that recurs on every delivery, so it was not retried (not dead-lettered). */
    readonly settled = false,
    /** A preview of the bad record it failed on: kept out of the message, which logs carry. */
    readonly record?: string,
  ) {
    super(
      (settled
        ? `task ${scope} stage ${stage} partition ${partition} failed on delivery ${receiveCount} with an error that recurs on every delivery, so it was not retried`
        : `task ${scope} stage ${stage} partition ${partition} failed after ${receiveCount} attempts and was dead-lettered`) +
        (lastError ? `: ${lastError}` : ''),
    );
    this.name = 'TaskFailedError';
  }
}

export interface SchedulerDeps {
  store: ObjectStore;
  queue: TaskQueue;
  clock: Clock;
  options: SchedulerOptions;
  /** The plan of an earlier scope, rebuilt from its lineage record, for recovery. */
  loadScope(scope: Scope): Promise<ScopePlan>;
  /**
   * The run this scheduler is part of (hex). Tasks carry it, and dead letters and final failures
   * of another run are history, not this run's failure. The streaming driver keeps one per
   * interval in the store until a failure is reported; default, a fresh one.
   */
  runId?: string;
  /**
   * The runner's word on which tasks started and settled, where it has one. A poll with notices
   * reads those tasks' records by key; one with none, or the FULL_LISTING_POLLS-th in a row with
   * some, lists the running stages' folders as without notices. So the polls a completion wakes
   * cost what changed rather than every task of every running stage, and a lost notice only delays.
   */
  notices?: TaskNotices;
  /**
   * Whether another scheduler draining the same dead letters runs this stage (a driver with
   * intervals in flight gives each of its schedulers every letter): its letters are that
   * scheduler's to fail on, not this one's to file as history.
   */
  elsewhere?(scope: Scope, stage: string, planHash: string): boolean;
  /** The parts present at a persisted RDD's location, by key (a LIST of it by default): the streaming driver shares one listing per location per interval. */
  storedParts?(location: string): Promise<ReadonlyMap<string, number>>;
}

const FULL_LISTING_POLLS = 40;

/**
 * How often a scheduler drains the queue's dead letters: at most this often, while it waits for
 * tasks (so a drain costs no time while they run), and at once when a noticed task settled
 * without a record (a runner that dead-letters a task on its last delivery says so). A letter
 * comes only after a task's deliveries have run out, each returned to the queue after a retry
 * delay or visibility timeout of seconds: a drain on every poll, a request on the critical path
 * of each stage, would almost always find nothing. A scheduler drains on its first wait, so that
 * each files what an earlier run left, however short its life.
 */
const DEAD_LETTER_DRAIN_MS = 1_000;

interface Running {
  sentAt: number;
  /** When the last copy was sent. */
  lastSentAt: number;
  /** When the first copy started, from its marker: time in the queue is not slowness. */
  startedAt?: number;
  copies: number;
  /** Copies sent because no copy had started. */
  resends: number;
  speculated: boolean;
}

/** Start latencies kept from recent stages, for a stage none of whose tasks has started. */
const RECENT_START_LATENCIES = 32;

/** One stage of one scope, and which of its partitions this run must complete. */
class StageRun {
  readonly needed = new Set<number>();
  readonly done = new Map<number, TaskDone>();
  readonly running = new Map<number, Running>();
  readonly attempts = new Map<number, number>();
  readonly deps = new Set<StageRun>();
  /** The longest time from send to start marker among its tasks that started. */
  maxStartLatency?: number;
  loaded = false;

  constructor(
    readonly plan: ScopePlan,
    readonly spec: StageSpec,
  ) {}

  get key(): string {
    return `${this.plan.scope}/${this.spec.id}`;
  }

  get complete(): boolean {
    for (const p of this.needed) if (!this.done.has(p)) return false;
    return true;
  }
}

/**
 * Runs stages to completion over the task queue, reading progress from completion records in the
 * object store, so that a driver that dies can be replaced and pick up exactly where it was.
 * Every stage whose inputs are ready runs at once, across scopes: when persisted RDDs of earlier
 * intervals are missing, their recomputation joins the same DAG and proceeds in parallel.
 */
export class DagScheduler {
  readonly stats: SchedulerStats = {
    tasksLaunched: 0,
    tasksSkipped: 0,
    speculativeLaunched: 0,
    unstartedResent: 0,
    fetchFailures: 0,
    tasksRecomputed: 0,
    scopesRecovered: new Set(),
  };
  private readonly stages = new Map<string, StageRun>();
  private readonly plans = new Map<Scope, ScopePlan>();
  /**
   * Looks for lost persisted inputs under way, by the stage that reads them (addStage): it is not
   * submitted before its look is done, which may give it recovery stages to wait for.
   */
  private readonly inputChecks = new Map<StageRun, Promise<void>>();
  /** The last look begun, settled: looks run one after another, as their recoveries did before. */
  private lastInputCheck: Promise<void> = Promise.resolve();
  private readonly seenFailures = new Set<string>();
  private readonly recentStartLatencies: number[] = [];
  /** When this scheduler last saw a task start or complete: the workers' last sign of life. */
  private lastProgressAt = 0;
  /** How many polls ago the running stages' folders were last listed. */
  private pollsSinceListing = 0;
  /** When the dead letters were last drained (DEAD_LETTER_DRAIN_MS). */
  private lastDrainAt = -Infinity;
  /** Noticed starts whose marker was not there yet (the runner may tell before the task writes it). */
  private readonly pendingStarts = new Map<string, TaskNotice>();
  /**
   * This run's mark on the tasks it sends. Tasks are sent afresh by each run, so what an earlier
   * run's copies left (dead letters, final failures) is history that does not fail this one.
   */
  private readonly runId: string;

  constructor(private readonly deps: SchedulerDeps) {
    this.runId = deps.runId ?? newRunId();
  }

  /**
   * Runs the given stages of a plan (by default all it runs, recovery stages aside) and everything
   * they need; or until `until` says to stop sooner, leaving what runs running, for a later call to
   * carry on with more stages.
   */
  async run(plan: ScopePlan, stageIds?: string[], until?: () => boolean): Promise<SchedulerStats> {
    this.plans.set(plan.scope, plan);
    const targets: StageRun[] = [];
    for (const spec of stageIds ? plan.stages : stagesRun(plan.stages)) {
      if (!stageIds || stageIds.includes(spec.id)) targets.push(await this.addStage(plan, spec.id));
    }
    for (;;) {
      if (targets.every((t) => this.isSettled(t)) || until?.()) return this.stats;
      for (const stage of this.stages.values()) {
        if (!stage.complete && !this.inputChecks.has(stage) && [...stage.deps].every((d) => this.isSettled(d))) await this.submitPending(stage);
      }
      // The stages sent run while the looks for lost inputs finish; then those that waited on them go.
      if (this.inputChecks.size > 0) await this.finishInputChecks();
      else {
        await this.wait();
        await this.poll();
      }
    }
  }

  /** Waits for the looks for lost inputs under way; a failure of one is thrown once all have settled. */
  private async finishInputChecks(): Promise<void> {
    const checks = [...this.inputChecks];
    const looks = await Promise.allSettled(checks.map(([, check]) => check));
    for (const [stage] of checks) this.inputChecks.delete(stage);
    for (const look of looks) if (look.status === 'rejected') throw look.reason;
  }

  /** Waits for a change (or the poll interval), draining the dead letters meanwhile when a drain is due (DEAD_LETTER_DRAIN_MS). */
  private async wait(): Promise<void> {
    const { clock, options } = this.deps;
    if (clock.now() - this.lastDrainAt < DEAD_LETTER_DRAIN_MS) return clock.sleep(options.pollMs);
    this.lastDrainAt = clock.now();
    // Both settle before either's failure is thrown, so that every dead letter drained is recorded.
    const [slept, drained] = await Promise.allSettled([clock.sleep(options.pollMs), this.handleDeadLetters()]);
    if (slept.status === 'rejected') throw slept.reason;
    if (drained.status === 'rejected') throw drained.reason;
  }

  /** Whether this scheduler runs (or ran) this stage under this plan. */
  runs(scope: Scope, stage: string, planHash: string): boolean {
    return this.stages.get(`${scope}/${stage}`)?.plan.planHash === planHash;
  }

  /** The plan this scheduler holds of a scope, if it is the one `planHash` names. */
  plan(scope: Scope, planHash: string): ScopePlan | undefined {
    const plan = this.plans.get(scope);
    return plan?.planHash === planHash ? plan : undefined;
  }

  /** The completion records of a scope's stages that this scheduler has seen done. */
  completions(scope: Scope): TaskDone[] {
    return [...this.stages.values()].filter((s) => s.plan.scope === scope).flatMap((s) => [...s.done.values()]);
  }

  /**
   * Records of a `collect` output, in partition order. They live in the cache tier, so a part
   * found missing is recomputed (its stage reruns for it) rather than skipped.
   */
  async collect(plan: ScopePlan, name: string): Promise<unknown[]> {
    const spec = stageOfOutput(plan.stages, name);
    if (!spec) throw new Error(`internal: no collect output ${name} in ${plan.scope}`);
    for (let round = 0; ; round++) {
      const records: unknown[] = [];
      const missing: number[] = [];
      for (let p = 0; p < spec.tasks; p++) {
        const bytes = await this.deps.store.get(keys.collected(plan.scope, name, p));
        if (bytes) decodeRecords(bytes, (r) => records.push(r));
        else missing.push(p);
      }
      if (missing.length === 0) return records;
      if (round >= this.deps.options.maxFetchFailures) throw new Error(`${plan.scope}: collected output ${name} keeps vanishing (partitions ${missing.join(', ')})`);
      const stage = await this.addStage(plan, spec.id);
      for (const p of missing) await this.invalidate(stage, p);
      await this.run(plan, [spec.id]);
    }
  }

  private isSettled(stage: StageRun): boolean {
    return stage.complete && [...stage.deps].every((d) => this.isSettled(d));
  }

  private async addStage(plan: ScopePlan, stageId: string, partitions?: number[]): Promise<StageRun> {
    const key = `${plan.scope}/${stageId}`;
    let stage = this.stages.get(key);
    const fresh = !stage;
    if (!stage) {
      const spec = plan.stages.find((s) => s.id === stageId);
      if (!spec) throw new Error(`internal: no stage ${stageId} in ${plan.scope}`);
      stage = new StageRun(plan, spec);
      this.stages.set(key, stage);
    }
    for (const p of partitions ?? range(stage.spec.tasks)) stage.needed.add(p);
    if (!fresh) return stage;

    for (const parent of stage.spec.parents) stage.deps.add(await this.addStage(plan, parent));
    // Persisted RDDs not written by a parent stage (of earlier scopes, or of this one for a
    // recovery stage): recompute the partitions that are gone, from lineage. Looked at while the
    // stages that do not wait for this one run (run() sends no task of it before the look is done).
    const reads = stage.spec.storedReads.filter((read) => {
      const writer = stageWriting(plan.stages, read.location);
      return !(writer && stage.spec.parents.includes(writer.id));
    });
    if (reads.length > 0) {
      const check = this.lastInputCheck.then(() => this.checkInputs(stage, reads));
      // Thrown where run() awaits it (finishInputChecks), not left unhandled meanwhile.
      this.lastInputCheck = check.catch(() => undefined);
      this.inputChecks.set(stage, check);
    }
    return stage;
  }

  private async checkInputs(stage: StageRun, reads: StageSpec['storedReads']): Promise<void> {
    for (const read of reads) {
      const present = this.deps.storedParts ? await this.deps.storedParts(read.location) : new Set((await listAll(this.deps.store, `${read.location}/`)).map((o) => o.key));
      const missing = range(read.partitions).filter((p) => !present.has(keys.persisted(read.location, p)));
      if (missing.length > 0) stage.deps.add(await this.recover(read.location, missing));
    }
  }

  /** Adds the stage of an earlier scope that writes `location`, for the partitions that are lost. */
  private async recover(location: string, partitions: number[]): Promise<StageRun> {
    const scope = scopeOfKey(`${location}/`);
    if (!scope) throw new Error(`internal: cannot tell which scope wrote ${location}`);
    let plan = this.plans.get(scope);
    if (!plan) {
      plan = await this.deps.loadScope(scope);
      this.plans.set(scope, plan);
    }
    // Its recovery stage when the stage writing it has other sinks; were that stage rerun, its
    // outputs are created if absent, so rewriting them would change nothing.
    const spec = stageRecovering(plan.stages, location);
    if (!spec) throw new Error(`lineage of ${scope} has no stage that writes ${location}`);
    // Their completion records say done, but the data is gone: forget them before rerunning.
    await mapConcurrently(partitions, STORE_CONCURRENCY, (p) => this.deps.store.delete(keys.taskDone(scope, spec.id, p)));
    this.stats.scopesRecovered.add(scope);
    this.stats.tasksRecomputed += partitions.length;
    const stage = await this.addStage(plan, spec.id, partitions);
    for (const p of partitions) stage.done.delete(p);
    return stage;
  }

  private async loadDone(stage: StageRun): Promise<void> {
    if (stage.loaded) return;
    stage.loaded = true;
    // A scope planned a moment ago has nothing in its task folders for this run to find (ScopePlan.fresh).
    if (stage.plan.fresh) return;
    await this.collectDone(stage);
    this.stats.tasksSkipped += stage.done.size;
  }

  private async collectDone(stage: StageRun): Promise<void> {
    const { store } = this.deps;
    const listed = await listAll(store, keys.taskDonePrefix(stage.plan.scope, stage.spec.id));
    for (const o of listed) {
      const started = parseTaskStarted(o.key);
      // Only this run's copies: a marker an earlier run's copy left says nothing of this run's.
      if (!started || started.run !== this.runId) continue;
      if (started.attempt === (stage.attempts.get(started.partition) ?? 0)) this.noteStart(stage, started.partition, o.lastModified);
    }
    const fresh = listed.filter((o) => {
      const p = partitionOfTaskDone(o.key);
      return p !== undefined && stage.needed.has(p) && !stage.done.has(p);
    });
    await this.readDone(stage, fresh.map((o) => o.key));
    // Only this run's: an earlier run's final failures were reported by that run, and this run sent the tasks afresh.
    const failedSuffix = `.failed-${this.runId}.json`;
    for (const o of listed) if (o.key.endsWith(failedSuffix)) await this.handleFinalFailure(stage, o.key);
  }

  /** A running task's first copy started at `at` (its marker's date). */
  private noteStart(stage: StageRun, p: number, at: number): void {
    const running = stage.running.get(p);
    if (!running || running.startedAt !== undefined) return;
    running.startedAt = at;
    this.lastProgressAt = this.deps.clock.now();
    // Markers dated to the second may precede the send by less than that.
    const latency = Math.max(0, at - running.sentAt);
    stage.maxStartLatency = Math.max(stage.maxStartLatency ?? 0, latency);
    this.recentStartLatencies.push(latency);
    if (this.recentStartLatencies.length > RECENT_START_LATENCIES) this.recentStartLatencies.shift();
  }

  /** Reads completion records (absent ones are skipped) into their stage. */
  private async readDone(stage: StageRun, doneKeys: string[]): Promise<void> {
    const records = await mapConcurrently(doneKeys, STORE_CONCURRENCY, (key) => this.deps.store.get(key));
    for (const bytes of records) if (bytes) this.noteDone(stage, JSON.parse(Buffer.from(bytes).toString('utf8')) as TaskDone);
  }

  private noteDone(stage: StageRun, done: TaskDone): void {
    if (!stage.needed.has(done.partition) || stage.done.has(done.partition)) return;
    stage.done.set(done.partition, done);
    stage.running.delete(done.partition);
    this.lastProgressAt = this.deps.clock.now();
  }

  /**
   * What the noticed tasks of running stages left: a settled task's completion record (given with
   * its notice, or read) or final failure, a started one's marker, each read by key. True when a
   * settled task left neither: it lost an input (a fetch failure) or failed a delivery, perhaps
   * its last (a dead letter).
   */
  private async collectNoticed(active: StageRun[], notices: TaskNotice[]): Promise<boolean> {
    const { store } = this.deps;
    const running = new Set(active);
    const settled = new Map<StageRun, Set<number>>();
    const starts = [...this.pendingStarts.values(), ...notices.filter((n) => n.event === 'started')];
    this.pendingStarts.clear();
    for (const n of notices) {
      const stage = this.stages.get(`${n.scope}/${n.stage}`);
      if (n.event !== 'settled' || !stage || !running.has(stage) || !stage.needed.has(n.partition) || stage.done.has(n.partition)) continue;
      if (n.done?.stage === n.stage && n.done.partition === n.partition) this.noteDone(stage, n.done);
      else settled.set(stage, (settled.get(stage) ?? new Set()).add(n.partition));
    }
    await mapConcurrently(starts, STORE_CONCURRENCY, async (n) => {
      const stage = this.stages.get(`${n.scope}/${n.stage}`);
      if (!stage || !running.has(stage) || stage.running.get(n.partition)?.startedAt !== undefined || !stage.running.has(n.partition)) return;
      const info = await store.head(keys.taskStarted(stage.plan.scope, stage.spec.id, n.partition, stage.attempts.get(n.partition) ?? 0, runInKey(this.runId)));
      if (info) this.noteStart(stage, n.partition, info.lastModified);
      else this.pendingStarts.set(`${n.scope}/${n.stage}#${n.partition}`, n);
    });
    let unexplained = false;
    for (const [stage, partitions] of settled) {
      const { scope } = stage.plan;
      await this.readDone(stage, [...partitions].map((p) => keys.taskDone(scope, stage.spec.id, p)));
      for (const p of partitions) {
        if (stage.done.has(p)) continue;
        const failed = keys.taskFailed(scope, stage.spec.id, p, runInKey(this.runId));
        if (await store.head(failed)) await this.handleFinalFailure(stage, failed);
        else unexplained = true;
      }
    }
    return unexplained;
  }

  private async submitPending(stage: StageRun): Promise<void> {
    await this.loadDone(stage);
    const tasks: TaskRecord[] = [];
    for (const p of [...stage.needed].sort((a, b) => a - b)) {
      if (stage.done.has(p) || stage.running.has(p)) continue;
      tasks.push(this.taskRecord(stage, p, 0));
      const now = this.deps.clock.now();
      stage.running.set(p, { sentAt: now, lastSentAt: now, copies: 1, resends: 0, speculated: false });
    }
    await this.send(tasks);
    this.stats.tasksLaunched += tasks.length;
  }

  private taskRecord(stage: StageRun, partition: number, copy: number): TaskRecord {
    const { plan, spec } = stage;
    const shuffleInputs: Record<string, BlockRef[]> = {};
    for (const [shuffle, reduced] of stageShuffleReads(plan.builder, spec, partition)) {
      const mapStage = this.stages.get(`${plan.scope}/${stageIds.shuffleMap(shuffle)}`)!;
      shuffleInputs[shuffle] = reduced.flatMap((r) =>
        range(mapStage.spec.tasks).map((m): BlockRef => {
          const out = mapStage.done.get(m)!.mapOutput!;
          const [start, end] = out.blocks[r]!;
          return [out.key, start, end];
        }),
      );
    }
    return {
      v: 1,
      pipeline: plan.pipeline,
      fingerprint: plan.fingerprint,
      scope: plan.scope,
      planHash: plan.planHash,
      stage: spec.id,
      partition,
      attempt: stage.attempts.get(partition) ?? 0,
      copy,
      run: this.runId,
      ...(Object.keys(shuffleInputs).length > 0 ? { shuffleInputs } : {}),
    };
  }

  private async send(tasks: TaskRecord[]): Promise<void> {
    if (tasks.length === 0) return;
    const bodies = await mapConcurrently(tasks, STORE_CONCURRENCY, (t) => encodeTaskMessage(this.deps.store, t));
    await this.deps.queue.send(bodies);
  }

  private async poll(): Promise<void> {
    const active = [...this.stages.values()].filter((s) => s.loaded && !s.complete);
    // Taken before a listing starts: what it sees, they would only repeat.
    const noticed = this.deps.notices?.takeNotices() ?? [];
    const listing = noticed.length === 0 || ++this.pollsSinceListing >= FULL_LISTING_POLLS;
    let unexplained = false;
    if (listing) {
      this.pendingStarts.clear();
      this.pollsSinceListing = 0;
      await Promise.all(active.map((s) => this.collectDone(s)));
    } else {
      unexplained = await this.collectNoticed(active, noticed);
    }
    // A task that lost an input leaves its fetch failure and settles without a completion record
    // (runTask), and its runner says so like any other: so a poll that read only the noticed tasks
    // looks for fetch failures when one of them left no record, and a listing poll always does.
    // Such a task may also have failed its last delivery: the dead letters are drained now too.
    if (unexplained) this.lastDrainAt = this.deps.clock.now();
    const scopes = listing || unexplained ? [...new Set(active.map((s) => s.plan.scope))] : [];
    // Independent looks, at once; a failure of either is thrown once both have settled, so that
    // every dead letter drained is recorded.
    const looks = await Promise.allSettled([
      (async () => {
        for (const scope of scopes) await this.handleFetchFailures(scope);
      })(),
      unexplained ? this.handleDeadLetters() : undefined,
    ]);
    for (const look of looks) if (look.status === 'rejected') throw look.reason;
    if (this.deps.options.speculation.enabled) await this.speculate(active);
    if (this.deps.options.unstarted.enabled) await this.resendUnstarted(active);
  }

  /** Copies tasks that were sent but have not started by their deadline (see UnstartedOptions). */
  private async resendUnstarted(active: StageRun[]): Promise<void> {
    const { multiplier, minMs } = this.deps.options.unstarted;
    const stages = [...this.stages.values()];
    if (stages.some((s) => [...s.running.values()].some((r) => r.startedAt !== undefined))) return;
    const now = this.deps.clock.now();
    const recent = this.recentStartLatencies.length > 0 ? Math.max(...this.recentStartLatencies) : 0;
    const copies: TaskRecord[] = [];
    for (const stage of active) {
      if (![...stage.deps].every((d) => this.isSettled(d))) continue;
      const deadline = Math.max(minMs, multiplier * (stage.maxStartLatency ?? recent));
      // Workers that just finished something are taking tasks: a waiting one is queued, not lost.
      if (now - this.lastProgressAt <= deadline) continue;
      for (const [p, running] of stage.running) {
        if (running.startedAt !== undefined || now - running.lastSentAt <= deadline * 2 ** running.resends) continue;
        running.copies++;
        running.resends++;
        running.lastSentAt = now;
        copies.push(this.taskRecord(stage, p, running.copies - 1));
      }
    }
    await this.send(copies);
    this.stats.unstartedResent += copies.length;
  }

  /** A task found an input gone: rerun what wrote it, then the task, with a new attempt number. */
  private async handleFetchFailures(scope: Scope): Promise<void> {
    const { store, options } = this.deps;
    for (const info of await listAll(store, keys.fetchFailedPrefix(scope))) {
      if (this.seenFailures.has(info.key)) continue;
      this.seenFailures.add(info.key);
      const bytes = await store.get(info.key);
      if (!bytes) continue;
      const failure = JSON.parse(Buffer.from(bytes).toString('utf8')) as { stage: string; partition: number; attempt: number; missing: string[] };
      const stage = this.stages.get(`${scope}/${failure.stage}`);
      if (!stage || stage.done.has(failure.partition)) continue;
      if (failure.attempt < (stage.attempts.get(failure.partition) ?? 0)) continue;
      this.stats.fetchFailures++;
      const attempt = failure.attempt + 1;
      if (attempt > options.maxFetchFailures) {
        throw new Error(`${scope} stage ${failure.stage} partition ${failure.partition} lost its inputs ${attempt} times: ${failure.missing.join(', ')}`);
      }
      stage.attempts.set(failure.partition, attempt);
      stage.running.delete(failure.partition);
      for (const key of failure.missing) stage.deps.add(await this.rerunProducer(key));
    }
  }

  private async rerunProducer(key: string): Promise<StageRun> {
    const shuffle = parseShuffleMap(key);
    if (shuffle) {
      const stage = this.stages.get(`${shuffle.scope}/map-${shuffle.rdd}`);
      if (!stage) throw new Error(`internal: no map stage wrote ${key}`);
      await this.invalidate(stage, shuffle.map);
      return stage;
    }
    const stored = parsePersisted(key);
    if (!stored) throw new Error(`internal: cannot tell what wrote ${key}`);
    const here = [...this.stages.values()].find((s) => writesLocation(s.spec, stored.location));
    if (here) {
      await this.invalidate(here, stored.partition);
      return here;
    }
    return this.recover(stored.location, [stored.partition]);
  }

  private async invalidate(stage: StageRun, partition: number): Promise<void> {
    stage.done.delete(partition);
    stage.running.delete(partition);
    stage.needed.add(partition);
    await this.deps.store.delete(keys.taskDone(stage.plan.scope, stage.spec.id, partition));
    this.stats.tasksRecomputed++;
  }

  /** A copy of this run failed with an error that recurs on every delivery: the scope fails now. */
  private async handleFinalFailure(stage: StageRun, key: string): Promise<void> {
    const failure = await readJson<TaskFailure>(this.deps.store, key);
    if (!failure || !stage.needed.has(failure.partition) || stage.done.has(failure.partition)) return;
    throw new TaskFailedError(stage.plan.scope, failure.stage, failure.partition, failure.receiveCount, failure.error, true, failure.record);
  }

  /**
   * Every letter drained is recorded before any fails the scope, so none is dropped unseen. A
   * letter of this run's copy fails its scope; one of an earlier run's (left in the queue when that
   * run failed or stopped) is kept as history, since this run sent the task afresh.
   */
  private async handleDeadLetters(): Promise<void> {
    const { store, queue } = this.deps;
    let failed: TaskFailedError | undefined;
    for (const letter of await queue.drainDeadLetters(10)) {
      let task: TaskRecord;
      try {
        task = await decodeTaskMessage(store, letter.body);
      } catch (error) {
        await keepUnreadableMessage(store, letter, error);
        continue;
      }
      const found = this.stages.get(`${task.scope}/${task.stage}`);
      // A letter of another plan of the scope (a stale run's message) fails nothing of this one.
      const stage = found?.plan.planHash === task.planHash ? found : undefined;
      if (!stage && this.deps.elsewhere?.(task.scope, task.stage, task.planHash)) continue;
      if (stage?.done.has(task.partition)) continue;
      // The task's own record of its last error, else why it was refused (a message no delivery could run).
      const recorded = await readJson<Pick<TaskFailure, 'error' | 'record'>>(store, keys.taskError(task.scope, task.stage, task.partition));
      const lastError = recorded?.error ?? letter.reason;
      const record = JSON.stringify(
        { id: letter.id, run: task.run, scope: task.scope, stage: task.stage, partition: task.partition, attempt: task.attempt, copy: task.copy, receiveCount: letter.receiveCount, lastError, badRecord: recorded?.record, task },
        null,
        2,
      );
      if (stage === undefined || task.run !== this.runId) {
        await store.put(keys.earlierDeadLetter(task.scope, task.stage, task.partition, letter.id), record);
        continue;
      }
      const key = keys.deadLetter(task.scope, task.stage, task.partition);
      const earlier = await readJson<{ id?: string; run?: string }>(store, key);
      // The record an earlier run failed on stays, as history beside this run's.
      if (earlier && earlier.run !== this.runId) await store.put(keys.earlierDeadLetter(task.scope, task.stage, task.partition, earlier.id ?? earlier.run ?? 'unknown'), JSON.stringify(earlier, null, 2));
      await store.put(key, record);
      failed ??= new TaskFailedError(task.scope, task.stage, task.partition, letter.receiveCount, lastError, false, recorded?.record);
    }
    if (failed) throw failed;
  }

  /** Duplicates tasks far slower than their stage's median; the first copy to finish wins. */
  private async speculate(active: StageRun[]): Promise<void> {
    const { quantile, multiplier, minMs } = this.deps.options.speculation;
    const now = this.deps.clock.now();
    const copies: TaskRecord[] = [];
    for (const stage of active) {
      // A duplicate needs the same inputs as the original: not while an input is being rebuilt.
      if (![...stage.deps].every((d) => this.isSettled(d))) continue;
      if (stage.running.size === 0 || stage.done.size < Math.max(1, Math.ceil(quantile * stage.needed.size))) continue;
      const durations = [...stage.done.values()].map((d) => d.durationMs).sort((a, b) => a - b);
      const median = durations[Math.floor(durations.length / 2)]!;
      const threshold = Math.max(minMs, multiplier * median);
      for (const [p, running] of stage.running) {
        if (running.speculated || running.startedAt === undefined || now - running.startedAt <= threshold) continue;
        running.speculated = true;
        running.copies++;
        copies.push(this.taskRecord(stage, p, running.copies - 1));
      }
    }
    await this.send(copies);
    this.stats.speculativeLaunched += copies.length;
  }
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}

/** A run's id: hex, as tasks may put it in a key. */
export function newRunId(): string {
  return randomBytes(6).toString('hex');
}
