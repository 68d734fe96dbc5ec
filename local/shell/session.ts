import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { inspect } from 'node:util';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { readJson } from '../../core/ports/object-store.ts';
import type { Clock } from '../../core/ports/clock.ts';
import { BatchContext, type Pipeline } from '../../core/graph/pipeline.ts';
import { PlanBuilder, Rdd } from '../../core/rdd/rdd.ts';
import { intervalOf, intervalScope, keys, streamOfPersistLocation, type Scope } from '../../core/layout.ts';
import { planFromRecord, readLineageRecord, type LineageRecord } from '../../core/streaming/lineage.ts';
import { defaultSchedulerOptions, type ScopePlan } from '../../core/scheduler/dag-scheduler.ts';
import { runBatch } from '../../core/batch/batch-runner.ts';
import { ScratchStore } from '../../core/query/scratch-store.ts';
import { queryModules } from '../../core/query/query-modules.ts';
import { TaskHandler } from '../../core/runtime/task-handler.ts';
import { isRddRef, queryJob, type QueryNode, type QuerySpec, type ShippedFunction } from '../../core/query/query-job.ts';
import { siblingModule } from '../package-files.ts';
import { FsTaskQueue } from '../queue/fs-task-queue.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { sessionTaskQueue } from '../../core/query/query-message.ts';
import { bundlePipeline, uploadQueryCode } from './query-code.ts';
import { WorkerPool } from '../runtime/worker-pool.ts';
import { InProcessRunner } from '../runtime/in-process-runner.ts';
import type { CompiledPipeline } from '../runtime/pipeline-bundle.ts';
import { defaultWorkers } from '../runtime/embedded-runtime.ts';

export interface SessionOptions {
  /** The stream's store: read, never written but for the session's scratch (ScratchStore). */
  store: ObjectStore;
  /**
   * A local root: queries run on worker processes over it. Without one (a bucket) tasks run in
   * this process, on the same store.
   */
  root?: string;
  workers?: number;
  /** Input splits of a query's sources; default twice the workers. */
  partitions?: number;
  /**
   * The stream's pipeline, to recompute from lineage the state the cache no longer holds
   * (`sc.state`); only the code that planned an interval may recompute it. With a root, also
   * `compiled`, the same code compiled as the runtime compiles it (compilePipeline), which the
   * worker processes load: the fingerprint hashes the operators' compiled code. On Lambda, also
   * `pipelinePath`, its module, which is bundled for the query function.
   */
  pipeline?: Pipeline;
  compiled?: CompiledPipeline;
  pipelinePath?: string;
  /**
   * The value of a session variable a shipped function uses, by name, or undefined when the
   * session has none of that name (the REPL's context).
   */
  lookup?: (name: string) => { value: unknown } | undefined;
  /**
   * Run tasks on the query function of the bucket's deployment (the construct's
   * `interactiveQueries`), not in this process: `queue(session)` is its query queue, draining only
   * the session's dead letters. A pipeline (with `pipelinePath`) is bundled and sent to it; the
   * store must be the bucket from its top, as the function reads it.
   */
  onLambda?: { queue: (session: string) => TaskQueue };
}

/** A range of intervals: both ends included; an end left out is the first, or the last committed when the query runs. */
export interface IntervalRange {
  from?: number;
  to?: number;
}

export class QueryCancelledError extends Error {
  constructor() {
    super('query cancelled');
    this.name = 'QueryCancelledError';
  }
}

/**
 * An RDD in a session: the whole RDD API (each transformation answers another of these), with
 * Spark's actions running the query and answering its records. Typed loosely: the shell strips
 * types rather than checking them.
 */
export interface QueryRdd<T = any> {
  collect(): Promise<T[]>;
  count(): Promise<number>;
  take(n: number): Promise<T[]>;
  first(): Promise<T | undefined>;
  top(n: number, compare?: (a: T, b: T) => number): Promise<T[]>;
  takeOrdered(n: number, compare?: (a: T, b: T) => number): Promise<T[]>;
  countByKey(): Promise<[unknown, number][]>;
  countByValue(): Promise<[T, number][]>;
  [transformation: string]: any;
}

