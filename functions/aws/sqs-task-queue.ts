/**
 * The task queue port on SQS. Moving a message that was received too often to the dead-letter
 * queue is SQS's own work, configured by the queue's redrive policy (maxReceiveCount); this
 * adapter reads the dead-letter queue back, and sends a message there itself when the task
 * function settles it at once (deadLetter), saying how often it was delivered and why.
 */
import {
  ChangeMessageVisibilityCommand,
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  type BatchResultErrorEntry,
  type Message,
  type SendMessageBatchRequestEntry,
  type SQSClient,
} from '@aws-sdk/client-sqs';
import type { DeadLetter, QueueMessage, TaskQueue } from '../../core/ports/task-queue.ts';
import { mapConcurrently } from '../../core/util/map-concurrently.ts';
import { systemClock } from '../../core/ports/clock.ts';
import { attemptsOf, backoffMs } from './clients.ts';

/** SQS's limit for one message, and for the sum of the bodies in one batch. */
export const MAX_MESSAGE_BYTES = 256 * 1024;
const MAX_BATCH_ENTRIES = 10;
const MAX_WAIT_SECONDS = 20;
const MAX_VISIBILITY_SECONDS = 12 * 60 * 60;
/** How long drained dead letters stay hidden while we delete them. */
const DRAIN_VISIBILITY_SECONDS = 30;
/** What SQS refuses in a body: control characters, lone surrogates, U+FFFE and U+FFFF. */
const NOT_AN_SQS_CHARACTER = /[^\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u;
/** Message attributes of a letter deadLetter sent: SQS's receive count starts again in the dead-letter queue. */
const RECEIVE_COUNT_ATTRIBUTE = 'DstreamReceiveCount';
const REASON_ATTRIBUTE = 'DstreamReason';
/** A reason is cut to this, so that it fits beside the largest body SQS takes. */
const MAX_REASON_CHARS = 1000;
/** Batches sent at the same time. */
const SEND_CONCURRENCY = 4;

export interface SqsTaskQueueOptions {
  client: SQSClient;
  queueUrl: string;
  /** The queue's redrive target; without it nothing is ever dead-lettered and the drain finds nothing. */
  deadLetterQueueUrl?: string;
  /** Waits between resends of the entries a batch failed; injectable so that tests do not wait. @default real time */
  sleep?: (ms: number) => Promise<void>;
  /**
   * For a dead-letter queue several consumers share (the query queue's, one per shell session):
   * which letters this one drains. Another's is left there, hidden for the drain's visibility
   * timeout (30 s), for its owner's next drain. @default every letter
   */
  ownsDeadLetter?: (body: string) => boolean;
}

export class MessageTooLargeError extends Error {
  constructor(readonly index: number, readonly bytes: number) {
    super(
      `task queue message ${index} is ${bytes} bytes; SQS takes at most ${MAX_MESSAGE_BYTES} bytes per message ` +
        '(store a large task descriptor in the object store and send its key)',
    );
    this.name = 'MessageTooLargeError';
  }
}

export class MessagesNotSentError extends Error {
  constructor(readonly unsent: number, readonly total: number, queueUrl: string, failures: BatchResultErrorEntry[]) {
    const reasons = [...new Set(failures.map((failure) => `${failure.Code}${failure.Message ? `: ${failure.Message}` : ''}`))];
    super(`${unsent} of ${total} messages were not sent to ${queueUrl}; SQS refused them with ${reasons.join('; ')}`);
    this.name = 'MessagesNotSentError';
  }
}

export class SqsTaskQueue implements TaskQueue {
  private readonly client: SQSClient;
  private readonly queueUrl: string;
  private readonly deadLetterQueueUrl: string | undefined;
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly ownsDeadLetter: (body: string) => boolean;

  constructor(options: SqsTaskQueueOptions) {
    if (!options.queueUrl) throw new Error('SqsTaskQueue needs a queueUrl');
    this.client = options.client;
    this.queueUrl = options.queueUrl;
    this.deadLetterQueueUrl = options.deadLetterQueueUrl;
    this.sleep = options.sleep ?? systemClock.sleep;
    this.ownsDeadLetter = options.ownsDeadLetter ?? (() => true);
  }

  async send(bodies: string[]): Promise<void> {
    if (!Array.isArray(bodies)) throw new TypeError('send takes an array of message bodies');
    const batches = packBatches(bodies);
    const failures = (await mapConcurrently(batches, SEND_CONCURRENCY, (batch) => this.sendBatch(batch))).flat();
    if (failures.length > 0) throw new MessagesNotSentError(failures.length, bodies.length, this.queueUrl, failures);
  }

  async receive(max: number, visibilityTimeoutMs: number, waitMs = 0): Promise<QueueMessage[]> {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`receive max must be an integer >= 1, got ${max}`);
    if (!(waitMs >= 0)) throw new RangeError(`receive waitMs must be >= 0, got ${waitMs}`);
    const response = await this.client.send(
      new ReceiveMessageCommand({
        QueueUrl: this.queueUrl,
        MaxNumberOfMessages: Math.min(max, MAX_BATCH_ENTRIES),
        VisibilityTimeout: visibilitySeconds(visibilityTimeoutMs),
        // Rounded up: a wait of 0 s is short polling, which samples only some SQS servers and
        // may come back empty while the queue holds messages.
        WaitTimeSeconds: Math.min(MAX_WAIT_SECONDS, Math.ceil(waitMs / 1000)),
        MessageSystemAttributeNames: ['ApproximateReceiveCount'],
      }),
    );
    return (response.Messages ?? []).map(toQueueMessage);
  }

  async delete(receipt: string): Promise<void> {
    try {
      await this.client.send(new DeleteMessageCommand({ QueueUrl: this.queueUrl, ReceiptHandle: receipt }));
    } catch (error) {
      // A receipt from an earlier delivery: the message was redelivered or is already gone.
      if ((error as Error).name !== 'ReceiptHandleIsInvalid') throw error;
    }
  }

  async changeVisibility(receipt: string, visibilityTimeoutMs: number): Promise<void> {
    await this.client.send(
      new ChangeMessageVisibilityCommand({
        QueueUrl: this.queueUrl,
        ReceiptHandle: receipt,
        VisibilityTimeout: visibilitySeconds(visibilityTimeoutMs),
      }),
    );
  }

  /** Sends the delivery's body to the dead-letter queue with its receive count and reason; the caller deletes the delivery. */
  async deadLetter(message: QueueMessage, reason: string): Promise<void> {
    const QueueUrl = this.deadLetterQueueUrl;
    if (!QueueUrl) throw new Error(`SqsTaskQueue has no deadLetterQueueUrl to move message ${message.id} to`);
    await this.client.send(
      new SendMessageCommand({
        QueueUrl,
        MessageBody: message.body,
        MessageAttributes: {
          [RECEIVE_COUNT_ATTRIBUTE]: { DataType: 'Number', StringValue: String(message.receiveCount) },
          [REASON_ATTRIBUTE]: { DataType: 'String', StringValue: reason.slice(0, MAX_REASON_CHARS) || '(no reason given)' },
        },
      }),
    );
  }

  /**
   * Receives from the dead-letter queue and deletes what it got; each letter's receiveCount is
   * how often the task queue delivered it. Short polls, so a drain may return fewer than the
   * queue holds; what it misses the next drain finds.
   */
  async drainDeadLetters(max: number): Promise<DeadLetter[]> {
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`drainDeadLetters max must be an integer >= 1, got ${max}`);
    const QueueUrl = this.deadLetterQueueUrl;
    if (!QueueUrl) return [];
    const drained: (QueueMessage & { attributes?: Message['MessageAttributes'] })[] = [];
    while (drained.length < max) {
      const response = await this.client.send(
        new ReceiveMessageCommand({
          QueueUrl,
          MaxNumberOfMessages: Math.min(max - drained.length, MAX_BATCH_ENTRIES),
          VisibilityTimeout: DRAIN_VISIBILITY_SECONDS,
          WaitTimeSeconds: 0,
          MessageSystemAttributeNames: ['ApproximateReceiveCount'],
          MessageAttributeNames: [RECEIVE_COUNT_ATTRIBUTE, REASON_ATTRIBUTE],
        }),
      );
      const received = (response.Messages ?? []).map((message) => ({ ...toQueueMessage(message), attributes: message.MessageAttributes }));
      if (received.length === 0) break;
      // Others' letters stay hidden while this drain goes on, so it ends.
      const messages = received.filter((message) => this.ownsDeadLetter(message.body));
      if (messages.length === 0) continue;
      // A delete that fails lets the letter reappear and be drained again: reported twice, never lost.
      await this.client.send(
        new DeleteMessageBatchCommand({
          QueueUrl,
          Entries: messages.map((message, index) => ({ Id: String(index), ReceiptHandle: message.receipt })),
        }),
      );
      drained.push(...messages);
    }
    return drained.map(({ id, body, receiveCount, attributes }) => {
      const sentCount = attributes?.[RECEIVE_COUNT_ATTRIBUTE]?.StringValue;
      const reason = attributes?.[REASON_ATTRIBUTE]?.StringValue;
      return {
        id,
        body,
        // Moved by SQS, the count travels with the message, and our own receive there adds one.
        receiveCount: sentCount === undefined ? receiveCount - 1 : Number(sentCount),
        ...(reason === undefined ? {} : { reason }),
      };
    });
  }

  /**
   * Sends one batch, resending only the entries SQS reports as failed (inside a success, which the
   * SDK does not retry), as many times as the client makes attempts. Entries failed by the
   * sender's fault (a malformed body) would fail again, so they are not resent.
   * Returns the failures that remain.
   */
  private async sendBatch(entries: SendMessageBatchRequestEntry[]): Promise<BatchResultErrorEntry[]> {
    let pending = entries;
    const refused: BatchResultErrorEntry[] = [];
    const attempts = await attemptsOf(this.client);
    for (let attempt = 1; ; attempt++) {
      const response = await this.client.send(new SendMessageBatchCommand({ QueueUrl: this.queueUrl, Entries: pending }));
      const failed = response.Failed ?? [];
      refused.push(...failed.filter((failure) => failure.SenderFault));
      const retryable = failed.filter((failure) => !failure.SenderFault);
      const retryIds = new Set(retryable.map((failure) => failure.Id));
      pending = pending.filter((entry) => retryIds.has(entry.Id));
      if (pending.length === 0 || attempt >= attempts) return [...refused, ...retryable];
      await this.sleep(backoffMs(attempt));
    }
  }
}

