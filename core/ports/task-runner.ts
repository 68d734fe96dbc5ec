import type { TaskDone } from '../exec/task.ts';

/**
 * What consumes the task queue and runs each task with the task code (core/runtime/task-handler):
 * locally a pool of worker processes or a loop in this process; on AWS, Lambda's SQS event source
 * mapping in front of the task function, which needs no code of ours to start or stop.
 */
export interface TaskRunner {
  start(): Promise<void>;
  /** Stops taking tasks; a task running when it stops may be redelivered to a later runner. */
  stop(): Promise<void>;
}

/** A task a runner saw start or settle: a hint of what to read, never a record (the store holds those). */
export interface TaskNotice {
  scope: string;
  stage: string;
  partition: number;
  event: 'started' | 'settled';
  /**
   * A settled task's completion record, as the store holds it, where the runner has it (it wrote
   * the record, or read it, a moment ago): the scheduler takes it rather than reading it back.
   * Absent when the runner has none to give (a fetch failure, a final failure, a copy that lost).
   */
  done?: TaskDone;
}

/**
 * A runner that hands tasks to its workers itself (the embedded runtime's) knows which ones
 * started and settled: the scheduler reads those tasks' records instead of listing every task
 * folder on each poll. Hints only: a notice lost or never given delays what the scheduler learns
 * until its next full listing, and changes nothing else.
 */
export interface TaskNotices {
  /** The notices since the last call, oldest first. */
  takeNotices(): TaskNotice[];
}

/** Notices kept for a scheduler that does not ask (a batch run): past this many, the oldest go. */
const MAX_NOTICES = 10_000;

/** The notices a runner has given and the scheduler not yet taken. */
export class NoticeBoard implements TaskNotices {
  private notices: TaskNotice[] = [];

  post(task: { scope: string; stage: string; partition: number }, event: TaskNotice['event'], done?: TaskDone): void {
    this.notices.push({ scope: task.scope, stage: task.stage, partition: task.partition, event, ...(done ? { done } : {}) });
    if (this.notices.length > MAX_NOTICES) this.notices.splice(0, this.notices.length - MAX_NOTICES);
  }

  takeNotices(): TaskNotice[] {
    const taken = this.notices;
    this.notices = [];
    return taken;
  }
}
