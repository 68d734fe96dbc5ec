/**
 * Faults of S3 that no emulator here produces on demand: a connection reset halfway through a
 * body, a conditional write racing another, a part upload failing. These tests mock the SDK client
 * at its `send` boundary (aws-sdk-client-mock), the only place these faults can be injected (nor
 * does any emulator here enforce IAM, which turns a missing key into a 403); everything else about
 * the adapter is checked over real HTTP in s3-object-store.test.ts. Mocking `send` bypasses the
 * SDK's own retries, so what is seen here is the adapter's own handling; the SDK's retries, as
 * configured, are checked below the SDK in sdk-retries.test.ts.
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  UploadPartCommand,
  type GetObjectCommandOutput,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';
import { beforeEach, describe, expect, it } from 'vitest';
import { ObjectNotFoundError, readRange } from '../../core/ports/object-store.ts';
import { S3ObjectStore } from '../../functions/aws/s3-object-store.ts';

const client = new S3Client({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
const s3 = mockClient(client);

function store(options: Partial<ConstructorParameters<typeof S3ObjectStore>[0]> = {}): S3ObjectStore {
  return new S3ObjectStore({ client, bucket: 'b', ...options });
}

function s3Error(name: string, httpStatusCode: number): S3ServiceException {
  return new S3ServiceException({ name, $fault: httpStatusCode >= 500 ? 'server' : 'client', $metadata: { httpStatusCode }, message: name });
}

/** A 412 from a write the SDK sent twice: its first attempt may have landed, its response lost. */
const preconditionFailedOnRetry = () => Object.assign(s3Error('PreconditionFailed', 412), { $metadata: { httpStatusCode: 412, attempts: 2 } });
const socketReset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });

/** A response body that yields `parts` in turn, throwing the ones that are errors. */
function body(...parts: (string | Error)[]): GetObjectCommandOutput['Body'] {
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (const part of parts) {
      if (part instanceof Error) throw part;
      yield Buffer.from(part);
    }
  }
  const stream = chunks();
  return Object.assign(stream, {
    transformToByteArray: async () => {
      const all: Uint8Array[] = [];
      for await (const chunk of stream) all.push(chunk);
      return Buffer.concat(all);
    },
  }) as unknown as GetObjectCommandOutput['Body'];
}

beforeEach(() => s3.reset());

describe('S3ObjectStore.getRange when the connection drops mid-body', () => {
  it('resumes from the first byte not yet returned, pinned to the ETag it started with', async () => {
    s3.on(GetObjectCommand)
      .resolvesOnce({ ETag: '"v1"', Body: body('abc', socketReset()) })
      .resolvesOnce({ ETag: '"v1"', Body: body('defg') });
    expect(Buffer.from(await readRange(store(), 'k', 0, 7)).toString()).toBe('abcdefg');
    const inputs = s3.commandCalls(GetObjectCommand).map((call) => call.args[0].input);
    expect(inputs.map(({ Range, IfMatch }) => ({ Range, IfMatch }))).toEqual([
      { Range: 'bytes=0-6', IfMatch: undefined },
      { Range: 'bytes=3-6', IfMatch: '"v1"' },
    ]);
  });

  it('get resumes too, asking for the rest only', async () => {
    s3.on(GetObjectCommand)
      .resolvesOnce({ ETag: '"v1"', Body: body('abc', socketReset()) })
      .resolvesOnce({ ETag: '"v1"', Body: body('defg') });
    expect(Buffer.from((await store().get('k'))!).toString()).toBe('abcdefg');
    const inputs = s3.commandCalls(GetObjectCommand).map((call) => call.args[0].input);
    expect(inputs.map(({ Range, IfMatch }) => ({ Range, IfMatch }))).toEqual([
      { Range: undefined, IfMatch: undefined },
      { Range: 'bytes=3-', IfMatch: '"v1"' },
    ]);
  });

  it('a body that breaks on every read fails after as many reads as the client makes attempts', async () => {
    s3.on(GetObjectCommand).callsFake(() => ({ ETag: '"v1"', Body: body('a', socketReset()) }));
    await expect(store().get('k')).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(s3.commandCalls(GetObjectCommand)).toHaveLength(await client.config.maxAttempts());
  });

  it('an error in the body that is not the connection\'s is not read past', async () => {
    s3.on(GetObjectCommand).resolves({ ETag: '"v1"', Body: body('a', new Error('checksum mismatch')) });
    await expect(store().get('k')).rejects.toThrow('checksum mismatch');
    expect(s3.commandCalls(GetObjectCommand)).toHaveLength(1);
  });

  it('an object overwritten before the resume is an error, never a splice of two versions', async () => {
    s3.on(GetObjectCommand)
      .resolvesOnce({ ETag: '"v1"', Body: body('abc', socketReset()) })
      .rejectsOnce(s3Error('PreconditionFailed', 412));
    await expect(readRange(store(), 'k', 0, 7)).rejects.toThrow('object k was overwritten while being read (at byte 3)');
  });
});