/** Actions: the RDD method each runs, and what of its records it answers. */
const ACTIONS: Record<string, { call?: string; answer: (records: unknown[]) => unknown }> = {
  collect: { answer: (r) => r },
  take: { call: 'take', answer: (r) => r },
  top: { call: 'top', answer: (r) => r },
  takeOrdered: { call: 'takeOrdered', answer: (r) => r },
  countByKey: { call: 'countByKey', answer: (r) => r },
  countByValue: { call: 'countByValue', answer: (r) => r },
  first: { call: 'first', answer: (r) => r[0] },
  count: { call: 'count', answer: (r) => r[0] ?? 0 },
};

/**
 * What the session runs queries on, started at its first query and kept until it closes: its
 * workers and their queue in a temporary folder, or the query function's queue and the code sent it.
 */
interface Runner {
  queue: TaskQueue;
  stop(): Promise<void>;
}

/** How the option that gives the session its pipeline is named where the session is made (the CLI's). */
export const PIPELINE_OPTION = '--pipeline <file>';

/** What a query may not do: it writes nothing, and runs nothing on the workers but to answer. */
const REFUSED = new Set(['saveAsTextFile', 'saveAsJsonFile', 'foreachPartition']);

const INDEX = Symbol('query node');

/**
 * An interactive session over a stream's store: `sc` builds RDDs over its committed outputs, its
 * uploads and its operators' persisted state, and each action runs as a batch run of its own on
 * the workers, its scratch under `queries/<session>/`, deleted when it ends. One query runs at a
 * time. The workers start with the session's first query (or `warm()`) and serve every query
 * until `close()`: a cancelled query's workers are stopped, and the next query starts new ones.
 */
export class QuerySession {
  readonly sc: ShellContext;
  readonly id: string;
  /** Every RDD built in the session, in order; a query ships those its result depends on. */
  private readonly nodes: QueryNode[] = [];
  private readonly builder = new PlanBuilder(4);
  private readonly context = new BatchContext(this.builder, () => []);
  private running?: AbortController;
  private started?: Promise<Runner>;
  /** Where every query of the session keeps its scratch, one query at a time. */
  private readonly scratch: ScratchStore;

