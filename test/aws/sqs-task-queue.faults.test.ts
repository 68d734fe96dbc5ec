/**
 * What the SQS adapter asks of SQS, and how it takes SQS's partial failures. No SQS emulator is
 * installed here and LocalStack is not always running, and no emulator fails some entries of a
 * batch on demand, so these tests mock the SDK client at its `send` boundary
 * (aws-sdk-client-mock), the only place these requests and faults can be observed and injected.
 * The behaviour of a real queue (visibility, redelivery, dead letters) is the contract, run
 * against LocalStack in sqs-task-queue.test.ts.
 */
import {
  DeleteMessageBatchCommand,
  DeleteMessageCommand,
  ReceiptHandleIsInvalid,
  ReceiveMessageCommand,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
  type SendMessageBatchCommandInput,
} from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { MAX_MESSAGE_BYTES, MessageTooLargeError, SqsTaskQueue } from '../../functions/aws/sqs-task-queue.ts';

const QUEUE = 'https://sqs.us-east-1.amazonaws.com/000000000000/tasks';
const DLQ = 'https://sqs.us-east-1.amazonaws.com/000000000000/tasks-dead';
const client = new SQSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
const sqs = mockClient(client);

const queue = (deadLetterQueueUrl?: string) =>
  new SqsTaskQueue({ client, queueUrl: QUEUE, deadLetterQueueUrl, sleep: async () => undefined });

const bodies = (count: number, prefix = 'task') => Array.from({ length: count }, (_, i) => `${prefix}-${i}`);
const sentBatches = () =>
  sqs.commandCalls(SendMessageBatchCommand).map((call) => call.args[0].input.Entries!.map((entry) => entry.MessageBody));

/** SendMessageBatch that fails the entries `failing` picks, the way SQS reports it: in `Failed`, with status 200. */
function answerBatches(failing: (body: string, call: number) => boolean, senderFault = false) {
  let call = 0;
  sqs.on(SendMessageBatchCommand).callsFake((input: SendMessageBatchCommandInput) => {
    call++;
    const entries = input.Entries!;
    const failed = entries.filter((entry) => failing(entry.MessageBody!, call));
    return {
      Successful: entries.filter((entry) => !failed.includes(entry)).map((entry) => ({ Id: entry.Id, MessageId: `m-${entry.MessageBody}` })),
      Failed: failed.map((entry) => ({ Id: entry.Id, Code: 'InternalError', Message: 'try again', SenderFault: senderFault })),
    };
  });
}

beforeEach(() => sqs.reset());

