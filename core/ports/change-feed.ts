/**
 * Where a driver waits between two looks at the store: until something may have changed (a task
 * settled, say) or `ms` passed, whichever comes first. Only a hint: the driver learns what changed
 * from the store, so a wake-up that was lost costs the wait, and one that was duplicated, stale
 * or meant for another driver costs a look.
 */
import type { TaskQueue } from './task-queue.ts';
import { NoticeBoard, type TaskNotice, type TaskNotices } from './task-runner.ts';

export interface ChangeFeed {
  /** Resolves once something may have changed, or after `ms` at most. */
  waitForChange(ms: number): Promise<void>;
}

/**
 * How long a received notice stays hidden if it could not be deleted: it then comes back, and
 * costs one more look, once this has passed.
 */
const NOTICE_VISIBILITY_MS = 30_000;

/**
 * A feed over a queue that task runners send notices to (on AWS, the "driver events" SQS queue):
 * a wait is a long poll of the queue, and whatever arrives is deleted, read or not. Each notice
 * names a settled task (`{scope, stage, partition}`); the feed keeps those as the scheduler's
 * notices, so that its poll reads the tasks named rather than listing every running stage. A body
 * that names no task only ends the wait. Waits at once (the schedulers of a driver's intervals in
 * flight) share one long poll, and all wake when it returns: the queue gives each notice to one
 * receiver only, which may not be the scheduler whose task it tells of. A wait that joins a poll
 * under way ends when that poll does, which is no later than its own `ms` when, as in a driver,
 * every waiter asks the same.
 */
export function queueChangeFeed(queue: Pick<TaskQueue, 'receive' | 'delete'>): ChangeFeed & TaskNotices {
  const board = new NoticeBoard();
  let polling: Promise<void> | undefined;
  const poll = async (ms: number) => {
    try {
      const notices = await queue.receive(10, NOTICE_VISIBILITY_MS, Math.max(0, ms));
      for (const notice of notices) {
        const task = settledTask(notice.body);
        if (task) board.post(task, 'settled');
      }
      // Not awaited one by one in the driver's path: a notice left behind costs a look, no more.
      await Promise.all(notices.map((notice) => queue.delete(notice.receipt).catch(() => undefined)));
    } finally {
      polling = undefined;
    }
  };
  return {
    waitForChange(ms) {
      polling ??= poll(ms);
      return polling;
    },
    takeNotices: () => board.takeNotices(),
  };
}

/** The task a notice names, if it names one. */
function settledTask(body: string): Omit<TaskNotice, 'event'> | undefined {
  try {
    const { scope, stage, partition } = JSON.parse(body) as Partial<TaskNotice>;
    if (typeof scope === 'string' && typeof stage === 'string' && Number.isSafeInteger(partition)) return { scope, stage, partition: partition! };
  } catch {
    // Not JSON: a wake-up all the same.
  }
  return undefined;
}
