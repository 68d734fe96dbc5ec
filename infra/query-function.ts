/**
 * Interactive queries on Lambda (DStreamPipeline's `interactiveQueries`): the query function, the
 * task function's code with DSTREAM_ROLE=query (functions/task/handler.ts), fed by a queue of its
 * own, so shell sessions (`dstream shell --bucket <b> --on-lambda <url>`) never take the stream's
 * task concurrency; and what it and a shell may do to the bucket. The function runs each task on
 * its session's scratch store; its role is the other half: whatever the code sent it does around
 * that store, it may write nothing but `queries/`, and not the code objects there.
 */
import { Duration, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import type { Construct } from 'constructs';
import { QUERIES_PREFIX, QUERY_CODE_PREFIX } from '../core/layout.ts';
import { bucketAccessStatements, type BucketAccess } from './bucket-access.ts';

/**
 * The query function's share of the bucket: it reads every key (a query reads any of the stream's
 * data, and recomputes lost partitions from the uploads its lineage pins) and writes and deletes
 * only under `queries/`: the sessions' scratch. The code objects under `queries/code/` it reads,
 * and is denied writing (QUERY_CODE_WRITES).
 */
export const QUERY_FUNCTION_ACCESS: BucketAccess = {
  read: ['*'],
  readVersions: ['incoming/*'],
  list: [],
  write: [`${QUERIES_PREFIX}*`],
  delete: [`${QUERIES_PREFIX}*`],
};

/**
 * A shell's share (grantQuery): it reads what its queries plan from (lineage, outputs, anything a
 * query names), and writes and removes its session's scratch and the code it sends the function.
 */
export const QUERY_SHELL_ACCESS: BucketAccess = {
  read: ['*'],
  readVersions: [],
  list: [],
  write: [`${QUERIES_PREFIX}*`],
  delete: [`${QUERIES_PREFIX}*`],
};

/** What nothing but a shell may do to the code objects: the function loads what is there, checked against its hash. */
const QUERY_CODE_WRITES = ['s3:PutObject', 's3:AbortMultipartUpload', 's3:DeleteObject'];

/**
 * A query task left unrun a day has no session waiting for it. The dead-letter queue keeps no
 * longer: SQS dates a message it moves there by its first enqueue, and a session drains its own
 * letters within a poll of their arrival, so a letter still there belongs to a session that ended.
 */
const QUERY_RETENTION = Duration.days(1);

export interface QueryFunctionProps {
  readonly bucket: s3.IBucket;
  readonly encryptionKey?: kms.IKey;
  /** As the task queue's: a query task's deliveries before it is dead-lettered. */
  readonly maxTaskAttempts: number;
  /** As the task queue's: how long a delivery is hidden, from the function's timeout. */
  readonly visibilityTimeout: Duration;
  /** Most query tasks running at once: its event source's maximum concurrency. */
  readonly concurrency: number;
  /** The task function's asset, with its own role, granted `access`, and the environment given. */
  readonly makeFunction: (access: BucketAccess, environment: Record<string, string>) => lambda.Function;
  /** The settings the query function shares with the task function (the bucket, the log options). */
  readonly environment: Record<string, string>;
}

/** The query function, its queue and that queue's dead-letter queue, in `scope`. */
export interface QueryFunction {
  readonly queue: sqs.Queue;
  readonly deadLetterQueue: sqs.Queue;
  readonly function: lambda.Function;
}

export function addQueryFunction(scope: Construct, props: QueryFunctionProps): QueryFunction {
  const deadLetterQueue = new sqs.Queue(scope, 'QueryDeadLetterQueue', {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: QUERY_RETENTION,
  });
  Validations.of(deadLetterQueue).acknowledge({
    id: 'AwsSolutions-SQS3',
    reason: 'This queue is itself the dead-letter queue of the query queue; the shell sessions drain their own letters from it.',
  });
  const queue = new sqs.Queue(scope, 'QueryQueue', {
    encryption: sqs.QueueEncryption.SQS_MANAGED,
    enforceSSL: true,
    retentionPeriod: QUERY_RETENTION,
    visibilityTimeout: props.visibilityTimeout,
    deadLetterQueue: { queue: deadLetterQueue, maxReceiveCount: props.maxTaskAttempts },
  });
  const fn = props.makeFunction(QUERY_FUNCTION_ACCESS, {
    ...props.environment,
    DSTREAM_ROLE: 'query',
    // The handler's queue is the query queue: its retries and immediate dead letters go there.
    DSTREAM_TASK_QUEUE_URL: queue.queueUrl,
    DSTREAM_DEAD_LETTER_QUEUE_URL: deadLetterQueue.queueUrl,
  });
  // An explicit Deny: the Allow on `queries/*` would cover the code objects, which a query task
  // must not swap for another session's tasks to load (the hash check is the other guard).
  fn.addToRolePolicy(new iam.PolicyStatement({ effect: iam.Effect.DENY, actions: QUERY_CODE_WRITES, resources: [props.bucket.arnForObjects(`${QUERY_CODE_PREFIX}*`)] }));
  // One task per invocation, as the task function's, within a concurrency of its own.
  fn.addEventSource(new SqsEventSource(queue, { batchSize: 1, reportBatchItemFailures: true, maxConcurrency: props.concurrency }));
  // A query task's last failed delivery is dead-lettered by the function itself, at once.
  fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [deadLetterQueue.queueArn] }));
  return { queue, deadLetterQueue, function: fn };
}

/**
 * Lets `grantee` run shell sessions on the query function (`--on-lambda`): `QUERY_SHELL_ACCESS` to
 * the bucket; on the query queue, what local/shell/query-queue.ts and SqsTaskQueue call: its
 * redrive policy read (GetQueueAttributes) and tasks sent; on its dead-letter queue, its URL
 * looked up and the session's letters received and deleted.
 */
export function grantQueryAccess(grantee: iam.IGrantable, bucket: s3.IBucket, queries: { queue: sqs.IQueue; deadLetterQueue: sqs.IQueue }): iam.Grant {
  const onBucket = bucketAccessStatements(bucket, QUERY_SHELL_ACCESS).map((statement) =>
    iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: statement.actions,
      resourceArns: statement.resources,
      resource: bucket,
      ...(Object.keys(statement.conditions).length > 0 ? { conditions: statement.conditions } : {}),
    }),
  );
  return [
    ...onBucket,
    queries.queue.grant(grantee, 'sqs:SendMessage', 'sqs:GetQueueAttributes'),
    queries.deadLetterQueue.grant(grantee, 'sqs:GetQueueUrl', 'sqs:ReceiveMessage', 'sqs:DeleteMessage'),
  ].reduce((all, grant) => all.combine(grant));
}
