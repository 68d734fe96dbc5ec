/**
 * Which function touches which keys of the bucket, by the layout of core/layout.ts, and the IAM
 * statements that grant exactly that: named actions only, resources narrowed to key patterns.
 */
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { HandlerKind } from './pipeline-function.ts';

/**
 * IAM key patterns (`*` matches any characters, '/' included) of what a function does to the
 * bucket's objects. Every scope on AWS is an interval (`interval=<k>`): the driver function runs
 * streams only.
 */
export interface BucketAccess {
  /** Objects read (GetObject, HEAD). The S3 adapter may read back what it writes if absent, so those are here too. */
  readonly read: readonly string[];
  /** Objects read by version id (GetObjectVersion): uploads, pinned at admission. */
  readonly readVersions: readonly string[];
  /** Key prefixes listed (ListBucket's s3:prefix), beyond the read patterns, which are listable anyway (see bucketAccessStatements). */
  readonly list: readonly string[];
  readonly write: readonly string[];
  readonly delete: readonly string[];
}

export const FUNCTION_BUCKET_ACCESS: Record<HandlerKind, BucketAccess> = {
  // Admits uploads to intervals: HEADs the notified version, enters it in an interval not yet
  // sealing, and creates the stream's clock if it comes before the driver; wakes a dormant
  // stream, removing its mark.
  ingest: {
    read: ['driver/progress.json', 'driver/dormant.json', 'intake/interval=*/_SEALING', 'intake/interval=*/entries/*'],
    readVersions: ['incoming/*'],
    list: [],
    write: ['driver/progress.json', 'intake/interval=*/entries/*'],
    delete: ['driver/dormant.json'],
  },
  // Reads its lineage record, message and inputs; writes its own stage's keys: markers, completion,
  // fetch failure and last error under lineage/, its block or part, quarantined records.
  task: {
    read: [
      'lineage/interval=*/record.json',
      'lineage/interval=*/splits/*',
      'lineage/interval=*/objects/*',
      'lineage/interval=*/task-records/*',
      'lineage/interval=*/tasks/*',
      'lineage/interval=*/fetch-failed/*',
      'cache/interval=*/shuffle/*',
      'cache/interval=*/persist/*',
      'checkpoints/interval=*/persist/*',
    ],
    readVersions: ['incoming/*'],
    list: [],
    write: [
      'lineage/interval=*/tasks/*',
      'lineage/interval=*/fetch-failed/*',
      'lineage/interval=*/task-errors/*',
      'cache/interval=*/shuffle/*',
      'cache/interval=*/persist/*',
      'cache/interval=*/collect/*',
      'checkpoints/interval=*/persist/*',
      'output/*/interval=*/part-*',
      'errors/interval=*/records/*',
    ],
    delete: [],
  },
  // Seals intervals, writes lineage, large task messages and commits, records dead letters and
  // refused uploads, collects the cache's and old checkpoints' garbage, forgets completions whose
  // data is lost, keeps its lease, progress and the store's owner; at an upgrade (a deploy of
  // changed code) copies the stream's state RDDs into boundary checkpoints and records the upgrade.
  driver: {
    // errors/: the dead-letter record it moves aside as history, and its own create-if-absent writes read back.
    read: [
      'driver/*',
      'intake/*',
      'lineage/*',
      'cache/interval=*/collect/*',
      'cache/interval=*/persist/*',
      'checkpoints/interval=*/persist/*',
      'output/*/interval=*/_SUCCESS',
      'errors/interval=*/dead-letters/*',
      'errors/interval=*/uploads/*',
    ],
    readVersions: [],
    list: ['cache/interval=*/', 'checkpoints/interval=*/'],
    write: [
      'driver/progress.json',
      'driver/lease.json',
      'driver/dormant.json',
      'driver/pipeline.json',
      'driver/upgrades/*',
      'intake/interval=*/_SEALING',
      'intake/interval=*/_SEALED',
      'intake/claims/*',
      'lineage/interval=*/record.json',
      'lineage/interval=*/run.json',
      'lineage/interval=*/splits/*',
      'lineage/interval=*/objects/*',
      'lineage/interval=*/uploads/*',
      'lineage/interval=*/task-records/*',
      'lineage/interval=*/sinks/*',
      'lineage/interval=*/_COMMITTED',
      'output/*/interval=*/_SUCCESS',
      'errors/interval=*/dead-letters/*',
      'errors/interval=*/uploads/*',
      'errors/unreadable-dead-letters/*',
      'checkpoints/interval=*/persist/boundary-*',
    ],
    delete: ['driver/lease.json', 'driver/dormant.json', 'lineage/interval=*/tasks/*', 'cache/interval=*/*', 'checkpoints/interval=*/*'],
  },
};

