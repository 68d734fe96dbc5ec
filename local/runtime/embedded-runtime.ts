import { cpus } from 'node:os';
import path from 'node:path';
import { lstat, readdir } from 'node:fs/promises';
import type { Clock } from '../../core/ports/clock.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { PipelineModule } from '../../core/runtime/task-handler.ts';
import { StreamingDriver, type DriverConfig, type IntervalReport } from '../../core/streaming/driver.ts';
import { checkMaxIntervalsInFlight, DEFAULT_EMBEDDED_INTERVALS_IN_FLIGHT, IntervalPipeline } from '../../core/streaming/interval-pipeline.ts';
import { admitUpload, isSealed, type IntakeUpload, type UploadCheck } from '../../core/streaming/intake.ts';
import { intervalEnd } from '../../core/streaming/progress.ts';
import { defaultSchedulerOptions, type SchedulerOptions } from '../../core/scheduler/dag-scheduler.ts';
import { runBatch, type BatchResult } from '../../core/batch/batch-runner.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { intervalScope, keys } from '../../core/layout.ts';
import { FsObjectStore } from '../store/fs-object-store.ts';
import { FsTaskQueue } from '../queue/fs-task-queue.ts';
import { WorkerPool, type PoolStats } from './worker-pool.ts';
import { compilePipeline, loadCompiledPipeline, type CompiledPipeline } from './pipeline-bundle.ts';
import { InProcessRunner } from './in-process-runner.ts';
import { WakeableClock } from './wakeable-clock.ts';
import { displayName, IncomingScanner, uploadRefusal } from './incoming-scanner.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../../core/util/map-concurrently.ts';
import { parseChaos, type ChaosSpec } from '../chaos/chaos-spec.ts';
import { seededRandom } from '../../core/util/seeded-random.ts';

export interface EmbeddedOptions {
  pipelinePath: string;
  /**
   * Run tasks in this process with this pipeline object instead of in worker processes: for
   * tests and embedding. The path is then only a label.
   */
  inProcess?: PipelineModule;
  root: string;
  workers?: number;
  /** Splits per interval; default twice the workers. */
  partitions?: number;
  intervalMs?: number;
  chaos?: string | ChaosSpec;
  /** Deliveries of a task before it is dead-lettered and its interval fails. Default 4. */
  maxAttempts?: number;
  taskTimeoutMs?: number;
  scheduler?: Partial<SchedulerOptions>;
  maxSplitBytes?: number;
  clock?: Clock;
  /** Sends tasks for stages known empty too (DriverConfig.runEmptyStages): for tests comparing the two. */
  runEmptyStages?: boolean;
  /**
   * Intervals run at once (DriverConfig.maxIntervalsInFlight): interval k+1's stages over its own
   * uploads start while k finishes; state, windows and commits stay in order. 1 to 16; default 1
   * (DEFAULT_EMBEDDED_INTERVALS_IN_FLIGHT).
   */
  maxIntervalsInFlight?: number;
  /** Wraps the store the driver uses, and with `inProcess` the tasks' (to count requests, say). */
  wrapStore?: (store: ObjectStore, role: 'driver' | 'tasks') => ObjectStore;
}

export class DriverCrash extends Error {
  constructor(readonly step: string) {
    super(`injected driver crash at ${step}`);
    this.name = 'DriverCrash';
  }
}

export interface ChaosReport {
  injected: PoolStats['injected'];
  recovered: {
    retried: number;
    workersReplaced: number;
    duplicatesIgnored: number;
    /** Losing copies stopped once another copy of their task committed. */
    losersStopped: number;
    speculative: number;
    fetchFailures: number;
    recomputed: number;
    driverRestarts: number;
  };
}

/**
 * dstream on one machine: the filesystem as the object store, a durable queue, and worker
 * processes running the task code, driven interval by interval by the same driver as on AWS.
 */
export class EmbeddedRuntime {
  readonly store: ObjectStore;
  /** The store itself, unwrapped: what pins files from outside it (replay's staged files, incoming/). */
  private readonly fsStore: FsObjectStore;
  readonly queue: FsTaskQueue;
  readonly pool: WorkerPool | InProcessRunner;
  readonly chaos?: ChaosSpec;
  private driverRestarts = 0;
  private readonly reports: IntervalReport[] = [];
  private readonly driverRandom: () => number;
  private driver: StreamingDriver | undefined;
  private readonly scanner: IncomingScanner;
  readonly config: DriverConfig;
  readonly options: EmbeddedOptions;
  private loaded?: PipelineModule;

