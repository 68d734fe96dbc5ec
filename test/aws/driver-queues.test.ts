/**
 * The driver's two queues through the real SDK v3 client: the wake queue's delayed messages, and
 * the events queue the driver long polls while a stage runs. What they ask of SQS is checked with
 * the client mocked at its `send` boundary (aws-sdk-client-mock: no SQS emulator is installed here,
 * see sqs-task-queue.faults.test.ts); how a real queue answers, against LocalStack when it runs.
 */
import { CreateQueueCommand, DeleteMessageCommand, DeleteQueueCommand, ReceiveMessageCommand, SendMessageCommand, SQSClient } from '@aws-sdk/client-sqs';
import { mockClient } from 'aws-sdk-client-mock';
import { randomBytes } from 'node:crypto';
import { beforeEach, describe, expect, it } from 'vitest';
import { queueChangeFeed } from '../../core/ports/change-feed.ts';
import { makeSqsClient } from '../../functions/aws/clients.ts';
import { SqsTaskQueue } from '../../functions/aws/sqs-task-queue.ts';
import { SqsWakeQueue } from '../../functions/aws/sqs-wake-queue.ts';
import { findLocalStack, LOCALSTACK_CREDENTIALS } from './localstack.ts';

const QUEUE = 'https://sqs.us-east-1.amazonaws.com/000000000000/driver';
const client = new SQSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
const sqs = mockClient(client);

beforeEach(() => sqs.reset());

describe('the wake queue', () => {
  it('sends a wake message delayed to the whole second before its time, 900 s at most', async () => {
    sqs.on(SendMessageCommand).resolves({ MessageId: 'm' });
    const wake = new SqsWakeQueue({ client, queueUrl: QUEUE });
    await wake.send({ source: 'dstream.wake', reason: 'timer', owner: 'driver-a', quiet: 3 }, 9_500);
    await wake.send({ source: 'dstream.wake', reason: 'timer', owner: 'driver-a', quiet: 3 }, 3_600_000);
    await wake.send({ source: 'dstream.wake', reason: 'upload' }, 0);
    const sent = sqs.commandCalls(SendMessageCommand).map((call) => call.args[0].input);
    expect(sent.map((input) => [input.QueueUrl, input.DelaySeconds])).toEqual([[QUEUE, 9], [QUEUE, 900], [QUEUE, 0]]);
    expect(JSON.parse(sent[0]!.MessageBody!)).toEqual({ source: 'dstream.wake', reason: 'timer', owner: 'driver-a', quiet: 3 });
  });

  it('refuses a negative delay, naming it', async () => {
    await expect(new SqsWakeQueue({ client, queueUrl: QUEUE }).send({ source: 'dstream.wake', reason: 'timer' }, -1)).rejects.toThrow("a wake message's delay must be >= 0 ms, got -1");
  });
});

describe('the events queue as the driver waits on it', () => {
  it('long polls for up to the wait, in whole seconds, and deletes every notice it received', async () => {
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [{ MessageId: '1', ReceiptHandle: 'r1', Body: '{}' }, { MessageId: '2', ReceiptHandle: 'r2', Body: '{}' }] });
    sqs.on(DeleteMessageCommand).resolves({});
    await queueChangeFeed(new SqsTaskQueue({ client, queueUrl: QUEUE })).waitForChange(5_000);
    expect(sqs.commandCalls(ReceiveMessageCommand).map((call) => [call.args[0].input.WaitTimeSeconds, call.args[0].input.MaxNumberOfMessages])).toEqual([[5, 10]]);
    expect(sqs.commandCalls(DeleteMessageCommand).map((call) => call.args[0].input.ReceiptHandle).sort()).toEqual(['r1', 'r2']);
  });

  it('a notice it could not delete is left to come back (one more look), not an error', async () => {
    sqs.on(ReceiveMessageCommand).resolves({ Messages: [{ MessageId: '1', ReceiptHandle: 'r1', Body: '{}' }] });
    sqs.on(DeleteMessageCommand).rejects(new Error('throttled'));
    await expect(queueChangeFeed(new SqsTaskQueue({ client, queueUrl: QUEUE })).waitForChange(1_000)).resolves.toBeUndefined();
  });
});

const localStack = await findLocalStack('sqs', 'the driver queues');

(localStack ? describe : describe.skip)('the driver queues on LocalStack', () => {
  const real = makeSqsClient({ AWS_ENDPOINT_URL: localStack }, { credentials: LOCALSTACK_CREDENTIALS });

  it('a notice ends a wait at once, and is gone for the next, which runs its time out', async () => {
    const { QueueUrl } = await real.send(new CreateQueueCommand({ QueueName: `dstream-test-${randomBytes(6).toString('hex')}` }));
    try {
      const events = new SqsTaskQueue({ client: real, queueUrl: QueueUrl! });
      const feed = queueChangeFeed(events);
      await events.send([JSON.stringify({ scope: 'interval=000000', stage: 's', partition: 0 })]);
      const woken = Date.now();
      await feed.waitForChange(20_000);
      const wokenAfter = Date.now() - woken;
      const empty = Date.now();
      await feed.waitForChange(1_000);
      const emptyAfter = Date.now() - empty;
      expect(wokenAfter).toBeLessThan(10_000);
      expect(emptyAfter).toBeGreaterThanOrEqual(900);
    } finally {
      await real.send(new DeleteQueueCommand({ QueueUrl }));
    }
  });
});
