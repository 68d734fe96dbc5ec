import { fork, type ChildProcess } from 'node:child_process';
import { siblingModule } from '../package-files.ts';
import { NoticeBoard, type TaskRunner } from '../../core/ports/task-runner.ts';
import type { QueueMessage, TaskQueue } from '../../core/ports/task-queue.ts';
import type { ChaosSpec, FaultKind } from '../chaos/chaos-spec.ts';
import { seededRandom } from '../../core/util/seeded-random.ts';
import type { FromWorker, TaskIdentity, ToWorker, WorkerUsage } from './worker-protocol.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { recordTaskFailure } from '../../core/runtime/task-handler.ts';
import { FsObjectStore } from '../store/fs-object-store.ts';
import { ScratchStore } from '../../core/query/scratch-store.ts';
import { settle } from './settle.ts';
import type { CompiledPipeline } from './pipeline-bundle.ts';

export interface WorkerPoolOptions {
  workers: number;
  /** The user's module, named in errors. */
  pipelinePath: string;
  /**
   * What workers load: the module compiled once for all (local/runtime/pipeline-bundle.ts). While
   * it compiles the workers start, and each is given it when it is ready.
   */
  pipeline: CompiledPipeline | Promise<CompiledPipeline>;
  root: string;
  /** A task running longer is killed and its message redelivered. */
  taskTimeoutMs: number;
  /** How long a failed task's message stays hidden before it is retried (times its receive count). */
  retryDelayMs: number;
  chaos?: ChaosSpec;
  /**
   * Run tasks on a query's ScratchStore over the root: their run's keys kept under
   * `queries/<scratch>/`, the stream's keys read only (core/query/scratch-store.ts).
   */
  scratch?: string;
  /** Called whenever a task finished, failed or lost its worker. */
  onTaskSettled?: () => void;
}

export interface PoolStats {
  completed: number;
  failed: number;
  crashed: number;
  timedOut: number;
  fetchFailed: number;
  /** Copies that stopped because another copy of their task committed first. */
  superseded: number;
  injected: Record<FaultKind, number>;
  /** Per task: the worker's peak memory and the bytes of input it read. */
  usage: WorkerUsage[];
  lastErrors: string[];
}

const WORKER_MAIN = siblingModule(import.meta.url, 'worker-main');
const TSX = import.meta.resolve('tsx');
const TYPESCRIPT = /\.(ts|mts|cts|tsx)$/;

/**
 * Built JavaScript runs as it is: a worker loads TypeScript support (tsx, a third of a second per
 * worker) up front only when it runs from sources; its pipeline is JavaScript, compiled once.
 */
const WORKER_EXEC_ARGV = TYPESCRIPT.test(WORKER_MAIN) ? ['--import', TSX] : [];

interface Worker {
  index: number;
  child: ChildProcess;
  ready: Promise<void>;
  busy?: { message: QueueMessage; timer: NodeJS.Timeout; task?: TaskIdentity };
  timedOut?: boolean;
}

/**
 * Child processes that run tasks from the queue, as Lambda's event source mapping runs a task
 * function for SQS messages: a message is deleted when its task succeeded, or failed with an error
 * that recurs on every delivery (settled: its failure recorded for the driver); a task that throws
 * otherwise is retried after a delay; a worker that dies or runs out of time is replaced, and its
 * message comes back. After the queue's receive bound, the message goes to the dead letters.
 */
export class WorkerPool implements TaskRunner {
  readonly stats: PoolStats = {
    completed: 0,
    failed: 0,
    crashed: 0,
    timedOut: 0,
    fetchFailed: 0,
    superseded: 0,
    injected: { 'task-error': 0, 'task-crash': 0, duplicate: 0, straggler: 0, 'lose-cache': 0, 'driver-crash': 0 },
    usage: [],
    lastErrors: [],
  };
  /** Which tasks started and settled, for the scheduler's polls. */
  readonly notices = new NoticeBoard();
  private readonly workers: Worker[] = [];
  private running = false;
  private loop?: Promise<void>;
  private wake?: () => void;
  private readonly random: () => number;
  private spawned = 0;
  /** Handlers of worker messages still talking to the queue: stop() waits for them. */
  private readonly settling = new Set<Promise<void>>();
  /** Where the pool records why a task's worker died, since the worker cannot. */
  private readonly store: ObjectStore;

  constructor(
    private readonly queue: TaskQueue,
    private readonly options: WorkerPoolOptions,
  ) {
    this.random = seededRandom((options.chaos?.seed ?? 0) ^ 0x5bd1e995);
    const root = new FsObjectStore(options.root);
    this.store = options.scratch === undefined ? root : new ScratchStore(root, options.scratch);
  }

  async start(): Promise<void> {
    this.running = true;
    for (let i = 0; i < this.options.workers; i++) this.workers.push(this.spawn(i));
    await Promise.all(this.workers.map((w) => w.ready));
    this.loop = this.dispatch();
  }

