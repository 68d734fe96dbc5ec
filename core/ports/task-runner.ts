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
