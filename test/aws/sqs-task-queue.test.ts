/**
 * The SQS adapter against a real queue: LocalStack, when it is running. No SQS emulator is
 * installed in this repository (s3rver has no SQS counterpart among the dependencies), so without
 * LocalStack the contract does not run here; sqs-task-queue.faults.test.ts still checks the requests
 * the adapter makes and how it takes SQS's partial failures.
 */
import { CreateQueueCommand, DeleteQueueCommand, GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { randomBytes } from 'node:crypto';
import { beforeEach, describe } from 'vitest';
import { makeSqsClient } from '../../functions/aws/clients.ts';
import { SqsTaskQueue } from '../../functions/aws/sqs-task-queue.ts';
import { taskQueueContract } from '../contract/task-queue-contract.ts';
import { findLocalStack, LOCALSTACK_CREDENTIALS } from './localstack.ts';

const localStack = await findLocalStack('sqs', 'SqsTaskQueue contract');

/** Contract tests that ask more than SQS promises; skipped here, with the reason printed. */
const BEYOND_SQS: Record<string, string> = {
  'a delete with the receipt of an earlier delivery does not delete the message':
    'SQS documents that a DeleteMessage with an earlier receipt "will still succeed, but the message might not be ' +
    'deleted": it may be, and LocalStack does delete it (it keeps every receipt of a message valid until deletion)',
};

if (localStack) {
  console.warn(
    '\n!!! SqsTaskQueue contract on LocalStack skips:\n' +
      Object.entries(BEYOND_SQS).map(([test, reason]) => `    - "${test}": ${reason}`).join('\n') + '\n',
  );
}

(localStack ? describe : describe.skip)('SqsTaskQueue on LocalStack', () => {
  const client = makeSqsClient({ AWS_ENDPOINT_URL: localStack }, { credentials: LOCALSTACK_CREDENTIALS });
  beforeEach((context) => {
    const reason = BEYOND_SQS[context.task.name];
    if (reason) context.skip(reason);
  });

  // Each queue gets a dead-letter queue of its own, and a redrive policy moving a message there after maxReceives receives.
  taskQueueContract('SqsTaskQueue on LocalStack', async ({ maxReceives }) => {
    const name = `dstream-test-${randomBytes(6).toString('hex')}`;
    const { QueueUrl: deadLetterQueueUrl } = await client.send(new CreateQueueCommand({ QueueName: `${name}-dead` }));
    const { Attributes } = await client.send(
      new GetQueueAttributesCommand({ QueueUrl: deadLetterQueueUrl, AttributeNames: ['QueueArn'] }),
    );
    const { QueueUrl: queueUrl } = await client.send(
      new CreateQueueCommand({
        QueueName: name,
        Attributes: {
          RedrivePolicy: JSON.stringify({ deadLetterTargetArn: Attributes!.QueueArn, maxReceiveCount: maxReceives }),
        },
      }),
    );
    return {
      queue: new SqsTaskQueue({ client, queueUrl: queueUrl!, deadLetterQueueUrl }),
      cleanup: async () => {
        await client.send(new DeleteQueueCommand({ QueueUrl: queueUrl }));
        await client.send(new DeleteQueueCommand({ QueueUrl: deadLetterQueueUrl }));
      },
    };
  });
});
