/**
 * The grants are not narrower than the code: the three functions run a stream through their real
 * handlers (as test/functions/end-to-end.test.ts wires them) on a store that holds each one to the
 * S3 actions and keys its role is granted in the synthesized template, as S3 would. No emulator
 * here enforces IAM, so the policy is evaluated in the test: Allow and Deny statements, `*` and `?`
 * in key patterns, StringLike on s3:prefix for listings. A shell session on the query function
 * (interactiveQueries) runs likewise, the shell within grantQuery's grants.
 */
import path from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type * as iam from 'aws-cdk-lib/aws-iam';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import * as iamLib from 'aws-cdk-lib/aws-iam';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { listAll, type ObjectStore } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';
import { pad } from '../../core/layout.ts';
import { definePipeline } from '../../core/index.ts';
import type { DStream } from '../../core/graph/dstream.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { createDriverHandler } from '../../functions/driver/handler.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { createQueryTaskHandler, createTaskHandler } from '../../functions/task/handler.ts';
import { QuerySession } from '../../local/shell/session.ts';
import { driverConfig, functionConfig } from '../../functions/config.ts';
import { DStreamPipeline } from '../../infra/dstream-pipeline.ts';
import { VersionedMemoryStore } from '../support/versioned-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { bag, readOutput, removeDir, tempDir } from '../support/stream-harness.ts';
import { eventSourceMapping, FakeClock, s3Event, upload } from '../functions/support.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const MINUTE = 60_000;

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: Record<string, Record<string, string | string[]>> };

/** What a role may do to the bucket: its object actions by key pattern, those it is denied, and the prefixes it may list under. */
interface Grants {
  objects: Map<string, RegExp[]>;
  denied: Map<string, RegExp[]>;
  listing: RegExp[];
}

/** `*` any characters ('/' too), `?` one, as IAM matches resources and StringLike. */
const wildcard = (pattern: string) => new RegExp(`^${pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`);
const asList = <T,>(v: T | T[]) => (Array.isArray(v) ? v : [v]);