  private constructor(
    options: EmbeddedOptions,
    config: DriverConfig,
    readonly clock: WakeableClock,
    pipeline: Promise<CompiledPipeline> | undefined,
  ) {
    this.options = options;
    const fsStore = new FsObjectStore(options.root);
    this.fsStore = fsStore;
    this.store = options.wrapStore?.(fsStore, 'driver') ?? fsStore;
    this.config = { ...config, checkUpload: pinnedUploadCheck(this.store) };
    this.scanner = new IncomingScanner(fsStore, () => this.clock.now());
    this.queue = new FsTaskQueue({ dir: path.join(options.root, '.dstream', 'queue'), maxReceives: options.maxAttempts ?? 4 });
    this.chaos = typeof options.chaos === 'string' ? parseChaos(options.chaos) : options.chaos;
    this.driverRandom = seededRandom((this.chaos?.seed ?? 0) + 1);
    this.pool = options.inProcess
      ? InProcessRunner.for(options.inProcess, options.wrapStore?.(fsStore, 'tasks') ?? fsStore, this.queue, options.workers ?? defaultWorkers(), () => this.clock.wake())
      : new WorkerPool(this.queue, {
      workers: options.workers ?? defaultWorkers(),
      pipelinePath: options.pipelinePath,
      pipeline: pipeline!,
      root: options.root,
      taskTimeoutMs: options.taskTimeoutMs ?? 120_000,
      retryDelayMs: 20,
      onTaskSettled: () => this.clock.wake(),
      ...(this.chaos ? { chaos: this.chaos } : {}),
    });
  }

