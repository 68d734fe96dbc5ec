/**
 * The query queue of a deployment (`DStreamPipeline`'s `interactiveQueries`), as a shell session
 * sends to it (`--on-lambda <url>`): its dead-letter queue found from its redrive policy, and only
 * the session's dead letters drained from it, since every session of the bucket shares it.
 */
import { GetQueueAttributesCommand, GetQueueUrlCommand } from '@aws-sdk/client-sqs';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { isQueryTaskOf } from '../../core/query/query-message.ts';
import { makeSqsClient } from '../../functions/aws/clients.ts';
import { SqsTaskQueue } from '../../functions/aws/sqs-task-queue.ts';

/** Checks the queue is a query queue (it has a dead-letter queue) and answers the session's view of it. */
export async function queryQueue(queueUrl: string): Promise<(session: string) => TaskQueue> {
  const client = makeSqsClient();
  const missing = (why: string) =>
    new Error(`--on-lambda ${queueUrl}: ${why}; give the query queue (queryQueue) of a DStreamPipeline deployed with interactiveQueries: true, and credentials its grantQuery allows`);
  let policy: string | undefined;
  try {
    policy = (await client.send(new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['RedrivePolicy'] }))).Attributes?.RedrivePolicy;
  } catch (error) {
    throw missing(`the queue cannot be read (${error instanceof Error ? `${error.name}: ${error.message}` : String(error)})`);
  }
  const target = policy === undefined ? undefined : (JSON.parse(policy) as { deadLetterTargetArn?: string }).deadLetterTargetArn;
  if (!target) throw missing('the queue has no dead-letter queue, so it is no query queue');
  const [, , , , account, name] = target.split(':');
  const deadLetterQueueUrl = (await client.send(new GetQueueUrlCommand({ QueueName: name, QueueOwnerAWSAccountId: account }))).QueueUrl!;
  return (session) => new SqsTaskQueue({ client, queueUrl, deadLetterQueueUrl, ownsDeadLetter: isQueryTaskOf(session) });
}