function grantsOf(stack: Stack, template: Record<string, { Type: string; Properties: Record<string, any> }>, bucket: s3.IBucket, fn: { role?: iam.IRole }): Grants {
  const bucketId = stack.resolve((bucket.node.defaultChild as s3.CfnBucket).logicalId) as string;
  const roleId = stack.resolve((fn.role!.node.defaultChild as iam.CfnRole).logicalId) as string;
  const statements = Object.values(template)
    .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(`"${roleId}"`))
    .flatMap((r) => r.Properties.PolicyDocument.Statement as Statement[]);
  const grants: Grants = { objects: new Map(), denied: new Map(), listing: [] };
  for (const s of statements) {
    const byAction = s.Effect === 'Allow' ? grants.objects : grants.denied;
    for (const action of asList(s.Action).filter((a) => a.startsWith('s3:'))) {
      if (action === 's3:ListBucket') {
        expect(s.Effect).toBe('Allow');
        grants.listing.push(...asList(s.Condition!.StringLike!['s3:prefix']!).map(wildcard));
        continue;
      }
      for (const resource of asList(s.Resource) as { 'Fn::Join': [string, [{ 'Fn::GetAtt': string[] }, string]] }[]) {
        const [, [arn, suffix]] = resource['Fn::Join'];
        expect(arn['Fn::GetAtt'][0]).toBe(bucketId);
        byAction.set(action, [...(byAction.get(action) ?? []), wildcard(suffix.replace(/^\//, ''))]);
      }
    }
  }
  return grants;
}

/**
 * `store` as a function holding `grants` sees it. A refused request throws, as S3's AccessDenied
 * would, and is also recorded: a handler may swallow the error. A read of a missing key needs
 * the key listable too (the S3 adapter lists it to tell 404 from 403).
 */
function enforced(store: ObjectStore, who: string, grants: Grants, refused: string[]): ObjectStore {
  const check = (action: string, key: string) => {
    const allowed = action === 's3:ListBucket' ? grants.listing : (grants.objects.get(action) ?? []);
    const denied = grants.denied.get(action) ?? [];
    if (allowed.some((pattern) => pattern.test(key)) && !denied.some((pattern) => pattern.test(key))) return;
    refused.push(`${who} ${action} ${key}`);
    throw Object.assign(new Error(`AccessDenied: ${who} may not ${action} ${key}`), { name: 'AccessDenied' });
  };
  const readAction = (options?: { version?: string }) => (options?.version === undefined ? 's3:GetObject' : 's3:GetObjectVersion');
  type ReadOptions = { version?: string; absentIfRefused?: boolean } | undefined;
  // The S3 adapter lists a key it found missing, unless the read takes a refusal as absent.
  const listsWhenMissing = (options: ReadOptions) => !options?.absentIfRefused;
  return {
    async get(key, ...rest: unknown[]) {
      check(readAction(rest[0] as ReadOptions), key);
      const bytes = await (store.get as (...a: unknown[]) => Promise<Uint8Array | undefined>)(key, ...rest);
      if (!bytes && listsWhenMissing(rest[0] as ReadOptions)) check('s3:ListBucket', key);
      return bytes;
    },
    getRange(key, start, end, ...rest: unknown[]) {
      check(readAction(rest[0] as ReadOptions), key);
      return (store.getRange as (...a: unknown[]) => AsyncIterable<Uint8Array>)(key, start, end, ...rest);
    },
    async head(key, ...rest: unknown[]) {
      check(readAction(rest[0] as ReadOptions), key);
      const info = await (store.head as (...a: unknown[]) => ReturnType<ObjectStore['head']>)(key, ...rest);
      if (!info && listsWhenMissing(rest[0] as ReadOptions)) check('s3:ListBucket', key);
      return info;
    },
    async put(key, body) {
      check('s3:PutObject', key);
      return store.put(key, body);
    },
    async putIfAbsent(key, body) {
      check('s3:PutObject', key);
      // The S3 adapter may read the key back to learn whether a lost response was its own write.
      check('s3:GetObject', key);
      return store.putIfAbsent(key, body);
    },
    list(prefix) {
      check('s3:ListBucket', prefix);
      return store.list(prefix);
    },
    async delete(key) {
      check('s3:DeleteObject', key);
      return store.delete(key);
    },
  };
}

/** WordCount with running totals, checkpointed every other interval so that a short run collects garbage. */
const wordcount = definePipeline({ name: 'wordcount', partitions: 2, checkpointEvery: 2 }, (ctx) => {
  const counts = ctx
    .textStream()
    .flatMap((line) => line.split(' '))
    .map((w) => [w, 1] as [string, number])
    .reduceByKey((a, b) => a + b);
  counts.updateStateByKey<string, number, number>((values, total) => (total ?? 0) + values.reduce((a, b) => a + b, 0)).saveAsJsonFiles('totals');
});

/**
 * A pipeline module deployed by the construct, and what its functions run on: a versioned bucket
 * whose stream clock starts at T0, a queue, and for each function the bucket as its synthesized
 * role lets it see it (`refused` collects what the roles were refused).
 */
function enforcedDeployment(stackId: string, module: string, options: { partitions: number; maxReceives: number; at: number }) {
  const stack = new Stack(new App({ context: { 'aws:cdk:bundling-stacks': [] } }), stackId);
  const deployed = new DStreamPipeline(stack, 'P', { pipeline: module, interactiveQueries: true });
  // Whoever runs `dstream shell --on-lambda`, as grantQuery lets them.
  const shell = new iamLib.Role(stack, 'Shell', { assumedBy: new iamLib.AccountRootPrincipal() });
  deployed.grantQuery(shell);
  const resources = Template.fromStack(stack).toJSON().Resources;
  const bucket = new VersionedMemoryStore();
  const refused: string[] = [];
  const production = driverConfig(functionConfig({ DSTREAM_BUCKET: 'bucket', DSTREAM_INTERVAL_MS: String(MINUTE), DSTREAM_PARTITIONS: String(options.partitions) }));
  const functions = { ingest: deployed.ingestFunction, driver: deployed.driverFunction, task: deployed.taskFunction, query: deployed.queryFunction!, shell: { role: shell } };
  return {
    bucket,
    refused,
    queue: new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: options.maxReceives }),
    clock: new FakeClock(options.at),
    config: { ...production, scheduler: { ...production.scheduler, pollMs: 10 } },
    storeOf: (kind: keyof typeof functions) => enforced(bucket, kind, grantsOf(stack, resources, deployed.bucket, functions[kind]), refused),
    /** The stream's clock, as the first ingest or driver writes it. */
    startClock: () => bucket.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: MINUTE })),
  };
}