/** Batches of at most 10 entries and MAX_MESSAGE_BYTES of bodies, in order. */
function packBatches(bodies: string[]): SendMessageBatchRequestEntry[][] {
  const batches: SendMessageBatchRequestEntry[][] = [];
  let batch: SendMessageBatchRequestEntry[] = [];
  let batchBytes = 0;
  bodies.forEach((body, index) => {
    if (typeof body !== 'string') throw new TypeError(`task queue message ${index} is a ${typeof body}, not a string`);
    const bytes = Buffer.byteLength(body, 'utf8');
    if (bytes === 0) throw new RangeError(`task queue message ${index} is empty; SQS does not take empty messages`);
    if (bytes > MAX_MESSAGE_BYTES) throw new MessageTooLargeError(index, bytes);
    const forbidden = NOT_AN_SQS_CHARACTER.exec(body);
    if (forbidden) {
      const codePoint = forbidden[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');
      throw new RangeError(
        `task queue message ${index} contains U+${codePoint} at index ${forbidden.index}; SQS takes only tab, newline, ` +
          'carriage return and characters from U+0020 to U+D7FF, U+E000 to U+FFFD, U+10000 to U+10FFFF',
      );
    }
    if (batch.length === MAX_BATCH_ENTRIES || batchBytes + bytes > MAX_MESSAGE_BYTES) {
      batches.push(batch);
      batch = [];
      batchBytes = 0;
    }
    batch.push({ Id: String(batch.length), MessageBody: body });
    batchBytes += bytes;
  });
  if (batch.length > 0) batches.push(batch);
  return batches;
}

function visibilitySeconds(ms: number): number {
  const seconds = Math.ceil(ms / 1000);
  if (!(seconds >= 0 && seconds <= MAX_VISIBILITY_SECONDS)) {
    throw new RangeError(`visibility timeout must be between 0 and ${MAX_VISIBILITY_SECONDS * 1000} ms, got ${ms}`);
  }
  return seconds;
}

function toQueueMessage(message: Message): QueueMessage {
  return {
    id: message.MessageId!,
    body: message.Body ?? '',
    receipt: message.ReceiptHandle!,
    receiveCount: Number(message.Attributes?.ApproximateReceiveCount ?? 1),
  };
}