describe('S3ObjectStore.putIfAbsent against concurrent writers', () => {
  it('retries a 409 ConditionalRequestConflict and reports the creation that follows', async () => {
    s3.on(PutObjectCommand).rejectsOnce(s3Error('ConditionalRequestConflict', 409)).resolves({});
    await expect(store().putIfAbsent('k', 'mine')).resolves.toBe(true);
    expect(s3.commandCalls(PutObjectCommand).map((call) => call.args[0].input.IfNoneMatch)).toEqual(['*', '*']);
  });

  it('conflicts that outlast the client\'s attempts reach the caller', async () => {
    s3.on(PutObjectCommand).rejects(s3Error('ConditionalRequestConflict', 409));
    await expect(store().putIfAbsent('k', 'mine')).rejects.toMatchObject({ name: 'ConditionalRequestConflict' });
    expect(s3.commandCalls(PutObjectCommand)).toHaveLength(await client.config.maxAttempts());
  });

  it('after a 409, finding the winner’s object (412) reports false', async () => {
    s3.on(PutObjectCommand).rejectsOnce(s3Error('ConditionalRequestConflict', 409)).rejects(s3Error('PreconditionFailed', 412));
    await expect(store().putIfAbsent('k', 'mine')).resolves.toBe(false);
    expect(s3.commandCalls(GetObjectCommand)).toHaveLength(0);
  });

  it('a 412 after a lost response is our own write when the stored bytes are ours', async () => {
    s3.on(PutObjectCommand).rejects(preconditionFailedOnRetry());
    s3.on(GetObjectCommand).resolves({ Body: body('mine') });
    await expect(store().putIfAbsent('k', 'mine')).resolves.toBe(true);
  });

  it('a 412 after a lost response is someone else’s write when the stored bytes differ', async () => {
    s3.on(PutObjectCommand).rejects(preconditionFailedOnRetry());
    s3.on(GetObjectCommand).resolves({ Body: body('theirs') });
    await expect(store().putIfAbsent('k', 'mine')).resolves.toBe(false);
  });
});

describe('S3ObjectStore multipart upload', () => {
  it('a part that fails aborts the upload and reports the part’s error', async () => {
    s3.on(CreateMultipartUploadCommand).resolves({ UploadId: 'u1' });
    s3.on(UploadPartCommand).rejects(s3Error('AccessDenied', 403));
    s3.on(AbortMultipartUploadCommand).resolves({});
    const bigStore = store({ multipartThresholdBytes: 4, partSizeBytes: 4 });
    await expect(bigStore.put('k', 'more than four bytes')).rejects.toMatchObject({ name: 'AccessDenied' });
    expect(s3.commandCalls(AbortMultipartUploadCommand).map((call) => call.args[0].input)).toEqual([
      { Bucket: 'b', Key: 'k', UploadId: 'u1' },
    ]);
    expect(s3.commandCalls(CompleteMultipartUploadCommand)).toHaveLength(0);
  });
});

