import type { QueueMessage, TaskQueue } from '../../core/ports/task-queue.ts';
import type { settlementOf } from '../../core/runtime/task-handler.ts';

/**
 * Carries out what the one policy (settlementOf) decided for a delivery that threw, as the task
 * Lambda does on SQS: acknowledged when its final failure is recorded, dead-lettered with the
 * reason when the message names no task, else returned to be retried after a delay that grows
 * with its deliveries.
 */
export async function settle(
  queue: Pick<TaskQueue, 'delete' | 'deadLetter' | 'changeVisibility'>,
  message: QueueMessage,
  settlement: ReturnType<typeof settlementOf>,
  reason: string,
  retryDelayMs: number,
): Promise<void> {
  switch (settlement) {
    case 'recorded':
      return queue.delete(message.receipt);
    case 'dead-letter':
      await queue.deadLetter(message, reason);
      return queue.delete(message.receipt);
    case 'retry':
      return queue.changeVisibility(message.receipt, retryDelayMs * message.receiveCount);
  }
}