  constructor(readonly options: SessionOptions) {
    if (options.pipeline && options.root !== undefined && options.compiled === undefined) {
      throw new Error('a session over a root that is given a pipeline needs it compiled too (compiled), for the worker processes');
    }
    if (options.pipeline && options.onLambda && options.pipelinePath === undefined) {
      throw new Error('a session on Lambda that is given a pipeline needs its module path too (pipelinePath), to bundle it for the query function');
    }
    if (options.root !== undefined && options.onLambda) throw new Error('a session runs on worker processes over a root, or on the query function of a bucket: not both');
    if (options.pipeline && options.pipeline.kind !== 'stream') throw new Error(`${options.pipeline.options.name} is a batch job; recomputing a stream's state needs the stream's pipeline`);
    this.id = `${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    this.scratch = new ScratchStore(options.store, this.id);
    this.sc = new ShellContext(this);
  }

  /** The store as queries see it. */
  get store(): ObjectStore {
    return this.options.store;
  }

  /** True for an RDD of this session. */
  isRdd(value: unknown): boolean {
    return typeof value === 'object' && value !== null && REAL.has(value);
  }

  /** Stops the running query, if any: its promise rejects with QueryCancelledError. */
  cancel(): boolean {
    if (!this.running) return false;
    this.running.abort(new QueryCancelledError());
    return true;
  }

  /** The RDD for node `node`, built here too so mistakes show at once, not on the workers. */
  add(real: Rdd<unknown>, node: QueryNode): QueryRdd {
    const index = this.nodes.push(node) - 1;
    const session = this;
    const proxy = new Proxy(real, {
      get(target, prop) {
        if (prop === INDEX) return index;
        if (prop === inspect.custom) return () => `Rdd ${target.id}: ${target.node.label} (an action runs it: collect(), take(n), count(), countByKey(), top(n))`;
        if (typeof prop === 'string' && Object.hasOwn(ACTIONS, prop)) return (...args: unknown[]) => session.action(index, prop, args);
        if (typeof prop === 'string' && REFUSED.has(prop)) {
          return () => {
            throw new Error(`${prop} is not available in a query: queries read the stream and write nothing; bring the records back with collect() or take(n)`);
          };
        }
        const value = Reflect.get(target, prop, target) as unknown;
        if (typeof value !== 'function') return value;
        return (...args: unknown[]) => {
          const encoded = args.map((a) => session.encode(a, prop));
          const out = (value as Function).apply(target, args.map(unwrap)) as unknown;
          return out instanceof Rdd ? session.add(out, { call: String(prop), target: index, args: encoded }) : out;
        };
      },
    });
    REAL.set(proxy, real);
    return proxy as unknown as QueryRdd;
  }

  source(node: Exclude<QueryNode, { call: string }>): QueryRdd {
    const sc = this.context;
    const real =
      node.source === 'output'
        ? node.format === 'json'
          ? sc.slice(node.output, node.from, Math.max(node.from, node.to))
          : sc.sliceText(node.output, node.from, Math.max(node.from, node.to))
        : node.source === 'files'
          ? node.format === 'json'
            ? sc.jsonFile(node.prefix)
            : sc.textFile(node.prefix)
          : node.source === 'values'
            ? sc.parallelize(node.data, node.partitions)
            : this.builder.stored(node.location, node.tier, node.partitions, node.hashPartitioned, node.label);
    return this.add(real as Rdd<unknown>, node);
  }

  /** The last committed interval, or -1: the set a query reads, taken once when it starts. */
  async lastCommitted(): Promise<number> {
    const progress = await readJson<{ next: number }>(this.store, keys.driverProgress);
    for (let k = (progress?.next ?? 0) - 1; k >= 0; k--) if (await this.store.head(keys.committed(intervalScope(k)))) return k;
    return -1;
  }

  /** The query that answers `action` on node `index`: the nodes it depends on, renumbered, with open ranges closed at `last`. */
  spec(index: number, action: { call?: string; args: unknown[] }, last: number): QuerySpec {
    const needed = new Set<number>();
    const visit = (i: number) => {
      if (needed.has(i)) return;
      needed.add(i);
      const node = this.nodes[i]!;
      if ('call' in node) {
        visit(node.target);
        JSON.stringify(node.args, (_, v) => (isRddRef(v) ? (visit(v.$rdd), v) : v));
      }
    };
    visit(index);
    const order = [...needed].sort((a, b) => a - b);
    const renumber = new Map(order.map((old, i) => [old, i]));
    const nodes: QueryNode[] = order.map((old) => {
      const node = this.nodes[old]!;
      if ('call' in node) {
        const args = JSON.parse(JSON.stringify(node.args), (_, v) => (isRddRef(v) ? { $rdd: renumber.get(v.$rdd)! } : v)) as unknown[];
        return { ...node, target: renumber.get(node.target)!, args };
      }
      if (node.source === 'output' && node.to < 0) {
        if (last < 0) throw new Error(`output ${node.output}: the stream has committed no interval yet`);
        return { ...node, to: last };
      }
      return node;
    });
    let result = renumber.get(index)!;
    if (action.call) {
      nodes.push({ call: action.call, target: result, args: action.args.map((a) => this.encode(a, action.call!)) });
      result = nodes.length - 1;
    }
    return { nodes, result };
  }

  /** Runs a query: the records of `action` on node `index`, computed on the workers. */
  async action(index: number, name: string, args: unknown[]): Promise<unknown> {
    if (this.running) throw new Error('a query is running: one at a time (Ctrl-C cancels it)');
    const { call, answer } = ACTIONS[name]!;
    const controller = new AbortController();
    this.running = controller;
    try {
      const spec = this.spec(index, { ...(call ? { call } : {}), args }, await this.lastCommitted());
      return answer(await this.runSpec(spec, controller.signal));
    } finally {
      this.running = undefined;
    }
  }

  private async runSpec(spec: QuerySpec, signal: AbortSignal): Promise<unknown[]> {
    const job = queryJob(spec);
    const { queue } = await this.warm();
    const store = this.scratch;
    try {
      // Where the workers find the query's code: they serve the session, not one query.
      await store.put(keys.querySpec(job.fingerprint), JSON.stringify(spec));
      const workers = this.options.workers ?? defaultWorkers();
      const config = { inputPartitions: this.options.partitions ?? workers * 2, maxSplitBytes: 64 * 1024 * 1024, scheduler: defaultSchedulerOptions };
      const result = await runBatch(job, { store, queue, clock: cancellable(signal), loadScope: (scope) => this.loadScope(scope) }, config);
      return result.collected.result ?? [];
    } finally {
      // A cancelled query's tasks may still be running: its workers go with them, before its scratch.
      if (signal.aborted) await this.stopRunner();
      await store.clear();
    }
  }

  /** An interval's plan, rebuilt from its lineage record, to recompute what its cache lost. */
  private async loadScope(scope: Scope): Promise<ScopePlan> {
    const k = intervalOf(scope);
    const record = k === undefined ? undefined : await readLineageRecord(this.store, k);
    if (!record) throw new Error(`a query needs data of ${scope} that is gone, and ${scope} has no lineage record to recompute it from`);
    const gone = `a query needs data of ${scope} that is gone`;
    if (!this.options.pipeline) throw new Error(`${gone}: give the stream's pipeline (${PIPELINE_OPTION}) to recompute it from lineage`);
    this.checkRan(record, gone);
    return planFromRecord(this.options.pipeline, record);
  }

