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
import { InvalidTaskMessageError } from '../../core/scheduler/task-message.ts';
import { TaskHandler, settlementOf, type PipelineModule } from '../../core/runtime/task-handler.ts';
import { SUPERSEDED_CHECK_MS, functionConfig, s3Store, sqsQueue, taskNotifier, taskRetryDelayMs, type TaskNotifier } from '../config.ts';
import { publishTaskFailures } from '../metrics.ts';
import { decodeQueryTask } from '../../core/query/query-message.ts';
import { queryModules } from '../../core/query/query-modules.ts';
import { ScratchStore } from '../../core/query/scratch-store.ts';
import { loadQueryCode } from './query-code.ts';
import { log } from '../log.ts';

export interface TaskHandlerDeps {
  store?: ObjectStore;
  /**
   * Where a failed task's message is hidden for its retry delay, or dead-lettered at once when no
   * delivery is left. Default: the task queue, with its dead-letter queue.
   */
  queue?: Pick<TaskQueue, 'changeVisibility' | 'deadLetter'>;
  /** Deliveries the task queue allows (its redrive policy's maxReceiveCount). Default: DSTREAM_MAX_TASK_ATTEMPTS. */
  maxTaskAttempts?: number;
  /**
   * Tells the driver a task settled, so that it looks at once. Default: a message to the driver
   * events queue (DSTREAM_EVENTS_QUEUE_URL); none without one, the driver then polling.
   */
  notify?: TaskNotifier;
}

/** What Lambda's context offers that the task function uses. */
export interface TaskInvocationContext {
  getRemainingTimeInMillis(): number;
}

/** Time kept to write the reason before Lambda ends an invocation that runs out of time. */
const TIMEOUT_NOTICE_MS = 2_000;

/**
 * How a message ends this delivery: done with; its final failure recorded (an error every delivery
 * would meet; see settlementOf), so deleted; back to the queue for a retry; or dead-lettered now.
 */
type Settlement = { kind: 'done' } | { kind: 'recorded' } | { kind: 'retry' } | { kind: 'dead-letter'; reason: string };

/** How a message ended this delivery, and the task it carried when it could be read. */
interface Ran {
  settlement: Settlement;
  task?: TaskRecord;
}

const OUTCOME: Record<Exclude<Settlement['kind'], 'done'>, string> = {
  recorded: 'it fails so on every delivery, so its failure is recorded for the driver and the message deleted',
  retry: 'it is returned to the queue',
  'dead-letter': 'it is dead-lettered at once',
};

export function createTaskHandler(
  pipeline: PipelineModule,
  deps: TaskHandlerDeps = {},
): (event: SQSEvent, context?: TaskInvocationContext) => Promise<SQSBatchResponse> {
  // The query function (the construct's interactiveQueries) is this asset with DSTREAM_ROLE=query:
  // it runs shell sessions' tasks, never the stream's, with a role that writes only their scratch.
  if (process.env.DSTREAM_ROLE === 'query') return createQueryTaskHandler(deps);
  // Built on the first event, not when the entry module loads it: one per container, so that its
  // cache of rebuilt plans serves every batch the container runs.
  let tasks: TaskHandler | undefined;
  const taskHandler = () => (tasks ??= new TaskHandler(pipeline, deps.store ?? s3Store(functionConfig()), { supersededCheckMs: SUPERSEDED_CHECK_MS, ...executionEnvironment() }));
  return sqsTaskFunction(pipeline.options.name, async (body) => ({ tasks: taskHandler(), body }), deps, () => deps.notify ?? taskNotifier());
}

/** Sessions whose task handlers a query function keeps: a container serves a few shells at a time. */
const KEPT_SESSIONS = 8;

/**
 * The query function: each message is a task of a shell session (core/query/query-message.ts),
 * run on the ScratchStore of that session over the bucket, so whatever the query's code does
 * through the store lands in the session's scratch or is refused; its modules are the session's
 * queries, rebuilt from the specs in its scratch, and, to recompute lost stream data, the code the
 * session sent (loadQueryCode). The role the construct gives it is the other half: it may write
 * nothing but the scratch, whatever the code does around the store. It tells no driver anything.
 */
export function createQueryTaskHandler(deps: TaskHandlerDeps = {}): (event: SQSEvent, context?: TaskInvocationContext) => Promise<SQSBatchResponse> {
  let base: ObjectStore | undefined;
  const bucket = () => (base ??= deps.store ?? s3Store(functionConfig()));
  const sessions = new Map<string, TaskHandler>();
  const route = async (body: string) => {
    const message = decodeQueryTask(body);
    const id = `${message.session}/${message.code ?? ''}`;
    let tasks = sessions.get(id);
    if (!tasks) {
      const pipeline = message.code === undefined ? undefined : await loadQueryCode(bucket(), message.session, message.code);
      tasks = new TaskHandler(queryModules(pipeline), new ScratchStore(bucket(), message.session), { supersededCheckMs: SUPERSEDED_CHECK_MS, ...executionEnvironment() });
      sessions.set(id, tasks);
      if (sessions.size > KEPT_SESSIONS) sessions.delete(sessions.keys().next().value!);
    }
    return { tasks, body: message.task };
  };
  return sqsTaskFunction('queries', route, deps, () => undefined);
}

/** The task handler a message's task runs on, and the task message itself. */
type Route = (body: string) => Promise<{ tasks: TaskHandler; body: string }>;