  async stop(): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    // Listeners stay: a worker's exit settles its readiness, and handlers ignore what comes late.
    for (const w of this.workers) {
      if (w.busy) clearTimeout(w.busy.timer);
      w.child.kill();
    }
    await Promise.all(this.settling);
  }

  private track(work: Promise<void>): void {
    this.settling.add(work);
    void work.finally(() => this.settling.delete(work));
  }

  private spawn(index: number): Worker {
    const child = fork(WORKER_MAIN, [], {
      execArgv: WORKER_EXEC_ARGV,
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const worker: Worker = { index, child, ready: Promise.resolve() };
    let refuse: (error: unknown) => void = () => {};
    worker.ready = new Promise<void>((resolve, reject) => {
      refuse = reject;
      const onFirst = (message: FromWorker) => {
        if (message.type === 'ready') resolve();
        else if (message.type === 'init-error') reject(new Error(`worker could not load the pipeline: ${message.message}`));
      };
      child.once('message', onFirst);
      child.once('exit', (code) => reject(new Error(`worker exited with code ${code} while starting`)));
    });
    worker.ready.catch(() => {});
    child.on('message', (message: FromWorker) => this.track(this.onMessage(worker, message)));
    child.on('exit', (code, signal) => this.track(this.onExit(worker, code, signal)));
    const workerIndex = this.spawned++;
    // Forked before the pipeline is compiled: the process starts up meanwhile.
    Promise.resolve(this.options.pipeline).then((pipeline) => {
      const init: ToWorker = {
        type: 'init',
        pipeline,
        pipelinePath: this.options.pipelinePath,
        root: this.options.root,
        workerIndex,
        ...(this.options.chaos ? { chaos: this.options.chaos } : {}),
        ...(this.options.scratch === undefined ? {} : { scratch: this.options.scratch }),
      };
      if (child.connected) child.send(init);
    }, refuse);
    return worker;
  }

  private async dispatch(): Promise<void> {
    while (this.running) {
      const idle = this.workers.filter((w) => !w.busy && w.child.connected);
      if (idle.length === 0) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        continue;
      }
      let messages: QueueMessage[];
      try {
        messages = await this.queue.receive(idle.length, this.options.taskTimeoutMs + 5_000, 50);
      } catch (error) {
        // The queue failing is the runtime's problem to report; keep trying rather than die here.
        if (!this.running) return;
        this.stats.lastErrors = [...this.stats.lastErrors.slice(-9), `receive failed: ${error instanceof Error ? error.message : String(error)}`];
        await new Promise((resolve) => setTimeout(resolve, 200));
        continue;
      }
      for (const message of messages) {
        const worker = idle.shift()!;
        if (this.options.chaos && this.random() < this.options.chaos.duplicate) {
          // SQS may deliver a message twice; so do we, on purpose.
          this.stats.injected.duplicate++;
          await this.queue.send([message.body]);
        }
        await worker.ready;
        const timer = setTimeout(() => {
          this.stats.timedOut++;
          worker.timedOut = true;
          worker.child.kill('SIGKILL');
        }, this.options.taskTimeoutMs);
        worker.busy = { message, timer };
        const task: ToWorker = { type: 'task', id: message.id, body: message.body, receiveCount: message.receiveCount };
        worker.child.send(task);
      }
    }
  }

  private async onMessage(worker: Worker, message: FromWorker): Promise<void> {
    // After stop(), a late reply changes nothing: its message comes back to a later owner.
    if (!this.running || (message.type !== 'done' && message.type !== 'failed' && message.type !== 'started')) return;
    const busy = worker.busy;
    if (!busy || busy.message.id !== message.id) return;
    if (message.type === 'started') {
      busy.task = message.task;
      this.notices.post(message.task, 'started');
      return;
    }
    clearTimeout(busy.timer);
    worker.busy = undefined;
    if (busy.task) this.notices.post(busy.task, 'settled');
    for (const kind of message.injected) this.stats.injected[kind]++;
    if (message.type === 'failed') {
      this.stats.failed++;
      this.stats.lastErrors = [...this.stats.lastErrors.slice(-9), message.message];
      // Settled before the driver looks: a dead letter is there when it does.
      await settle(this.queue, busy.message, message.settlement, message.message, this.options.retryDelayMs);
      this.options.onTaskSettled?.();
      this.wake?.();
      return;
    }
    this.stats.completed++;
    if (message.outcome === 'fetch-failed') this.stats.fetchFailed++;
    if (message.outcome === 'superseded') this.stats.superseded++;
    this.stats.usage.push(message.usage);
    // The task's records are written and its worker is free: the driver looks and the worker gets
    // its next task while the acknowledgement is written (one journal write takes both it and that
    // delivery). A crash before it is written redelivers a task that is done, which its completion
    // record makes a no-op, as for any duplicate.
    this.options.onTaskSettled?.();
    this.wake?.();
    await this.queue.delete(busy.message.receipt);
  }

  private async onExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): Promise<void> {
    if (!this.running) return;
    const busy = worker.busy;
    if (busy) {
      clearTimeout(busy.timer);
      if (!worker.timedOut) {
        this.stats.crashed++;
        if (this.options.chaos?.taskCrash) this.stats.injected['task-crash']++;
      }
      const why = worker.timedOut
        ? `the task ran longer than its timeout of ${this.options.taskTimeoutMs} ms and its worker was killed`
        : `its worker process died (${signal ? `signal ${signal}` : `exit code ${code}`}${code === 134 || signal === 'SIGABRT' ? ', perhaps out of memory' : ''})`;
      worker.busy = undefined;
      if (busy.task) {
        await recordTaskFailure(this.store, busy.task, busy.message.receiveCount, new WorkerDied(why));
        this.notices.post(busy.task, 'settled');
      }
      await this.queue.changeVisibility(busy.message.receipt, this.options.retryDelayMs);
    }
    const replacement = this.spawn(worker.index);
    this.workers[this.workers.indexOf(worker)] = replacement;
    await replacement.ready.catch(() => {});
    this.wake?.();
  }
}

class WorkerDied extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'WorkerDied';
  }
}