let base: string;

beforeEach(async () => {
  base = await tempDir();
  vi.spyOn(console, 'log').mockImplementation(() => {});
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
});

afterEach(async () => {
  vi.restoreAllMocks();
  await removeDir(base);
});

it('ingest, driver and task run a stream past a checkpoint and its garbage collection within their grants', async () => {
  const { bucket, queue, clock, refused, config, storeOf, startClock } = enforcedDeployment('Enforced', path.join(import.meta.dirname, 'fixtures', 'pipeline.ts'), { partitions: 2, maxReceives: 3, at: T0 });
  const ingest = createIngestHandler({ store: storeOf('ingest'), now: () => clock.now(), intervalMs: MINUTE });
  // Uploads in most of the first 6 intervals: state is checkpointed every other interval, and the
  // cache and superseded checkpoints behind the last are collected.
  const intervals = 6;
  await startClock();
  for (const k of [0, 1, 2, 4, 5]) {
    const key = `incoming/part-${k}.txt`;
    const text = `the fox ${k}\nthe dog\n`;
    // Ingest runs when S3 notifies it, a moment after the upload (it bounds event times by its clock).
    clock.time = T0 + k * MINUTE + 1_500;
    await ingest(s3Event([upload(bucket, key, text, T0 + k * MINUTE + 1_000)]));
  }

  const driver = createDriverHandler(wordcount, {
    store: storeOf('driver'),
    queue,
    clock,
    config,
    wake: async () => {},
  });
  const mapping = eventSourceMapping(queue, createTaskHandler(wordcount, { store: storeOf('task'), queue }));
  clock.time = T0 + intervals * MINUTE + 5_000;
  let run;
  try {
    run = await driver({ source: 'aws.events' }, { getRemainingTimeInMillis: () => T0 + (intervals + 2) * MINUTE - clock.now() });
  } finally {
    await mapping.stop();
    await queue.close();
  }

  expect(refused).toEqual([]);
  expect(run!.next).toBeGreaterThanOrEqual(intervals);
  expect((await readOutput(bucket, 'totals', intervals - 1))?.find((r) => (r as [string, number])[0] === 'the')).toEqual(['the', 10]);
  // The collection ran (the one path that deletes under cache/ and checkpoints/): it dropped
  // interval 1's cache and its checkpoint, superseded by interval 3's, and kept the last interval's.
  expect(await listAll(bucket, 'cache/interval=000001/')).toEqual([]);
  expect(await listAll(bucket, 'checkpoints/interval=000001/')).toEqual([]);
  expect(await listAll(bucket, 'checkpoints/interval=000003/')).not.toEqual([]);
  expect(await listAll(bucket, `cache/interval=${pad(intervals - 1, 6)}/`)).not.toEqual([]);
}, 120_000);

it('a task that fails every delivery is dead-lettered and reported by the driver, and a refused upload recorded, within their grants', async () => {
  const { bucket, queue, clock, refused, config, storeOf, startClock } = enforcedDeployment('EnforcedFailure', path.join(import.meta.dirname, 'fixtures', 'pipeline.ts'), { partitions: 1, maxReceives: 2, at: T0 + 1_500 });
  await startClock();
  const ingest = createIngestHandler({ store: storeOf('ingest'), now: () => clock.now(), intervalMs: MINUTE });
  await ingest(s3Event([upload(bucket, 'incoming/words.txt', 'the fox\n', T0 + 1_000), upload(bucket, 'incoming/a\\b.txt', 'refused\n', T0 + 1_000)]));

  // Every read of the upload fails as S3 does under throttling: the task fails each delivery.
  const taskStore = storeOf('task');
  const throttled: ObjectStore = Object.assign(Object.create(taskStore) as ObjectStore, {
    getRange: () => {
      throw Object.assign(new Error('SlowDown: Please reduce your request rate.'), { name: 'SlowDown' });
    },
  });
  const driver = createDriverHandler(wordcount, { store: storeOf('driver'), queue, clock, config, wake: async () => {} });
  const mapping = eventSourceMapping(queue, createTaskHandler(wordcount, { store: throttled, queue, maxTaskAttempts: 2 }));
  vi.spyOn(console, 'error').mockImplementation(() => {});
  clock.time = T0 + MINUTE + 5_000;
  try {
    await expect(driver({ source: 'aws.events' }, { getRemainingTimeInMillis: () => T0 + 14 * MINUTE - clock.now() })).rejects.toThrow(/dead-lettered: .*SlowDown/);
  } finally {
    await mapping.stop();
    await queue.close();
  }

  expect(refused).toEqual([]);
  expect((await listAll(bucket, 'errors/interval=000000/dead-letters/')).length).toBeGreaterThan(0);
  expect(await listAll(bucket, 'errors/interval=000000/uploads/')).toHaveLength(1);
}, 120_000);

