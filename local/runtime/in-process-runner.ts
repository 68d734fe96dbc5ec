import type { TaskQueue } from '../../core/ports/task-queue.ts';
import type { TaskRunner } from '../../core/ports/task-runner.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { TaskHandler, settlesAtOnce, type PipelineModule } from '../../core/runtime/task-handler.ts';
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

  constructor(
    private readonly queue: TaskQueue,
    private readonly handler: TaskHandler,
    private readonly concurrency: number,
    private readonly onTaskSettled: () => void = () => {},
    private readonly retryDelayMs = 10,
  ) {}

  static for(module: PipelineModule, store: ObjectStore, queue: TaskQueue, concurrency: number, onTaskSettled?: () => void): InProcessRunner {
    return new InProcessRunner(queue, new TaskHandler(module, store), concurrency, onTaskSettled);
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
        await this.handler.handle(task, message.receiveCount);
        await this.queue.delete(message.receipt);
      } catch (error) {
        this.errors.push(error instanceof Error ? error.message : String(error));
        // Settled: recorded for the driver (by handle, or here for a message that is no task); not retried.
        const settled = task ? settlesAtOnce(error) : await this.handler.settleUndecodable(message, error).catch(() => false);
        if (settled) await this.queue.delete(message.receipt);
        else await this.queue.changeVisibility(message.receipt, this.retryDelayMs * message.receiveCount);
      }
      this.onTaskSettled();
    }
  }
}