describe('S3ObjectStore.list over many pages', () => {
  // s3rver cannot paginate on Node >= 17: its continuation token uses DES, which OpenSSL 3 dropped.
  it('yields each page as it arrives and follows the continuation token', async () => {
    s3.on(ListObjectsV2Command, { ContinuationToken: undefined }).resolves({
      IsTruncated: true,
      NextContinuationToken: 't2',
      Contents: [{ Key: 'p/a', Size: 1, LastModified: new Date(1_000) }],
    });
    s3.on(ListObjectsV2Command, { ContinuationToken: 't2' }).resolves({
      IsTruncated: false,
      Contents: [{ Key: 'p/b', Size: 2, LastModified: new Date(2_000) }],
    });
    const listing = store({ prefix: 'p' }).list('')[Symbol.asyncIterator]();
    expect((await listing.next()).value).toEqual({ key: 'a', size: 1, lastModified: 1_000 });
    expect(s3.commandCalls(ListObjectsV2Command)).toHaveLength(1);
    expect((await listing.next()).value).toEqual({ key: 'b', size: 2, lastModified: 2_000 });
    expect((await listing.next()).done).toBe(true);
    expect(s3.commandCalls(ListObjectsV2Command).map((call) => call.args[0].input.Prefix)).toEqual(['p/', 'p/']);
  });
});

describe('S3ObjectStore with listing allowed only under a prefix (as the pipeline\'s roles are)', () => {
  // Without an unprefixed ListBucket, S3 answers a read of a missing key with 403, as it does a refused read.
  const accessDenied = () => s3Error('AccessDenied', 403);
  const headForbidden = () => s3Error('Forbidden', 403);

  it('takes a 403 for a missing key when a listing of that key finds nothing', async () => {
    s3.on(GetObjectCommand).rejects(accessDenied());
    s3.on(HeadObjectCommand).rejects(headForbidden());
    s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: 'lineage/x/tasks/part-00001.json' }] });
    const reader = store();

    expect(await reader.get('lineage/x/tasks/part-00000.json')).toBeUndefined();
    expect(await reader.head('lineage/x/tasks/part-00000.json')).toBeUndefined();
    await expect(readRange(reader, 'lineage/x/tasks/part-00000.json', 0, 4)).rejects.toBeInstanceOf(ObjectNotFoundError);
    expect(s3.commandCalls(ListObjectsV2Command).map((call) => call.args[0].input)).toEqual(
      Array(3).fill({ Bucket: 'b', Prefix: 'lineage/x/tasks/part-00000.json', MaxKeys: 1 }),
    );
  });

  it('keeps the 403 of an object that exists: a refused read is never taken for a missing one', async () => {
    s3.on(GetObjectCommand).rejects(accessDenied());
    s3.on(HeadObjectCommand).rejects(headForbidden());
    s3.on(ListObjectsV2Command).resolves({ Contents: [{ Key: 'k' }] });
    await expect(store().get('k')).rejects.toMatchObject({ name: 'AccessDenied' });
    await expect(store().head('k')).rejects.toMatchObject({ name: 'Forbidden' });
  });

  it('keeps the 403 when the key may not be listed either', async () => {
    s3.on(GetObjectCommand).rejects(accessDenied());
    s3.on(ListObjectsV2Command).rejects(accessDenied());
    await expect(store().get('k')).rejects.toMatchObject({ name: 'AccessDenied' });
  });

  it('takes a 403 as absent without a listing for reads that ask so (a task looking for its own completion)', async () => {
    s3.on(GetObjectCommand).rejects(accessDenied());
    s3.on(HeadObjectCommand).rejects(headForbidden());
    expect(await store().get('lineage/x/tasks/part-00000.json', { absentIfRefused: true })).toBeUndefined();
    expect(await store().head('lineage/x/tasks/part-00000.json', { absentIfRefused: true })).toBeUndefined();
    expect(s3.commandCalls(ListObjectsV2Command)).toHaveLength(0);
  });

  it('lists under the store\'s own prefix', async () => {
    s3.on(GetObjectCommand).rejects(accessDenied());
    s3.on(ListObjectsV2Command).resolves({});
    expect(await store({ prefix: 'pipelines/wc' }).get('k')).toBeUndefined();
    expect(s3.commandCalls(ListObjectsV2Command)[0]!.args[0].input.Prefix).toBe('pipelines/wc/k');
  });
});