  /** Refuses to recompute an interval with code other than the code that planned it: after an upgrade, its intervals before need the code before. */
  checkRan(record: LineageRecord, gone: string): void {
    const { pipeline } = this.options;
    if (pipeline && (pipeline.options.name !== record.pipeline || pipeline.fingerprint !== record.fingerprint)) {
      throw new Error(
        `${gone}, and ${PIPELINE_OPTION} is not the code that ran it: interval ${record.interval} was planned by ${record.pipeline} (fingerprint ${record.fingerprint}), ` +
          `the given pipeline is ${pipeline.options.name} (fingerprint ${pipeline.fingerprint}); give the pipeline the stream ran then`,
      );
    }
  }

  /**
   * The session's workers and queue, started at the first call: worker processes over a root
   * (each loads the session's modules once), tasks in this process over a bucket.
   */
  warm(): Promise<Runner> {
    if (!this.started) {
      const started = this.startRunner();
      this.started = started;
      // A failed start is reported to the query that awaits it, and the next query tries again.
      started.catch(() => {
        if (this.started === started) this.started = undefined;
      });
    }
    return this.started;
  }

  private async startRunner(): Promise<Runner> {
    if (this.options.onLambda) return this.startOnLambda(this.options.onLambda.queue(this.id));
    const dir = await mkdtemp(path.join(tmpdir(), 'dstream-query-'));
    const workers = this.options.workers ?? defaultWorkers();
    const queue = new FsTaskQueue({ dir: path.join(dir, 'queue'), maxReceives: 4 });
    let runner: WorkerPool | InProcessRunner | undefined;
    try {
      await queue.ready();
      if (this.options.root !== undefined) {
        const modulePath = await this.writeModules(dir);
        runner = new WorkerPool(queue, { workers, pipelinePath: modulePath, pipeline: { file: modulePath, typescript: this.options.compiled?.typescript ?? false }, root: this.options.root, taskTimeoutMs: 120_000, retryDelayMs: 20, scratch: this.id });
      } else {
        runner = new InProcessRunner(queue, new TaskHandler(queryModules(this.options.pipeline), this.scratch, { executor: 'in-process' }), workers);
      }
      await runner.start();
      const started = runner;
      return {
        queue,
        stop: async () => {
          await started.stop();
          await queue.close();
          await rm(dir, { recursive: true, force: true });
        },
      };
    } catch (error) {
      await runner?.stop().catch(() => {});
      await queue.close();
      await rm(dir, { recursive: true, force: true });
      throw error;
    }
  }