function sqsTaskFunction(
  metricsName: string,
  route: Route,
  deps: TaskHandlerDeps,
  notifierOf: () => TaskNotifier | undefined,
): (event: SQSEvent, context?: TaskInvocationContext) => Promise<SQSBatchResponse> {
  let queue: Pick<TaskQueue, 'changeVisibility' | 'deadLetter'> | undefined;
  const taskQueue = () => (queue ??= deps.queue ?? sqsQueue(functionConfig()));
  const maxTaskAttempts = () => deps.maxTaskAttempts ?? functionConfig().maxTaskAttempts;
  let notifier: { notify?: TaskNotifier } | undefined;
  const notify = async (task: TaskRecord | undefined) => {
    notifier ??= { notify: notifierOf() };
    if (!task || !notifier.notify) return;
    const { scope, stage, partition } = task;
    try {
      await notifier.notify({ scope, stage, partition });
    } catch (error) {
      // A hint: without it the driver finds the outcome at its next fallback poll.
      log.warn(`could not notify the driver that task ${scope} ${stage} partition ${partition} settled; it finds out at its next poll`, { scope, stage, partition, error });
    }
  };

  return async (event, context) => {
    const records = recordsOf(event);
    const batchItemFailures: SQSBatchItemFailure[] = [];
    let failed = 0;
    // One task at a time: each holds a partition in memory, and the batch shares the function's.
    for (const record of records) {
      const { settlement, task } = await runRecord(route, record, maxTaskAttempts, context);
      // Each notice once its task's outcome is durable (a completion, final failure, fetch failure
      // or dead letter), and at once: the driver may be waiting for just this task.
      if (settlement.kind === 'done' || settlement.kind === 'recorded') {
        await notify(task);
        continue;
      }
      failed++;
      if (settlement.kind === 'dead-letter' && (await deadLetterNow(taskQueue, record, settlement.reason))) {
        await notify(task);
        continue;
      }
      batchItemFailures.push({ itemIdentifier: record.messageId });
      await retrySoon(taskQueue, record);
    }
    if (failed > 0) publishTaskFailures(metricsName, failed, Date.now());
    return { batchItemFailures };
  };
}

/**
 * Moves the message to the dead-letter queue now rather than after one more visibility timeout
 * (the last retry delay, over a minute) and a receive, so that the driver, draining dead letters
 * every poll, fails the interval within seconds. True when it is there: the handler then reports
 * success and the event source mapping deletes the original. If the move fails, the message goes
 * back to the queue, and SQS's redrive dead-letters it as before.
 */
async function deadLetterNow(queue: () => Pick<TaskQueue, 'deadLetter'>, record: SQSRecord, reason: string): Promise<boolean> {
  try {
    await queue().deadLetter({ id: record.messageId, body: record.body, receipt: record.receiptHandle, receiveCount: receiveCountOf(record) }, reason);
    return true;
  } catch (error) {
    log.warn(`could not dead-letter message ${record.messageId} at once; it returns to the queue and SQS dead-letters it once its receives run out`, {
      messageId: record.messageId,
      error,
    });
    return false;
  }
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
    log.warn(`could not shorten the visibility of failed message ${record.messageId} to ${delayMs} ms; it returns after the queue's visibility timeout`, {
      messageId: record.messageId,
      error,
    });
  }
}

/** Runs one message: done with (the task completed, was already complete, or reported lost inputs), or how it failed. */
async function runRecord(route: Route, record: SQSRecord, maxTaskAttempts: () => number, context?: TaskInvocationContext): Promise<Ran> {
  const receiveCount = receiveCountOf(record);
  const settle = (error: unknown): Settlement => {
    const settlement = settlementOf(error);
    if (settlement === 'dead-letter') return { kind: 'dead-letter', reason: describeError(error) };
    if (settlement === 'recorded') return { kind: 'recorded' };
    // Retried, unless this was its last allowed delivery: then dead-lettered now, not after one more timeout.
    const allowed = maxTaskAttempts();
    if (receiveCount < allowed) return { kind: 'retry' };
    return { kind: 'dead-letter', reason: `failed its last allowed delivery (${receiveCount} of ${allowed}): ${describeError(error)}` };
  };
  let task: TaskRecord;
  let tasks: TaskHandler;
  try {
    if (typeof record.body !== 'string') throw new InvalidTaskMessageError(`the message body is a ${typeof record.body}, not a string`);
    const routed = await route(record.body);
    tasks = routed.tasks;
    task = await tasks.decode(routed.body);
  } catch (error) {
    const settlement = settle(error);
    log.error(`message ${record.messageId} is not a dstream task; ${OUTCOME[settlement.kind as Exclude<Settlement['kind'], 'done'>]}`, {
      messageId: record.messageId,
      receiveCount,
      error,
    });
    return { settlement };
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
    return { settlement: { kind: 'done' }, task };
  } catch (error) {
    const settlement = settle(error);
    log.error(
      `task ${task.scope} ${task.stage} partition ${task.partition} failed on delivery ${receiveCount}; ${OUTCOME[settlement.kind as Exclude<Settlement['kind'], 'done'>]}`,
      { messageId: record.messageId, receiveCount, scope: task.scope, stage: task.stage, partition: task.partition, attempt: task.attempt, copy: task.copy, error },
    );
    return { settlement, task };
  } finally {
    clearTimeout(notice);
  }
}

const describeError = (error: unknown) => (error instanceof Error ? `${error.name}: ${error.message}` : String(error));

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

/**
 * The Lambda execution environment running this function, from its log stream's name
 * (`2026/12/01/[$LATEST]<id>`): the UI draws one lane of tasks per environment.
 */
function executionEnvironment(): { executor?: string } {
  const stream = process.env.AWS_LAMBDA_LOG_STREAM_NAME;
  return stream ? { executor: `lambda-${stream.slice(stream.lastIndexOf(']') + 1, stream.lastIndexOf(']') + 9)}` } : {};
}
