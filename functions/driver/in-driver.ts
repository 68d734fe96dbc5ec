/**
 * Small stages run in the driver's own process, as Spark runs a small `take()` on its driver: the
 * hops of a task through SQS and a task Lambda (a send, the event source mapping's pickup, the
 * notice back) cost more than a task over a few kilobytes. The driver's scheduler is unchanged: it
 * sends its tasks to this queue, which runs a batch whose input is under a bound here, with the
 * task function's code (TaskHandler), so each leaves the same records (start marker, outputs,
 * completion record) a task Lambda would. Everything else goes to the task queue. A driver that
 * dies mid-task leaves what any dead task leaves: the next driver resends what has no completion
 * record, and the task, deterministic and idempotent, writes the same bytes again.
 */
import type { Clock } from '../../core/ports/clock.ts';
import type { ChangeFeed } from '../../core/ports/change-feed.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { DeadLetter, QueueMessage, TaskQueue } from '../../core/ports/task-queue.ts';
import type { NoticeBoard } from '../../core/ports/task-runner.ts';
import type { ResolvedTask, TaskDone, TaskRecord } from '../../core/exec/task.ts';
import { TaskHandler, settlementOf } from '../../core/runtime/task-handler.ts';
import { decodeTaskMessage } from '../../core/scheduler/task-message.ts';
import { stageReads } from '../../core/scheduler/stages.ts';
import { keys, type Scope } from '../../core/layout.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../../core/util/map-concurrently.ts';
import { log } from '../log.ts';

export interface InDriverOptions {
  /** A batch of tasks (a stage's pending tasks, as the scheduler sends them) whose input totals fewer bytes runs in the driver; 0: none does. */
  belowBytes: number;
  /** Tasks the driver runs at once. */
  concurrency: number;
  /** A persisted part's size where the driver already listed its location for the task's interval (StreamingDriver.storedPartSize); undefined: HEAD it. */
  storedSize?(scope: Scope, key: string): Promise<number> | undefined;
}

/**
 * The task queue as the driver's scheduler sees it: a batch of first copies whose input is under
 * `belowBytes` runs in this process; the rest, and every copy the scheduler sends of a slow or
 * unstarted task, goes to `queue` (the task function). A task that fails here with an error a
 * retry could cure is sent to `queue` too, where the task function's retries and dead-lettering
 * take it over; one that fails with an error every delivery would meet has recorded its final
 * failure, as in the task function. Each task settled here is posted on `board`, which the
 * scheduler reads (its notices), with its completion record when it left one, and ends a wait
 * on `changes`.
 */