  /**
   * The query function runs the tasks (the harness of test/query/on-lambda.test.ts stands in for
   * Lambda there): each message names the session, and the code sent for the pipeline, if any,
   * which is removed when the session stops.
   */
  private async startOnLambda(queue: TaskQueue): Promise<Runner> {
    const { pipelinePath, pipeline } = this.options;
    let code: string | undefined;
    if (pipeline && pipelinePath !== undefined) code = await uploadQueryCode(this.store, this.id, await bundlePipeline(pipelinePath));
    const codeKey = code === undefined ? undefined : keys.queryCode(this.id, code);
    return { queue: sessionTaskQueue(queue, this.id, code), stop: async () => void (codeKey !== undefined && (await this.store.delete(codeKey))) };
  }

  /** The module the worker processes load: the session's queryModules, with the stream's pipeline if given. */
  private async writeModules(dir: string): Promise<string> {
    const modules = pathToFileURL(siblingModule(import.meta.url, '../../core/query/query-modules')).href;
    const compiled = this.options.pipeline ? this.options.compiled : undefined;
    const lines = [`import { queryModules } from ${JSON.stringify(modules)};`];
    if (compiled === undefined) {
      lines.push('export default queryModules();');
    } else {
      lines.push(`import pipeline from ${JSON.stringify(pathToFileURL(compiled.file).href)};`, 'export default queryModules(pipeline);');
    }
    const modulePath = path.join(dir, 'session.mjs');
    await writeFile(modulePath, lines.join('\n') + '\n');
    return modulePath;
  }

  private async stopRunner(): Promise<void> {
    const started = this.started;
    this.started = undefined;
    const warm = await started?.catch(() => undefined);
    await warm?.stop();
  }

  /** Stops the session's workers and removes its scratch: the end of the shell, or of a query script. */
  async close(): Promise<void> {
    this.cancel();
    await this.stopRunner();
    await this.scratch.clear();
  }

  /** An argument as the workers get it: functions with the values they use, RDDs by node. */
  encode(value: unknown, where: string | symbol): unknown {
    if (typeof value === 'function') return this.ship(value, String(where), new Set());
    if (value instanceof Rdd) {
      const index = (value as unknown as Record<symbol, number | undefined>)[INDEX];
      if (index === undefined) throw new Error(`${String(where)}: that RDD does not belong to this session`);
      return { $rdd: index };
    }
    if (Array.isArray(value)) return value.map((v) => this.encode(v, where));
    if (value !== null && typeof value === 'object') {
      if (!isPlain(value)) throw new Error(`${String(where)}: a ${value.constructor?.name ?? 'value'} cannot be sent to the workers; give JSON values and functions`);
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.encode(v, where)]));
    }
    return value;
  }

  /**
   * A function as the workers get it: its source, and the session's variables it names with their
   * values now (as Spark serialises a closure when it is given). A variable holding anything but
   * JSON values or functions is refused, naming it.
   */
  private ship(fn: Function, where: string, seen: Set<Function>): ShippedFunction {
    const source = fn.toString();
    if (/\{\s*\[native code\]\s*\}$/.test(source)) {
      throw new Error(`${where}: ${fn.name || 'a built-in function'} is built in, so its source cannot be sent to the workers; wrap it: (x) => ${fn.name || 'f'}(x)`);
    }
    seen.add(fn);
    const env: Record<string, unknown> = {};
    for (const name of freeNameCandidates(source)) {
      const found = this.options.lookup?.(name);
      if (!found) continue;
      const { value } = found;
      if (typeof value === 'function') {
        if (seen.has(value)) continue;
        env[name] = this.ship(value, where, seen);
      } else if (value instanceof Rdd) {
        throw new Error(`${where}: a function uses the RDD ${name}; as in Spark, an RDD cannot be used inside another's function (join them instead)`);
      } else if (isJson(value)) {
        env[name] = value;
      } else {
        throw new Error(`${where}: a function uses the variable ${name}, a ${describe(value)}, which cannot be sent to the workers: they get the session's JSON values and functions`);
      }
    }
    return { $fn: source, env };
  }
}