it("the driver pins the pipeline's initial state from the object it names, and tasks read the pinned copy, within their grants", async () => {
  const module = path.join(import.meta.dirname, 'fixtures', 'seeded-pipeline.ts');
  const { default: seeded } = (await import(module)) as { default: typeof wordcount };
  const { bucket, queue, clock, refused, config, storeOf, startClock } = enforcedDeployment('EnforcedSeeds', module, { partitions: 1, maxReceives: 2, at: T0 + 1_500 });
  await bucket.put('seeds/totals.jsonl', '["fox",40]\n["owl",2]\n');
  await startClock();
  const ingest = createIngestHandler({ store: storeOf('ingest'), now: () => clock.now(), intervalMs: MINUTE });
  await ingest(s3Event([upload(bucket, 'incoming/words.txt', 'fox\nfox\n', T0 + 1_000)]));

  const driver = createDriverHandler(seeded, { store: storeOf('driver'), queue, clock, config, wake: async () => {} });
  const mapping = eventSourceMapping(queue, createTaskHandler(seeded, { store: storeOf('task'), queue }));
  clock.time = T0 + MINUTE + 5_000;
  try {
    await driver({ source: 'aws.events' }, { getRemainingTimeInMillis: () => T0 + 3 * MINUTE - clock.now() });
  } finally {
    await mapping.stop();
    await queue.close();
  }

  expect(refused).toEqual([]);
  expect(bag(await readOutput(bucket, 'totals', 0))).toEqual(bag([['fox', 42], ['owl', 2]]));
}, 120_000);

it('a deploy of changed code upgrades the stream, its driver checkpointing the state at the boundary and setting some aside, within its grants', async () => {
  const { bucket, queue, clock, refused, config, storeOf, startClock } = enforcedDeployment('EnforcedUpgrade', path.join(import.meta.dirname, 'fixtures', 'pipeline.ts'), { partitions: 2, maxReceives: 3, at: T0 });
  await startClock();
  const ingest = createIngestHandler({ store: storeOf('ingest'), now: () => clock.now(), intervalMs: MINUTE });
  let ingested = 0;
  const words = (build: (pairs: DStream<[string, number]>) => void) =>
    definePipeline({ name: 'wordcount', partitions: 2, checkpointEvery: 2 }, (ctx) =>
      build(
        ctx
          .textStream()
          .flatMap((line) => line.split(' '))
          .map((w) => [w, 1] as [string, number]),
      ),
    );
  const sum = (values: number[], total: number | undefined) => (total ?? 0) + values.reduce((a, b) => a + b, 0);
  // The old code keeps totals, and counts kept by a window; the new code keeps the totals only, counting ten a word.
  const before = words((pairs) => {
    pairs.updateStateByKey(sum, { name: 'totals' }).saveAsJsonFiles('totals');
    pairs.reduceByKeyAndWindow((a, b) => a + b, 2, 1).name('recent').saveAsJsonFiles('recent');
  });
  const after = words((pairs) => pairs.updateStateByKey((values: number[], total: number | undefined) => sum(values.map((v) => 10 * v), total), { name: 'totals' }).saveAsJsonFiles('totals'));

  const run = async (pipeline: Pipeline, until: number, drop: Partial<typeof config> = {}) => {
    const driver = createDriverHandler(pipeline, { store: storeOf('driver'), queue, clock, config: { ...config, ...drop }, stayAwakeMs: Infinity, dormantAfterIntervals: Infinity, wake: async () => {} });
    for (; ingested < until; ingested++) {
      clock.time = Math.max(clock.time, T0 + ingested * MINUTE + 1_500);
      await ingest(s3Event([upload(bucket, `incoming/part-${ingested}.txt`, 'the fox\n', T0 + ingested * MINUTE + 1_000)]));
    }
    const mapping = eventSourceMapping(queue, createTaskHandler(pipeline, { store: storeOf('task'), queue }));
    clock.time = Math.max(clock.time, T0 + until * MINUTE + 5_000);
    const deadline = clock.time + 120_000;
    try {
      await driver({ source: 'aws.events' }, { getRemainingTimeInMillis: () => deadline - clock.now() });
    } finally {
      await mapping.stop();
    }
  };
  try {
    await run(before, 2);
    await run(after, 4, { upgrade: { dropState: ['recent'] } });
  } finally {
    await queue.close();
  }

  expect(refused).toEqual([]);
  expect(bag(await readOutput(bucket, 'totals', 3))).toEqual(bag([['the', 22], ['fox', 22]]));
  expect(await listAll(bucket, keys.keptAsidePrefix(2, 'recent'))).not.toEqual([]);
}, 120_000);

