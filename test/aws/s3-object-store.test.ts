/**
 * The S3 adapter over real HTTP with the real SDK client: against s3rver (always, in a child
 * process) and against LocalStack (when it is running).
 */
import { CreateBucketCommand, DeleteBucketCommand, ListObjectsV2Command, PutObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { InvalidKeyError, listAll } from '../../core/ports/object-store.ts';
import { makeS3Client } from '../../functions/aws/clients.ts';
import { S3ObjectStore } from '../../functions/aws/s3-object-store.ts';
import { objectStoreContract } from '../contract/object-store-contract.ts';
import { findLocalStack, LOCALSTACK_CREDENTIALS } from './localstack.ts';
import { startS3rver, type RunningS3rver } from './s3rver-server.ts';

const BUCKET = 'dstream-test';
let s3rver: RunningS3rver;
let storeCount = 0;

beforeAll(async () => {
  s3rver = await startS3rver([BUCKET]);
});
afterAll(() => s3rver?.stop());

/** A client for s3rver that records the name of every command it sends. */
function s3rverClient(): { client: S3Client; commands: string[] } {
  const client = makeS3Client({ AWS_ENDPOINT_URL_S3: s3rver.endpoint }, { credentials: s3rver.credentials });
  const commands: string[] = [];
  client.middlewareStack.add(
    (next, context) => (args) => {
      commands.push(context.commandName!);
      return next(args);
    },
    { step: 'initialize' },
  );
  return { client, commands };
}

/** A store over a folder of its own, so that stores of different tests never see each other. */
function s3rverStore(options: Partial<ConstructorParameters<typeof S3ObjectStore>[0]> = {}) {
  const { client, commands } = s3rverClient();
  const prefix = `store-${++storeCount}`;
  return { store: new S3ObjectStore({ client, bucket: BUCKET, prefix, ...options }), client, commands, prefix };
}

describe('S3ObjectStore on s3rver', () => {
  it('a body over the multipart threshold goes up in parts and reads back byte for byte', async () => {
    const { store, commands } = s3rverStore({ multipartThresholdBytes: 1_000, partSizeBytes: 256 });
    const body = randomBytes(2_500);
    await store.put('big/object', body);
    expect(commands.filter((name) => name !== 'GetObjectCommand')).toEqual([
      'CreateMultipartUploadCommand',
      ...Array(10).fill('UploadPartCommand'),
      'CompleteMultipartUploadCommand',
    ]);
    expect(Buffer.from((await store.get('big/object'))!).equals(body)).toBe(true);
    expect((await store.head('big/object'))?.size).toBe(2_500);
  });

  it('a body at the threshold is one PutObject', async () => {
    const { store, commands } = s3rverStore({ multipartThresholdBytes: 1_000, partSizeBytes: 256 });
    await store.put('small', randomBytes(1_000));
    expect(commands).toEqual(['PutObjectCommand']);
  });

  it('keeps its keys under its prefix, out of sight of a store with another prefix', async () => {
    const first = s3rverStore();
    const second = s3rverStore({ client: first.client });
    await first.store.put('shared/name', 'first');
    await second.store.put('shared/name', 'second');
    expect((await listAll(first.store, '')).map((info) => info.key)).toEqual(['shared/name']);
    expect(Buffer.from((await second.store.get('shared/name'))!).toString()).toBe('second');
    const raw = await first.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${first.prefix}/` }));
    expect(raw.Contents?.map((object) => object.Key)).toEqual([`${first.prefix}/shared/name`]);
  });

  it('refuses an invalid key before sending anything', async () => {
    const { store, commands } = s3rverStore();
    await expect(store.get('../escape')).rejects.toBeInstanceOf(InvalidKeyError);
    expect(() => store.getRange('/absolute', 0)).toThrow(InvalidKeyError);
    expect(commands).toEqual([]);
  });

  it('a missing bucket is an error, not a missing object', async () => {
    const { client } = s3rverClient();
    const store = new S3ObjectStore({ client, bucket: 'no-such-bucket' });
    await expect(store.get('key')).rejects.toMatchObject({ name: 'NoSuchBucket' });
  });

  it('s3rver ignores If-None-Match on PutObject, which is why its contract run leaves out conditional writes', async () => {
    const { client, prefix } = s3rverStore();
    const Key = `${prefix}/taken`;
    await client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: 'first' }));
    // Real S3 answers 412 PreconditionFailed here; if s3rver ever does too, turn conditional writes on below.
    await expect(client.send(new PutObjectCommand({ Bucket: BUCKET, Key, Body: 'second', IfNoneMatch: '*' }))).resolves.toBeDefined();
  });
});

/**
 * Where s3rver 3.7.1 is not S3, as running the contract against it shows. These tests are skipped
 * on s3rver, with the reason printed; they run against LocalStack.
 */
const S3RVER_GAPS: Record<string, string> = {
  'a reader racing overwrites sees one whole version or the other, never a mix':
    's3rver rewrites an object file in place, so a reader can get half of each version (S3 replaces objects atomically)',
  'lists every object under a prefix, recursively, in UTF-8 byte order of key':
    's3rver lists in directory-walk order (x/1 before x-y), not in UTF-8 byte order as S3 does',
  'matches a prefix that ends mid-segment as a plain string prefix':
    's3rver lists in directory-walk order (x/1 before x-y), not in UTF-8 byte order as S3 does',
};

describe('on s3rver', () => {
  console.warn(
    '\n!!! S3ObjectStore contract on s3rver: conditionalWrites off, because s3rver ignores If-None-Match on PutObject ' +
      '(see the test above; putIfAbsent is checked on LocalStack and with mocks). Also skipped on s3rver:\n' +
      Object.entries(S3RVER_GAPS).map(([test, reason]) => `    - "${test}": ${reason}`).join('\n') + '\n',
  );
  beforeEach((context) => {
    const gap = S3RVER_GAPS[context.task.name];
    if (gap) context.skip(gap);
  });

  objectStoreContract(
    'S3ObjectStore on s3rver',
    async () => ({ store: new S3ObjectStore({ client: s3rverClient().client, bucket: BUCKET, prefix: 'contract' }) }),
    { conditionalWrites: false },
  );
});

const localStack = await findLocalStack('s3', 'S3ObjectStore contract');

(localStack ? describe : describe.skip)('S3ObjectStore on LocalStack', () => {
  const client = makeS3Client({ AWS_ENDPOINT_URL: localStack }, { credentials: LOCALSTACK_CREDENTIALS });
  const Bucket = `dstream-test-${randomBytes(4).toString('hex')}`;

  objectStoreContract('S3ObjectStore on LocalStack', async () => {
    await client.send(new CreateBucketCommand({ Bucket }));
    return {
      store: new S3ObjectStore({ client, bucket: Bucket }),
      cleanup: async () => void (await client.send(new DeleteBucketCommand({ Bucket }))),
    };
  });

  it('uploads in S3-sized parts, with checksums S3 accepts, and putIfAbsent holds for multipart bodies', async () => {
    const Bucket = `dstream-multipart-${randomBytes(4).toString('hex')}`;
    await client.send(new CreateBucketCommand({ Bucket }));
    const store = new S3ObjectStore({ client, bucket: Bucket, multipartThresholdBytes: 5 * 1024 * 1024, partSizeBytes: 5 * 1024 * 1024 });
    const body = randomBytes(11 * 1024 * 1024);
    await store.put('big', body);
    expect(Buffer.from((await store.get('big'))!).equals(body)).toBe(true);
    expect(await store.putIfAbsent('big', randomBytes(6 * 1024 * 1024))).toBe(false);
    expect(await store.putIfAbsent('fresh', body)).toBe(true);
    expect((await store.head('fresh'))?.size).toBe(body.length);
    await Promise.all(['big', 'fresh'].map((key) => store.delete(key)));
    await client.send(new DeleteBucketCommand({ Bucket }));
  });
});