/** `sc` in the shell: a stream's data as RDDs. */
export class ShellContext {
  constructor(private readonly session: QuerySession) {}

  /** The committed intervals now, as `{ first, last }` (undefined when none is). */
  async intervals(): Promise<{ first: number; last: number } | undefined> {
    const last = await this.session.lastCommitted();
    return last < 0 ? undefined : { first: 0, last };
  }

  /**
   * The records the stream wrote to JSON output `name` (saveAsJsonFiles) at committed intervals
   * `from` to `to`, both included; `to` left out is the last committed when the query runs.
   */
  output<T = any>(name: string, range: IntervalRange = {}): QueryRdd<T> {
    return this.session.source({ source: 'output', format: 'json', output: name, ...bounds(range) });
  }

  /** As `output`, for an output written by saveAsTextFiles: one record per line. */
  outputText(name: string, range: IntervalRange = {}): QueryRdd<string> {
    return this.session.source({ source: 'output', format: 'text', output: name, ...bounds(range) });
  }

  /** Lines of every object under `prefix` (`incoming/`, `intake/uploads/`, any prefix), as a batch job's textFile. */
  textFile(prefix: string): QueryRdd<string> {
    return this.session.source({ source: 'files', format: 'text', prefix });
  }

  jsonFile<T = any>(prefix: string): QueryRdd<T> {
    return this.session.source({ source: 'files', format: 'json', prefix });
  }

  parallelize<T>(values: T[], partitions = 1): QueryRdd<T> {
    return this.session.source({ source: 'values', data: values, partitions });
  }

  /**
   * What a persisted operator kept at committed interval `k`: a stateful operator's state
   * (`updateStateByKey`, `mapWithState`, a window's), or a `cache()`d stream. Named by the output
   * it feeds (`'totals'` for `….updateStateByKey(…).saveAsJsonFiles('totals')`) or by its stream
   * id (`s7`, as `dstream lineage` shows). Read from the checkpoint, or from the cache while the
   * driver keeps it; partitions the cache no longer holds are recomputed from the interval's
   * lineage when the query runs, in the query's scratch, with the session's pipeline, which
   * must be the code that planned interval `k`.
   */
  async state<T = any>(name: string, k: number): Promise<QueryRdd<T>> {
    const store = this.session.store;
    if (!Number.isInteger(k) || k < 0) throw new RangeError(`state of ${name}: the interval must be a whole number >= 0, got ${k}`);
    const record = await readLineageRecord(store, k);
    if (!record || !(await store.head(keys.committed(intervalScope(k))))) throw new Error(`state of ${name}: interval ${k} is not committed`);
    const stream = streamOf(record, name);
    const persist = record.persists.find((p) => p.location.endsWith(`/persist/${stream}`));
    const partitions = record.persistedHere[stream];
    if (!persist || partitions === undefined) throw new Error(`state of ${name}: stream ${stream} has no RDD at interval ${k} (a window's state exists at its slides only)`);
    const lost = [];
    for (let p = 0; p < partitions; p++) if (!(await store.head(keys.persisted(persist.location, p)))) lost.push(p);
    if (lost.length > 0) {
      const { pipeline } = this.session.options;
      const gone =
        `state of ${name} at interval ${k}: ${lost.length} of ${partitions} partitions of ${persist.location} are gone (the driver drops the cache ` +
        `of intervals recovery no longer needs, and checkpoints every checkpointEvery intervals)`;
      if (!pipeline) throw new Error(`${gone}; give the stream's pipeline (${PIPELINE_OPTION}) to recompute them from lineage`);
      this.session.checkRan(record, gone);
    }
    const node = record.plan.find((n) => n.kind === 'stored' && (n as { location: string }).location === persist.location) as { hashPartitioned?: boolean } | undefined;
    return this.session.source({
      source: 'stored',
      location: persist.location,
      tier: persist.tier as 'cache' | 'checkpoint',
      partitions,
      hashPartitioned: !!node?.hashPartitioned,
      label: `state of ${name} at interval ${k}`,
    });
  }
}