describe('SqsTaskQueue.send batching', () => {
  it('sends at most 10 messages per SendMessageBatch, every body once, in order', async () => {
    answerBatches(() => false);
    await queue().send(bodies(23));
    expect(sentBatches().map((batch) => batch.length)).toEqual([10, 10, 3]);
    expect(sentBatches().flat()).toEqual(bodies(23));
  });

  it('keeps the bodies of one batch within 256 KiB', async () => {
    answerBatches(() => false);
    const large = Array.from({ length: 5 }, (_, i) => String(i).repeat(100 * 1024));
    await queue().send(large);
    expect(sentBatches().map((batch) => batch.length)).toEqual([2, 2, 1]);
  });

  it('a body over 256 KiB is refused before anything is sent, naming which and how big', async () => {
    answerBatches(() => false);
    const tooBig = 'x'.repeat(MAX_MESSAGE_BYTES + 1);
    const sending = queue().send(['small', tooBig]);
    await expect(sending).rejects.toBeInstanceOf(MessageTooLargeError);
    await expect(sending).rejects.toThrow(`task queue message 1 is ${MAX_MESSAGE_BYTES + 1} bytes`);
    expect(sqs.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
  });

  it('an empty body is refused with a clear error', async () => {
    await expect(queue().send(['ok', ''])).rejects.toThrow('task queue message 1 is empty');
  });

  it('a character SQS does not carry is refused, naming the message, the character and where it is', async () => {
    await expect(queue().send(['fine \u{10FFFF}', 'bad \u0000'])).rejects.toThrow('task queue message 1 contains U+0000 at index 4');
    await expect(queue().send(['lone \uD800 surrogate'])).rejects.toThrow('task queue message 0 contains U+D800 at index 5');
    expect(sqs.commandCalls(SendMessageBatchCommand)).toHaveLength(0);
  });
});

describe('SqsTaskQueue.send under partial batch failure', () => {
  it('resends only the 3 of 10 entries that failed, and then succeeds', async () => {
    const flaky = new Set(['task-2', 'task-5', 'task-9']);
    answerBatches((body, call) => call === 1 && flaky.has(body));
    await queue().send(bodies(10));
    expect(sentBatches()).toEqual([bodies(10), ['task-2', 'task-5', 'task-9']]);
  });

  it('an entry that keeps failing ends in an error naming how many were not sent, and where', async () => {
    answerBatches((body) => body === 'task-7');
    await expect(queue().send(bodies(10))).rejects.toThrow(
      `1 of 10 messages were not sent to ${QUEUE}; SQS refused them with InternalError: try again`,
    );
    expect(sentBatches()).toEqual([bodies(10), ['task-7'], ['task-7']]);
  });

  it('an entry refused by the sender’s fault is not resent', async () => {
    answerBatches((body) => body === 'task-0', true);
    await expect(queue().send(bodies(2))).rejects.toThrow('1 of 2 messages were not sent');
    expect(sentBatches()).toEqual([bodies(2)]);
  });
});

describe('SqsTaskQueue.receive', () => {
  it('long-polls for the wait rounded up to whole seconds, at most 20, and hides for the visibility rounded up', async () => {
    sqs.on(ReceiveMessageCommand).resolves({});
    await queue().receive(25, 1_500, 1_200);
    await queue().receive(1, 30_000, 60_000);
    await queue().receive(1, 1);
    const inputs = sqs.commandCalls(ReceiveMessageCommand).map((call) => call.args[0].input);
    expect(inputs.map(({ MaxNumberOfMessages, VisibilityTimeout, WaitTimeSeconds }) => ({ MaxNumberOfMessages, VisibilityTimeout, WaitTimeSeconds }))).toEqual([
      { MaxNumberOfMessages: 10, VisibilityTimeout: 2, WaitTimeSeconds: 2 },
      { MaxNumberOfMessages: 1, VisibilityTimeout: 30, WaitTimeSeconds: 20 },
      { MaxNumberOfMessages: 1, VisibilityTimeout: 1, WaitTimeSeconds: 0 },
    ]);
    expect(inputs.every((input) => input.MessageSystemAttributeNames?.includes('ApproximateReceiveCount'))).toBe(true);
  });

  it('reports the receive count SQS counted', async () => {
    sqs.on(ReceiveMessageCommand).resolves({
      Messages: [{ MessageId: 'm1', Body: 'b', ReceiptHandle: 'r1', Attributes: { ApproximateReceiveCount: '3' } }],
    });
    expect(await queue().receive(1, 1_000)).toEqual([{ id: 'm1', body: 'b', receipt: 'r1', receiveCount: 3 }]);
  });

  it('a visibility timeout beyond SQS’s 12 hours is refused with a clear error', async () => {
    await expect(queue().receive(1, 13 * 3_600_000)).rejects.toThrow('visibility timeout must be between 0 and 43200000 ms');
  });
});

describe('SqsTaskQueue.delete', () => {
  it('a stale receipt is not an error', async () => {
    sqs.on(DeleteMessageCommand).rejects(new ReceiptHandleIsInvalid({ $metadata: {}, message: 'The receipt handle has expired' }));
    await expect(queue().delete('stale')).resolves.toBeUndefined();
  });

  it('any other failure is', async () => {
    sqs.on(DeleteMessageCommand).rejects(Object.assign(new Error('denied'), { name: 'AccessDenied' }));
    await expect(queue().delete('r')).rejects.toThrow('denied');
  });
});

describe('SqsTaskQueue.drainDeadLetters', () => {
  it('returns what the dead-letter queue holds, counting the deliveries before it got there, and deletes it there', async () => {
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: DLQ })
      .resolvesOnce({ Messages: [{ MessageId: 'm1', Body: 'poison', ReceiptHandle: 'r1', Attributes: { ApproximateReceiveCount: '4' } }] })
      .resolves({});
    sqs.on(DeleteMessageBatchCommand).resolves({});
    // Delivered 3 times from the task queue; the drain's receive from the dead-letter queue made it 4.
    expect(await queue(DLQ).drainDeadLetters(10)).toEqual([{ id: 'm1', body: 'poison', receiveCount: 3 }]);
    expect(sqs.commandCalls(DeleteMessageBatchCommand).map((call) => call.args[0].input)).toEqual([
      { QueueUrl: DLQ, Entries: [{ Id: '0', ReceiptHandle: 'r1' }] },
    ]);
  });

  it('reads the receive count and reason of a letter the task function moved there itself, not its count in the dead-letter queue', async () => {
    sqs
      .on(ReceiveMessageCommand, { QueueUrl: DLQ })
      .resolvesOnce({
        Messages: [
          {
            MessageId: 'm2',
            Body: 'task',
            ReceiptHandle: 'r2',
            Attributes: { ApproximateReceiveCount: '1' },
            MessageAttributes: {
              DstreamReceiveCount: { DataType: 'Number', StringValue: '5' },
              DstreamReason: { DataType: 'String', StringValue: 'failed its last allowed delivery (5 of 5): Error: boom' },
            },
          },
        ],
      })
      .resolves({});
    sqs.on(DeleteMessageBatchCommand).resolves({});
    expect(await queue(DLQ).drainDeadLetters(10)).toEqual([{ id: 'm2', body: 'task', receiveCount: 5, reason: 'failed its last allowed delivery (5 of 5): Error: boom' }]);
    expect(sqs.commandCalls(ReceiveMessageCommand)[0]!.args[0].input.MessageAttributeNames).toEqual(['DstreamReceiveCount', 'DstreamReason']);
  });

  it('without a dead-letter queue there is nothing to drain', async () => {
    expect(await queue().drainDeadLetters(10)).toEqual([]);
    expect(sqs.commandCalls(ReceiveMessageCommand)).toHaveLength(0);
  });
});

