/**
 * The task queue port: at-least-once delivery with visibility timeouts, like SQS.
 * A received message is hidden for the visibility timeout; if it is not deleted by then it is
 * delivered again with a higher receive count. A message received more than `maxReceives`
 * times is moved to the dead-letter list instead of being delivered again.
 */
export interface QueueMessage {
  id: string;
  body: string;
  /** Opaque handle for delete and changeVisibility; valid for this delivery only. */
  receipt: string;
  /** 1 on the first delivery. */
  receiveCount: number;
}

export interface TaskQueue {
  /** Sends bodies; returns once every one is durably enqueued. */
  send(bodies: string[]): Promise<void>;
  /** Up to `max` visible messages, each hidden for `visibilityTimeoutMs`; waits up to `waitMs` for one. */
  receive(max: number, visibilityTimeoutMs: number, waitMs?: number): Promise<QueueMessage[]>;
  /** Acknowledges a delivery; deleting with a stale receipt is not an error. */
  delete(receipt: string): Promise<void>;
  /** Extends (or shortens) how long a delivery stays hidden, counted from now. */
  changeVisibility(receipt: string, visibilityTimeoutMs: number): Promise<void>;
  /**
   * Moves a delivery to the dead-letter list now, with its receive count and why, instead of
   * after its visibility timeout and one more receive: for a task that failed its last allowed
   * delivery, or a message no delivery could run. The caller still deletes the delivery.
   */
  deadLetter(message: QueueMessage, reason: string): Promise<void>;
  /** Messages that exceeded the receive bound, removed from the dead-letter list as they are returned. */
  drainDeadLetters(max: number): Promise<DeadLetter[]>;
}

export interface DeadLetter {
  id: string;
  body: string;
  receiveCount: number;
  /** Why it was dead-lettered, when whoever moved it there said (deadLetter). */
  reason?: string;
}