/**
 * `access` (the driver's) that also does what the task function does to the bucket: for a driver
 * that runs small stages itself (runInDriverBelow).
 */
export function withTaskAccess(access: BucketAccess): BucketAccess {
  const task = FUNCTION_BUCKET_ACCESS.task;
  const union = (a: readonly string[], b: readonly string[]) => [...new Set([...a, ...b])];
  return {
    read: union(access.read, task.read),
    readVersions: union(access.readVersions, task.readVersions),
    list: union(access.list, task.list),
    write: union(access.write, task.write),
    delete: union(access.delete, task.delete),
  };
}

/**
 * `access` that also reads `keys`, named by the pipeline itself (its initial state's objects,
 * `ctx.jsonFile`): exact keys, so a key IAM would read as a pattern is refused.
 */
export function withObjectReads(access: BucketAccess, keys: readonly string[]): BucketAccess {
  const pattern = keys.find((key) => /[*?]/.test(key));
  if (pattern !== undefined) throw new Error(`the pipeline reads ${JSON.stringify(pattern)} from the store: on AWS a key with '*' or '?' would be granted as a pattern, so rename it`);
  return keys.length === 0 ? access : { ...access, read: [...access.read, ...keys] };
}

/**
 * The statements granting `access`. Listing carries a mandatory prefix: without it S3 answers
 * 403, not 404, for a missing key, so the S3 adapter tells a missing key from a refused read by
 * listing that key (functions/aws/s3-object-store.ts): every read pattern is listable.
 */
export function bucketAccessStatements(bucket: s3.IBucket, access: BucketAccess, key?: kms.IKey): iam.PolicyStatement[] {
  const objects = (patterns: readonly string[]) => patterns.map((p) => bucket.arnForObjects(p));
  const statements: iam.PolicyStatement[] = [];
  if (access.read.length > 0) statements.push(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: objects(access.read) }));
  if (access.readVersions.length > 0) {
    statements.push(new iam.PolicyStatement({ actions: ['s3:GetObjectVersion'], resources: objects(access.readVersions) }));
  }
  statements.push(
    new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': listablePatterns(access) } },
    }),
  );
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

export function listablePatterns(access: BucketAccess): string[] {
  return [...new Set([...access.list, ...access.read, ...access.readVersions])];
}

/** The object patterns with a wildcard, which cdk-nag IAM5 reports one by one. */
export function wildcardPatterns(access: BucketAccess): string[] {
  const all = [...access.read, ...access.readVersions, ...access.write, ...access.delete].filter((p) => p.includes('*'));
  return [...new Set(all)];
}

/**
 * The top-level prefixes the functions write or delete under (`cache/`, `lineage/`, ...): where
 * the engine overwrites and deletes, so where noncurrent versions pile up.
 */
export function enginePrefixes(): string[] {
  const patterns = Object.values(FUNCTION_BUCKET_ACCESS).flatMap((a) => [...a.write, ...a.delete]);
  return [...new Set(patterns.map((p) => `${p.slice(0, p.indexOf('/'))}/`))].sort();
}
