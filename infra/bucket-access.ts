/**
 * Which function touches which keys of the bucket, by the layout of core/layout.ts, and the IAM
 * statements that grant exactly that: named actions only, resources narrowed to prefixes.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { HandlerKind } from './pipeline-function.ts';

/**
 * Key patterns a function may read, write and delete: a pattern ending in '/' is every key under
 * that prefix, any other pattern is one key.
 */
export interface BucketAccess {
  read: readonly string[];
  write: readonly string[];
  delete: readonly string[];
}

export const FUNCTION_BUCKET_ACCESS: Record<HandlerKind, BucketAccess> = {
  // Admits uploads to intervals; the clock origin is set by whichever of ingest or driver comes first.
  ingest: {
    read: ['incoming/', 'intake/', 'driver/progress.json'],
    write: ['intake/', 'driver/progress.json'],
    delete: [],
  },
  // Reads its inputs and lineage; writes shuffle and persisted blocks (the checkpoint tier too),
  // outputs, quarantined records and its completion records.
  task: {
    read: ['incoming/', 'lineage/', 'cache/', 'checkpoints/'],
    write: ['cache/', 'checkpoints/', 'output/', 'errors/', 'lineage/'],
    delete: [],
  },
  // Seals intervals, writes lineage and commits, collects garbage, keeps its lease and progress.
  driver: {
    read: ['intake/', 'lineage/', 'cache/', 'checkpoints/', 'output/', 'errors/', 'driver/'],
    write: ['intake/', 'lineage/', 'cache/', 'checkpoints/', 'output/', 'errors/', 'driver/'],
    delete: ['intake/', 'lineage/', 'cache/', 'checkpoints/', 'output/', 'errors/', 'driver/'],
  },
};

/** The IAM resource pattern of a key pattern: a prefix covers the objects under it. */
export const objectPattern = (keyPattern: string) => (keyPattern.endsWith('/') ? `${keyPattern}*` : keyPattern);

export function bucketAccessStatements(bucket: s3.IBucket, access: BucketAccess, key?: kms.IKey): iam.PolicyStatement[] {
  const objects = (patterns: readonly string[]) => patterns.map((p) => bucket.arnForObjects(objectPattern(p)));
  const statements = [
    new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: objects(access.read) }),
    // Listing is what makes S3 answer 404 rather than 403 for a missing key, and the store's
    // get/head rely on that. That check carries no s3:prefix, hence IfExists: real listings are
    // still held to these prefixes.
    new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
      conditions: { StringLikeIfExists: { 's3:prefix': access.read.map(objectPattern) } },
    }),
  ];
  if (access.write.length > 0) {
    // PutObject covers the parts of a multipart upload; a failed one is aborted.
    statements.push(new iam.PolicyStatement({ actions: ['s3:PutObject', 's3:AbortMultipartUpload'], resources: objects(access.write) }));
  }
  if (access.delete.length > 0) {
    statements.push(new iam.PolicyStatement({ actions: ['s3:DeleteObject'], resources: objects(access.delete) }));
  }
  if (key) {
    const actions = access.write.length > 0 ? ['kms:Decrypt', 'kms:GenerateDataKey'] : ['kms:Decrypt'];
    statements.push(new iam.PolicyStatement({ actions, resources: [key.keyArn] }));
  }
  return statements;
}

/** The prefixes granted with a resource wildcard (`incoming/*`, ...), which cdk-nag IAM5 reports one by one. */
export function wildcardPatterns(access: BucketAccess): string[] {
  const all = [...access.read, ...access.write, ...access.delete].filter((p) => p.endsWith('/'));
  return [...new Set(all)].map(objectPattern);
}