describe('SqsTaskQueue.deadLetter', () => {
  const delivery = { id: 'm1', body: '{"v":1}', receipt: 'r1', receiveCount: 5 };

  // Throttling is retried by the SDK, below the `send` this test mocks (sdk-retries.test.ts).
  it('sends the body to the dead-letter queue with the delivery count and the reason', async () => {
    sqs.on(SendMessageCommand).resolves({ MessageId: 'd1' });
    await queue(DLQ).deadLetter(delivery, 'failed its last allowed delivery (5 of 5): Error: boom');
    const sent = sqs.commandCalls(SendMessageCommand).map((call) => call.args[0].input);
    expect(sent.at(-1)).toEqual({
      QueueUrl: DLQ,
      MessageBody: '{"v":1}',
      MessageAttributes: {
        DstreamReceiveCount: { DataType: 'Number', StringValue: '5' },
        DstreamReason: { DataType: 'String', StringValue: 'failed its last allowed delivery (5 of 5): Error: boom' },
      },
    });
  });

  it('cuts a long reason, so that it fits beside the largest body', async () => {
    sqs.on(SendMessageCommand).resolves({ MessageId: 'd1' });
    await queue(DLQ).deadLetter(delivery, 'x'.repeat(5000));
    expect(sqs.commandCalls(SendMessageCommand)[0]!.args[0].input.MessageAttributes!.DstreamReason!.StringValue).toHaveLength(1000);
  });

  it('without a dead-letter queue it fails, naming the message, so the caller returns it to the queue', async () => {
    await expect(queue().deadLetter(delivery, 'why')).rejects.toThrow('SqsTaskQueue has no deadLetterQueueUrl to move message m1 to');
    expect(sqs.commandCalls(SendMessageCommand)).toHaveLength(0);
  });
});
