import { SendMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import type { WakeMessage } from '../driver/wake.ts';

/** SQS's longest delivery delay: a longer wait is chained, the woken driver setting the next timer. */
export const MAX_WAKE_DELAY_MS = 900_000;

export interface SqsWakeQueueOptions {
  client: SQSClient;
  queueUrl: string;
}

/**
 * The driver wake queue, which triggers the driver function (its event source mapping). A delay
 * is rounded down to whole seconds: the driver it wakes waits out the rest of the second in its
 * invocation, rather than the stream waiting for SQS's next second.
 */
export class SqsWakeQueue {
  constructor(private readonly options: SqsWakeQueueOptions) {}

  async send(message: WakeMessage, delayMs: number): Promise<void> {
    if (!(delayMs >= 0)) throw new RangeError(`a wake message's delay must be >= 0 ms, got ${delayMs}`);
    await this.options.client.send(
      new SendMessageCommand({
        QueueUrl: this.options.queueUrl,
        MessageBody: JSON.stringify(message),
        DelaySeconds: Math.floor(Math.min(delayMs, MAX_WAKE_DELAY_MS) / 1000),
      }),
    );
  }
}