it('a shell session runs its query on the query function, each within its grants, and the function may write nothing of the stream', async () => {
  const { bucket, queue, clock, refused, config, storeOf, startClock } = enforcedDeployment('EnforcedQueries', path.join(import.meta.dirname, 'fixtures', 'pipeline.ts'), { partitions: 2, maxReceives: 3, at: T0 });
  await startClock();
  const ingest = createIngestHandler({ store: storeOf('ingest'), now: () => clock.now(), intervalMs: MINUTE });
  for (const k of [0, 1, 2]) {
    clock.time = T0 + k * MINUTE + 1_500;
    await ingest(s3Event([upload(bucket, `incoming/part-${k}.txt`, `the fox ${k}\nthe dog\n`, T0 + k * MINUTE + 1_000)]));
  }
  const driver = createDriverHandler(wordcount, { store: storeOf('driver'), queue, clock, config, wake: async () => {} });
  const tasks = eventSourceMapping(queue, createTaskHandler(wordcount, { store: storeOf('task'), queue }));
  clock.time = T0 + 3 * MINUTE + 5_000;
  try {
    await driver({ source: 'aws.events' }, { getRemainingTimeInMillis: () => T0 + 5 * MINUTE - clock.now() });
  } finally {
    await tasks.stop();
    await queue.close();
  }
  const before = (await listAll(bucket, '')).map((o) => o.key);

  // The query queue, and the query function behind it with its own role.
  const queryQueue = new FsTaskQueue({ dir: path.join(base, 'query-queue'), maxReceives: 2 });
  await queryQueue.ready();
  const queryFunction = eventSourceMapping(queryQueue, createQueryTaskHandler({ store: storeOf('query'), queue: queryQueue, maxTaskAttempts: 2 }));
  const session = new QuerySession({ store: storeOf('shell'), workers: 2, onLambda: { queue: () => queryQueue } });
  let answer;
  try {
    answer = await session.sc.output<[string, number]>('totals').reduceByKey((a: number, b: number) => Math.max(a, b)).collect();
  } finally {
    await session.close();
    await queryFunction.stop();
    await queryQueue.close();
  }

  expect(refused).toEqual([]);
  expect(queryFunction.invocations).toBeGreaterThan(0);
  expect(bag(answer)).toEqual(bag([['the', 6], ['dog', 3], ['fox', 3], ['0', 1], ['1', 1], ['2', 1]]));
  expect((await listAll(bucket, '')).map((o) => o.key)).toEqual(before);
  // Code that goes around the scratch store (a session's bundle may hold any) meets the role:
  // nothing of the stream, nor the code objects other sessions' tasks load.
  const query = storeOf('query');
  for (const key of ['output/totals/interval=000001/part-00000', 'cache/interval=000001/shuffle/x', 'lineage/interval=000001/_COMMITTED', 'checkpoints/interval=000001/persist/x', 'driver/progress.json', 'queries/code/s1/0.mjs']) {
    await expect(query.put(key, 'forged'), key).rejects.toThrow('AccessDenied');
  }
  await expect(query.delete('queries/code/s1/0.mjs')).rejects.toThrow('AccessDenied');
  await query.put('queries/s1/cache/batch=q/x', 'scratch');
  expect(refused.map((r) => r.split(' ')[2])).toEqual(['output/totals/interval=000001/part-00000', 'cache/interval=000001/shuffle/x', 'lineage/interval=000001/_COMMITTED', 'checkpoints/interval=000001/persist/x', 'driver/progress.json', 'queries/code/s1/0.mjs', 'queries/code/s1/0.mjs']);
}, 120_000);