/** The stream id behind `name`: an id as it is, or the persisted stream an output writes. */
function streamOf(record: LineageRecord, name: string): string {
  const persisted = record.persists.map((p) => streamOfPersistLocation(p.location)!);
  if (persisted.includes(name)) return name;
  const output = record.outputs.find((o) => o.name === name);
  const stream = output && storedStreamBehind(record, output.rdd);
  if (stream) return stream;
  const known = record.outputs.filter((o) => storedStreamBehind(record, o.rdd) !== undefined);
  throw new Error(
    `no state named ${name} at ${record.scope}: name an output a stateful operator writes (${known.map((o) => o.name).join(', ') || 'none here'}) or a persisted stream (${persisted.join(', ') || 'none here'})`,
  );
}

/**
 * The persisted stream an RDD reads through narrow steps only: a stored state itself, or what
 * mapWithState emits and its snapshots, each one narrow step from its stored entries.
 */
function storedStreamBehind(record: LineageRecord, rdd: string): string | undefined {
  for (let node = record.plan.find((n) => n.id === rdd); node; node = node.kind === 'narrow' ? record.plan.find((n) => n.id === node!.parent) : undefined) {
    if (node.kind === 'stored') return streamOfPersistLocation(node.location);
  }
  return undefined;
}

function bounds(range: IntervalRange): { from: number; to: number } {
  const from = range.from ?? 0;
  if (!Number.isInteger(from) || from < 0) throw new RangeError(`from must be a whole number >= 0, got ${range.from}`);
  if (range.to === undefined) return { from, to: -1 };
  if (!Number.isInteger(range.to) || range.to < from) throw new RangeError(`to must be a whole number >= from (${from}), got ${range.to}`);
  return { from, to: range.to };
}

/** The RDDs behind the session's proxies: what the shell's own plan is built from. */
const REAL = new WeakMap<object, Rdd<unknown>>();

function unwrap(value: unknown): unknown {
  if (typeof value === 'object' && value !== null) {
    const real = REAL.get(value);
    if (real) return real;
    if (Array.isArray(value)) return value.map(unwrap);
  }
  return value;
}

/** A clock whose sleep throws once the query is cancelled: the scheduler's polling stops there. */
function cancellable(signal: AbortSignal): Clock {
  return {
    now: () => Date.now(),
    sleep: (ms) =>
      new Promise((resolve, reject) => {
        if (signal.aborted) return reject(signal.reason);
        const timer = setTimeout(() => (signal.removeEventListener('abort', stop), resolve()), ms);
        const stop = () => (clearTimeout(timer), reject(signal.reason));
        signal.addEventListener('abort', stop, { once: true });
      }),
  };
}

const KEYWORDS = new Set(
  ('break case catch class const continue debugger default delete do else export extends false finally for function if import in instanceof let new null ' +
    'return super switch this throw true try typeof var void while with yield async await of static get set undefined arguments').split(' '),
);
const GLOBALS = new Set(Object.getOwnPropertyNames(globalThis));

/** Names a function's source may use from outside it: identifiers not after a dot, outside strings and comments. */
function freeNameCandidates(source: string): Set<string> {
  const code = source.replace(/'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*"|\/\/[^\n]*|\/\*[\s\S]*?\*\//g, ' ');
  const names = new Set<string>();
  for (const m of code.matchAll(/(?<![.$\w])[A-Za-z_$][\w$]*/g)) if (!KEYWORDS.has(m[0]) && !GLOBALS.has(m[0])) names.add(m[0]);
  return names;
}

function isPlain(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function isJson(value: unknown): boolean {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return true;
  if (typeof value === 'number') return Number.isFinite(value);
  if (Array.isArray(value)) return value.every(isJson);
  return typeof value === 'object' && isPlain(value) && Object.values(value).every(isJson);
}

function describe(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'object' && value !== null) return value.constructor?.name ?? 'object';
  return typeof value;
}