export class InDriverTaskQueue implements TaskQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  /** Set by a task settling here; cleared by the next wait, which it ends at once. */
  private settled = false;
  /** End the waits (of every interval in flight) once no task runs here. */
  private allSettled: (() => void)[] = [];

  constructor(
    private readonly queue: TaskQueue,
    private readonly store: ObjectStore,
    private readonly tasks: TaskHandler,
    private readonly board: NoticeBoard,
    private readonly clock: Clock,
    private readonly options: InDriverOptions,
  ) {}

  /** Tasks running in this process now. */
  get inFlight(): number {
    return this.running;
  }

  async send(bodies: string[]): Promise<void> {
    if (this.options.belowBytes <= 0 || bodies.length === 0) return this.queue.send(bodies);
    const decoded = await mapConcurrently(bodies, STORE_CONCURRENCY, (body) => decodeTaskMessage(this.store, body));
    const local = decoded.every((t) => t.copy === 0) ? await this.resolveUnder(decoded) : undefined;
    if (!local) return this.queue.send(bodies);
    local.forEach((resolved, i) => void this.run(resolved, bodies[i]!));
  }

  /**
   * The batch resolved against its lineage record, when its input totals fewer than `belowBytes`;
   * undefined otherwise, or when a task does not resolve (the task function then says why).
   */
  private async resolveUnder(tasks: TaskRecord[]): Promise<ResolvedTask[] | undefined> {
    let resolved: ResolvedTask[];
    try {
      // The first reads the scope's lineage record (once: the handler keeps its plan), the rest use it.
      const first = await this.tasks.resolve(tasks[0]!);
      resolved = [first, ...(await Promise.all(tasks.slice(1).map((t) => this.tasks.resolve(t))))];
    } catch {
      return undefined;
    }
    let bytes = 0;
    const stored: [Scope, string][] = [];
    for (const r of resolved) {
      const input = taskInput(r);
      bytes += input.bytes;
      for (const key of input.stored) stored.push([r.task.scope, key]);
    }
    if (bytes >= this.options.belowBytes) return undefined;
    const sizes = await mapConcurrently(stored, STORE_CONCURRENCY, async ([scope, key]) => (await (this.options.storedSize?.(scope, key) ?? this.store.head(key).then((info) => info?.size))) ?? 0);
    bytes += sizes.reduce((n, size) => n + size, 0);
    return bytes < this.options.belowBytes ? resolved : undefined;
  }

  private async run(resolved: ResolvedTask, body: string): Promise<void> {
    const { task } = resolved;
    await this.slot();
    try {
      const outcome = await this.tasks.handle(task, 1);
      // The completion record as the store holds it (written or found by this copy), so that the
      // scheduler need not read it back; a copy that wrote none (it lost an input, or another copy
      // won) gives none, and the scheduler reads the store as for a remote task.
      this.board.post(task, 'settled', outcome.status === 'done' ? (JSON.parse(JSON.stringify(outcome.done)) as TaskDone) : undefined);
    } catch (error) {
      if (settlementOf(error) === 'recorded') {
        this.board.post(task, 'settled');
      } else {
        log.warn(`task ${task.scope} ${task.stage} partition ${task.partition} failed in the driver; sent to the task function, which retries it`, {
          scope: task.scope,
          stage: task.stage,
          partition: task.partition,
          error,
        });
        // If this fails too, the scheduler's deadline for unstarted tasks sends a copy.
        await this.queue.send([body]).catch(() => undefined);
      }
    } finally {
      this.release();
    }
  }

  private async slot(): Promise<void> {
    if (this.running >= this.options.concurrency) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
  }

  private release(): void {
    this.running--;
    this.waiting.shift()?.();
    this.settled = true;
    if (this.running === 0) for (const end of this.allSettled.splice(0)) end();
  }

  /**
   * What the driver's stages wait on: while tasks run here, until none does (or `ms`): the
   * scheduler has nothing to do with part of a small stage, and one look then reads them all;
   * else `remote`, the task functions' notices. A remote task's notice that comes while the driver
   * waits here stays in its queue and ends the next wait at once: it is late by the local tasks'
   * time at most, which the bound keeps short.
   */
  changes(remote: ChangeFeed | undefined): ChangeFeed {
    return {
      waitForChange: async (ms) => {
        if (!this.settled && this.running === 0) return remote ? remote.waitForChange(ms) : this.clock.sleep(ms);
        if (this.running > 0) {
          let end!: () => void;
          await Promise.race([new Promise<void>((resolve) => this.allSettled.push((end = resolve))), this.clock.sleep(ms)]);
          // A wait its time ended leaves no waker behind.
          this.allSettled = this.allSettled.filter((waker) => waker !== end);
        }
        this.settled = false;
      },
    };
  }

  receive(max: number, visibilityTimeoutMs: number, waitMs?: number): Promise<QueueMessage[]> {
    return this.queue.receive(max, visibilityTimeoutMs, waitMs);
  }

  delete(receipt: string): Promise<void> {
    return this.queue.delete(receipt);
  }

  changeVisibility(receipt: string, visibilityTimeoutMs: number): Promise<void> {
    return this.queue.changeVisibility(receipt, visibilityTimeoutMs);
  }

  deadLetter(message: QueueMessage, reason: string): Promise<void> {
    return this.queue.deadLetter(message, reason);
  }

  drainDeadLetters(max: number): Promise<DeadLetter[]> {
    return this.queue.drainDeadLetters(max);
  }
}

/**
 * What a task reads: the bytes of its source splits and shuffle blocks, known from its plan and
 * message, and the keys of the persisted partitions it reads from the store, whose size only the
 * store knows (the walk is the scheduler's, stageReads).
 */
export function taskInput({ task, stage, plan }: ResolvedTask): { bytes: number; stored: string[] } {
  const reads = stageReads(plan, stage, task.partition);
  let bytes = 0;
  for (const blocks of Object.values(task.shuffleInputs ?? {})) for (const [, start, end] of blocks) bytes += end - start;
  for (const [rdd, split] of reads.sources) {
    const node = plan.get(rdd).node;
    if (node.kind === 'source') bytes += node.splits[split]?.bytes ?? 0;
  }
  return { bytes, stored: reads.stored.map(([location, q]) => keys.persisted(location, q)) };
}