  static async open(options: EmbeddedOptions): Promise<EmbeddedRuntime> {
    const pipelinePath = path.resolve(options.pipelinePath);
    const workers = options.workers ?? defaultWorkers();
    if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers must be a whole number >= 1, got ${workers}`);
    const partitions = options.partitions ?? workers * 2;
    if (!Number.isInteger(partitions) || partitions < 1) throw new Error(`--partitions must be a whole number >= 1, got ${partitions}`);
    const maxIntervalsInFlight = checkMaxIntervalsInFlight(options.maxIntervalsInFlight ?? DEFAULT_EMBEDDED_INTERVALS_IN_FLIGHT, '--intervals-in-flight');
    const config: DriverConfig = {
      maxIntervalsInFlight,
      intervalMs: options.intervalMs ?? 2000,
      inputPartitions: partitions,
      maxSplitBytes: options.maxSplitBytes ?? 64 * 1024 * 1024,
      scheduler: { ...defaultSchedulerOptions, ...options.scheduler },
      retainIntervals: 2,
      ...(options.runEmptyStages ? { runEmptyStages: true } : {}),
    };
    // Compiled once, for this process and every worker; the workers are forked meanwhile.
    const compiled = options.inProcess ? undefined : compilePipeline(pipelinePath, path.resolve(options.root));
    compiled?.catch(() => {});
    const runtime = new EmbeddedRuntime({ ...options, pipelinePath, workers }, config, new WakeableClock(options.clock ?? systemClock), compiled);
    const started = runtime.queue.ready().then(() => runtime.pool.start());
    started.catch(() => {});
    try {
      runtime.loaded = options.inProcess ?? (await loadCompiledPipeline(pipelinePath, await compiled!));
    } catch (error) {
      // Its workers fail on the same module; the driver's error says why, and they are stopped.
      await started.catch(() => {});
      await runtime.close().catch(() => {});
      throw error;
    }
    await started;
    return runtime;
  }

  /** The pipeline or batch job, as this process loaded it. */
  get module(): PipelineModule {
    return this.loaded!;
  }

  get pipeline(): Pipeline {
    if (this.module.kind !== 'stream') throw new Error(`${this.options.pipelinePath} defines a batch job; run it with 'dstream batch'`);
    return this.module;
  }

  /**
   * Runs the intervals staged under `dir/0`, `dir/1`, ... in order; intervals already committed
   * under this root are kept, so a replay that stopped can be run again to finish.
   */
  async replay(stagedDir: string, onInterval?: (report: IntervalReport) => void): Promise<IntervalReport[]> {
    const intervals = await readStaged(stagedDir);
    // A root started from a savepoint holds no interval before its boundary: those are another root's.
    const first = await this.driverInstance().firstInterval();
    await this.runIntervals(onInterval, async (from, start) => {
      // Staging interval k+1 overlaps with the run of k.
      for (const { k, files } of intervals.slice(from)) {
        if (k < first && !(await this.store.head(keys.committed(intervalScope(k))))) continue;
        await this.stage(k, files);
        await start(k);
      }
    });
    return this.reports;
  }

  /** Copies interval k's staged files into the store and admits them, unless it is sealed. */
  private async stage(k: number, files: StagedFile[]): Promise<void> {
    if (await isSealed(this.store, k)) return;
    // Staged files are copied to their pinned keys, not linked: the staged folder may change
    // afterwards. The copy is a clone or the kernel's, so files go many at a time whatever their size.
    await mapConcurrently(files, STORE_CONCURRENCY, async (file) => {
      const upload: IntakeUpload = { key: keys.pinnedUpload(`replay-${k}`, file.name), name: file.name, size: file.size, ...(file.refused === undefined ? {} : { refused: file.refused }) };
      if (file.refused === undefined) await this.fsStore.copyIn(file.path, upload.key);
      await admitUpload(this.store, upload, k);
    });
  }

  /**
   * Runs on the wall clock: every `intervalMs` the files that arrived in `incoming/` become the
   * interval's input. Copy files in with a rename for atomic uploads (write elsewhere, then move).
   */
  async live(options: { signal?: AbortSignal; intervals?: number; onInterval?: (report: IntervalReport) => void } = {}): Promise<IntervalReport[]> {
    await this.scanner.prepare();
    const first = (await this.driverInstance().progress()).next;
    const stopAt = options.intervals === undefined ? Infinity : first + options.intervals;
    await this.runIntervals(options.onInterval, async (from, start) => {
      const driver = this.driverInstance();
      let progress = await driver.progress();
      // The files of interval k+1 are taken while k runs.
      for (let k = Math.max(from, first); !options.signal?.aborted && k < stopAt; k++) {
        const end = intervalEnd(progress, k);
        while (this.clock.now() < end && !options.signal?.aborted) {
          await this.scanner.scan(progress, k);
          await this.clock.sleep(Math.min(100, Math.max(1, end - this.clock.now())));
        }
        if (options.signal?.aborted) break;
        await this.scanner.scan(progress, k);
        await start(k, end);
        // Starting an interval may have moved the clock to a new interval length.
        progress = await driver.progress();
      }
    }, options.signal);
    return this.reports;
  }

  /** A new run of the batch job, or the end of run `resume` that stopped. */
  async batch(resume?: string): Promise<BatchResult> {
    if (this.module.kind !== 'batch') throw new Error(`${this.options.pipelinePath} defines a stream; run it with 'dstream run' or 'dstream replay'`);
    return runBatch(this.module, { store: this.store, queue: this.queue, clock: this.clock }, this.config, resume);
  }

  chaosReport(): ChaosReport {
    if (!(this.pool instanceof WorkerPool)) throw new Error('fault injection needs worker processes');
    const s = this.pool.stats;
    const sum = (f: (r: IntervalReport) => number) => this.reports.reduce((n, r) => n + f(r), 0);
    return {
      injected: { ...s.injected, 'driver-crash': this.driverRestarts },
      recovered: {
        retried: s.failed,
        workersReplaced: s.crashed + s.timedOut,
        duplicatesIgnored: sum((r) => r.tasksSkipped),
        losersStopped: s.superseded,
        speculative: sum((r) => r.speculative),
        fetchFailures: sum((r) => r.fetchFailures),
        recomputed: sum((r) => r.recomputed),
        driverRestarts: this.driverRestarts,
      },
    };
  }

  async close(): Promise<void> {
    await this.pool.stop();
    await this.queue.close();
  }

  /**
   * Runs the intervals `loop` starts, up to maxIntervalsInFlight at once, reporting each as it
   * commits, in order. Whenever the fault schedule kills the driver, a new one carries on with the
   * loop from the first interval not reported: it resumes those that were in flight.
   */
  private async runIntervals(
    onInterval: ((report: IntervalReport) => void) | undefined,
    loop: (from: number, start: (k: number, intervalEnd?: number) => Promise<void>) => Promise<void>,
    signal?: AbortSignal,
  ): Promise<void> {
    let from = 0;
    for (;;) {
      const intervals = new IntervalPipeline(this.driverInstance(), (report) => {
        this.reports.push(report);
        from = report.interval + 1;
        onInterval?.(report);
      });
      // Stopping stops what has not committed: the next run resumes it.
      const stop = () => intervals.stop();
      signal?.addEventListener('abort', stop, { once: true });
      try {
        if (signal?.aborted) return;
        await loop(from, (k, end) => intervals.start(k, end));
        await intervals.drain();
        return;
      } catch (error) {
        // The loop's own failure (staging, say) stops what is in flight too.
        intervals.stop();
        await intervals.drain().catch(() => undefined);
        if (!(error instanceof DriverCrash)) throw error;
        this.driverRestarts++;
        this.driver = undefined;
      } finally {
        signal?.removeEventListener('abort', stop);
      }
    }
  }

  private driverInstance(): StreamingDriver {
    if (!this.driver) {
      const chaos = this.chaos;
      const random = this.driverRandom;
      let polls = 0;
      // A crash kills the driver's every interval in flight, each at its next step, as it would the process.
      let crashed: DriverCrash | undefined;
      this.driver = new StreamingDriver(this.pipeline, { store: this.store, queue: this.queue, clock: this.clock, changes: this.clock, notices: this.pool.notices }, this.config, {
        step: (step) => {
          if (crashed) throw crashed;
          if (!chaos || chaos.driverCrash === 0) return;
          // Mid-stage is a poll, many per stage: one chance in ten polls, so a stage can finish.
          if (step === 'mid-stage' && ++polls % 10 !== 0) return;
          if (random() < chaos.driverCrash) throw (crashed = new DriverCrash(step));
        },
      });
    }
    return this.driver;
  }
}

/** What the embedded runtime's admission cannot promise alone: the pinned file is there, as taken. */
function pinnedUploadCheck(store: ObjectStore): UploadCheck {
  return async (upload) => {
    const info = await store.head(upload.key);
    if (!info) return 'its bytes were never pinned: it vanished, or could not be moved or copied out of incoming/, while it was being taken';
    if (info.size !== upload.size) {
      return `it changed after it was taken (${upload.size} bytes then, ${info.size} now): a process still had it open for writing. Its bytes are kept at ${upload.key}, not read`;
    }
    return undefined;
  };
}

export function defaultWorkers(): number {
  return Math.max(1, cpus().length);
}

interface StagedFile {
  name: string;
  path: Buffer;
  size: number;
  /** Why the file cannot be an upload; it is then recorded as refused in its interval. */
  refused?: string;
}

/** Validates the whole staged directory before anything runs, so a bad one changes nothing. */
export async function readStaged(dir: string): Promise<{ k: number; files: StagedFile[] }[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    throw new Error(`staged directory ${dir} does not exist or cannot be read`);
  }
  // A file beside the interval folders belongs to no interval: refused, not silently skipped.
  const loose = entries.filter((e) => !e.isDirectory() && !e.name.startsWith('.')).map((e) => e.name);
  if (loose.length > 0) {
    throw new Error(`staged directory ${dir} has files outside the interval folders: ${loose.join(', ')} (move each into <k>/ for the interval it belongs to)`);
  }
  const dirs = entries.filter((e) => e.isDirectory() && !e.name.startsWith('.'));
  const bad = dirs.filter((e) => !/^(0|[1-9]\d*)$/.test(e.name)).map((e) => e.name);
  if (bad.length > 0) {
    throw new Error(`staged directory ${dir} has folders that are not interval numbers: ${bad.join(', ')} (expected 0, 1, 2, ...)`);
  }
  const numbers = dirs.map((e) => Number(e.name)).sort((a, b) => a - b);
  numbers.forEach((n, i) => {
    if (n !== i) {
      throw new Error(`staged directory ${dir} has a gap: interval ${i} is missing (found ${numbers.join(', ')}); an interval with no uploads needs an empty folder`);
    }
  });
  const out: { k: number; files: StagedFile[] }[] = [];
  for (const k of numbers) {
    const files: StagedFile[] = [];
    const walk = async (folder: Buffer, names: Buffer[]) => {
      for (const e of await readdir(folder, { withFileTypes: true, encoding: 'buffer' })) {
        // Files still being written, by the convention live runs and Spark's file streams share.
        if (e.name[0] === 0x2e /* '.' */) continue;
        const full = Buffer.concat([folder, Buffer.from(path.sep), e.name]);
        if (e.isDirectory()) {
          await walk(full, [...names, e.name]);
          continue;
        }
        const info = await lstat(full);
        const name = displayName([...names, e.name]);
        const refused = await uploadRefusal(full, [...names, e.name], info, keys.pinnedUpload(`replay-${k}`, name));
        files.push({ name, path: full, size: info.size, ...(refused === undefined ? {} : { refused }) });
      }
    };
    await walk(Buffer.from(path.join(dir, String(k))), []);
    files.sort((a, b) => (a.name < b.name ? -1 : 1));
    out.push({ k, files });
  }
  return out;
}

