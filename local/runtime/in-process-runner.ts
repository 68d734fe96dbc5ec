import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { NoticeBoard, type TaskRunner } from '../../core/ports/task-runner.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { TaskHandler, settlementOf, type PipelineModule } from '../../core/runtime/task-handler.ts';
import { settle } from './settle.ts';
import type { TaskRecord } from '../../core/exec/task.ts';

/**
 * Runs tasks inside this process, `concurrency` at a time, with the queue semantics of the worker
 * pool (delete on success or a settled failure, retry after a delay on other failures). For embedding dstream in a process
 * that already has the pipeline object (tests, notebooks); no crash isolation.
 */
export class InProcessRunner implements TaskRunner {
  private running = false;
  private loop?: Promise<void>;
  readonly errors: string[] = [];
  /** Which tasks started and settled, for the scheduler's polls. */
  readonly notices = new NoticeBoard();

  constructor(
    private readonly queue: TaskQueue,
    private readonly handler: TaskHandler,
    private readonly concurrency: number,
    private readonly onTaskSettled: () => void = () => {},
    private readonly retryDelayMs = 10,
  ) {}

  static for(module: PipelineModule, store: ObjectStore, queue: TaskQueue, concurrency: number, onTaskSettled?: () => void): InProcessRunner {
    return new InProcessRunner(queue, new TaskHandler(module, store, { executor: 'in-process' }), concurrency, onTaskSettled);
  }

  async start(): Promise<void> {
    this.running = true;
    this.loop = Promise.all(Array.from({ length: this.concurrency }, () => this.work())).then(() => {});
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  private async work(): Promise<void> {
    while (this.running) {
      const [message] = await this.queue.receive(1, 60_000, 20);
      if (!message) continue;
      let task: TaskRecord | undefined;
      try {
        task = await this.handler.decode(message.body);
        this.notices.post(task, 'started');
        await this.handler.handle(task, message.receiveCount);
        await this.queue.delete(message.receipt);
      } catch (error) {
        this.errors.push(error instanceof Error ? error.message : String(error));
        await settle(this.queue, message, settlementOf(error), error instanceof Error ? `${error.name}: ${error.message}` : String(error), this.retryDelayMs);
      }
      if (task) this.notices.post(task, 'settled');
      this.onTaskSettled();
    }
  }
}
