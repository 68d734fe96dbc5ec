/**
 * The task function: SQS delivers task messages in batches (the event source mapping), and the
 * handler runs each with the engine's TaskHandler. It reports the messages that failed, so that
 * only those return to the queue (ReportBatchItemFailures); the rest are deleted. Redelivery is
 * harmless: a task whose completion record exists is skipped, and concurrent copies agree
 * because the first completion record wins.
 */
import type { SQSBatchItemFailure, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import type { TaskRecord } from '../../core/exec/task.ts';
import { TaskHandler, settlesAtOnce, type PipelineModule } from '../../core/runtime/task-handler.ts';
import { SUPERSEDED_CHECK_MS, functionConfig, s3Store, sqsQueue, taskRetryDelayMs } from '../config.ts';
import { publishTaskFailures } from '../metrics.ts';

export interface TaskHandlerDeps {
  store?: ObjectStore;
  /** Where a failed task's message is hidden for its retry delay. Default: the task queue. */
  queue?: Pick<TaskQueue, 'changeVisibility'>;
}

/** What Lambda's context offers that the task function uses. */
export interface TaskInvocationContext {
  getRemainingTimeInMillis(): number;
}

/** Time kept to write the reason before Lambda ends an invocation that runs out of time. */
const TIMEOUT_NOTICE_MS = 2_000;

export function createTaskHandler(
  pipeline: PipelineModule,
  deps: TaskHandlerDeps = {},
): (event: SQSEvent, context?: TaskInvocationContext) => Promise<SQSBatchResponse> {
  // Built on the first event, not when the entry module loads it: one per container, so that its
  // cache of rebuilt plans serves every batch the container runs.
  let tasks: TaskHandler | undefined;
  const taskHandler = () => (tasks ??= new TaskHandler(pipeline, deps.store ?? s3Store(functionConfig()), { supersededCheckMs: SUPERSEDED_CHECK_MS }));
  let queue: Pick<TaskQueue, 'changeVisibility'> | undefined;
  const retryQueue = () => (queue ??= deps.queue ?? sqsQueue(functionConfig()));

  return async (event, context) => {
    const records = recordsOf(event);
    const batchItemFailures: SQSBatchItemFailure[] = [];
    // One task at a time: each holds a partition in memory, and the batch shares the function's.
    for (const record of records) {
      if (await runRecord(taskHandler(), record, context)) continue;
      batchItemFailures.push({ itemIdentifier: record.messageId });
      await retrySoon(retryQueue, record);
    }
    if (batchItemFailures.length > 0) publishTaskFailures(pipeline.options.name, batchItemFailures.length, Date.now());
    return { batchItemFailures };
  };
}

/**
 * A reported message would otherwise come back only when its visibility timeout (six times the
 * function's timeout) runs out: half an hour for one failed attempt. Best effort: if this fails,
 * the timeout still brings it back.
 */
async function retrySoon(queue: () => Pick<TaskQueue, 'changeVisibility'>, record: SQSRecord): Promise<void> {
  const delayMs = taskRetryDelayMs(receiveCountOf(record));
  try {
    await queue().changeVisibility(record.receiptHandle, delayMs);
  } catch (error) {
    console.error(
      JSON.stringify({
        level: 'warn',
        message: `could not shorten the visibility of failed message ${record.messageId} to ${delayMs} ms; it returns after the queue's visibility timeout`,
        messageId: record.messageId,
        error: String(error),
      }),
    );
  }
}

/**
 * True when the message is done with: the task completed, was already complete, reported lost
 * inputs, or failed with an error that recurs on every delivery (settled: its failure recorded for
 * the driver, or the message kept under errors/ when it is no task).
 */
async function runRecord(tasks: TaskHandler, record: SQSRecord, context?: TaskInvocationContext): Promise<boolean> {
  const receiveCount = receiveCountOf(record);
  let task: TaskRecord;
  try {
    if (typeof record.body !== 'string') throw new Error(`the message body is a ${typeof record.body}, not a string`);
    task = await tasks.decode(record.body);
  } catch (error) {
    const settled = await tasks.settleUndecodable({ id: record.messageId, body: String(record.body), receiveCount }, error).catch(() => false);
    console.error(
      JSON.stringify({
        level: 'error',
        message: settled
          ? `message ${record.messageId} is not a dstream task; it is kept under errors/unreadable-dead-letters/ and deleted from the queue`
          : `message ${record.messageId} could not be read as a dstream task; it is returned to the queue and dead-lettered once its receives run out`,
        messageId: record.messageId,
        receiveCount,
        error: String(error),
      }),
    );
    return settled;
  }
  // Lambda ends a timed-out invocation without a word to the code: say why while there is time,
  // so that a task that times out on every delivery is dead-lettered with its reason.
  const remaining = context?.getRemainingTimeInMillis();
  const notice =
    remaining === undefined
      ? undefined
      : setTimeout(
          () => void tasks.recordFailure(task, receiveCount, new Error(`the task function's invocation ran out of time after ${remaining} ms`)),
          Math.max(0, remaining - TIMEOUT_NOTICE_MS),
        );
  try {
    // A fetch failure is an outcome, not an error: the driver reruns the task with a new attempt.
    await tasks.handle(task, receiveCount);
    return true;
  } catch (error) {
    const settled = settlesAtOnce(error);
    console.error(
      JSON.stringify({
        level: 'error',
        message: settled
          ? `task ${task.scope} ${task.stage} partition ${task.partition} failed on delivery ${receiveCount} with an error that recurs on every delivery; its failure is recorded for the driver and the message deleted`
          : `task ${task.scope} ${task.stage} partition ${task.partition} failed on delivery ${receiveCount}; it is returned to the queue`,
        messageId: record.messageId,
        receiveCount,
        scope: task.scope,
        stage: task.stage,
        partition: task.partition,
        attempt: task.attempt,
        copy: task.copy,
        error: String(error),
        stack: error instanceof Error ? error.stack : undefined,
      }),
    );
    return settled;
  } finally {
    clearTimeout(notice);
  }
}

/**
 * The batch's records. A malformed envelope fails the whole invocation, so SQS delivers every
 * message again: a message whose id we cannot name cannot be reported alone.
 */
function recordsOf(event: unknown): SQSRecord[] {
  const records = (event as { Records?: unknown } | null | undefined)?.Records;
  if (!Array.isArray(records)) throw new Error(`not an SQS event: it has no Records array (got ${describe(event)})`);
  records.forEach((record: unknown, index) => {
    const messageId = (record as { messageId?: unknown } | null)?.messageId;
    if (typeof messageId !== 'string' || messageId === '') {
      throw new Error(`SQS event record ${index} has no messageId, so its failure could not be reported (got ${describe(record)})`);
    }
  });
  return records as SQSRecord[];
}

/** SQS counts deliveries from 1; a record without the attribute is taken as a first delivery. */
function receiveCountOf(record: SQSRecord): number {
  const count = Number(record.attributes?.ApproximateReceiveCount);
  return Number.isInteger(count) && count >= 1 ? count : 1;
}

function describe(value: unknown): string {
  return JSON.stringify(value)?.slice(0, 200) ?? String(value);
}
