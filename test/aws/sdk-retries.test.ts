/**
 * The one retry policy of the AWS adapters: the SDK's, configured in functions/aws/clients.ts, plus
 * the resume of a broken body that the SDK cannot do. S3 throttles and breaks connections only under
 * load no test here can make, so these clients get a request handler that answers as S3 does: the
 * HTTP boundary, below which nothing is real. Everything above it (the SDK's retry middleware and
 * its backoff, error parsing, the adapter) is the real code.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeS3Client } from '../../functions/aws/clients.ts';
import { S3ObjectStore } from '../../functions/aws/s3-object-store.ts';

interface SentRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
}

type Answer = { status: number; headers?: Record<string, string>; body?: (string | Error)[] };

/** A request handler that answers each request with the next of `answers` (the last one forever), recording the requests. */
function s3Answering(...answers: Answer[]) {
  const requests: SentRequest[] = [];
  const handler = {
    async handle(request: SentRequest) {
      requests.push({ method: request.method, path: request.path, headers: { ...request.headers } });
      const answer = answers[Math.min(requests.length, answers.length) - 1]!;
      async function* chunks() {
        for (const part of answer.body ?? []) {
          if (part instanceof Error) throw part;
          yield Buffer.from(part);
        }
      }
      return { response: { statusCode: answer.status, headers: { ...answer.headers }, body: Readable.from(chunks()) } };
    },
    updateHttpClientConfig() {},
    httpHandlerConfigs: () => ({}),
  };
  return { handler, requests };
}

const slowDown: Answer = {
  status: 503,
  headers: { 'content-type': 'application/xml' },
  body: ['<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>'],
};
const ok: Answer = { status: 200, headers: { etag: '"e1"' } };
const socketReset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });

function storeOver(handler: ReturnType<typeof s3Answering>['handler'], env: Record<string, string> = {}): S3ObjectStore {
  const client = makeS3Client(env, { requestHandler: handler as never, credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  return new S3ObjectStore({ client, bucket: 'b' });
}

describe('the SDK\'s retries, as configured', () => {
  it('a SlowDown storm makes exactly the configured number of attempts, then reaches the caller', async () => {
    const { handler, requests } = s3Answering(slowDown);
    await expect(storeOver(handler, { AWS_MAX_ATTEMPTS: '3' }).put('k', 'payload')).rejects.toMatchObject({
      name: 'SlowDown',
      $metadata: { httpStatusCode: 503, attempts: 3 },
    });
    expect(requests.map((r) => r.method)).toEqual(['PUT', 'PUT', 'PUT']);
  });

  it('a SlowDown that passes costs one more attempt, and the write lands', async () => {
    const { handler, requests } = s3Answering(slowDown, ok);
    await storeOver(handler, { AWS_MAX_ATTEMPTS: '3' }).put('k', 'payload');
    expect(requests).toHaveLength(2);
  });
});

describe('a download that breaks mid-body', () => {
  it('resumes from the first byte not yet read, pinned to the ETag it started with', async () => {
    const { handler, requests } = s3Answering(
      { status: 200, headers: { etag: '"v1"', 'content-length': '7' }, body: ['abc', socketReset()] },
      { status: 206, headers: { etag: '"v1"', 'content-length': '4', 'content-range': 'bytes 3-6/7' }, body: ['defg'] },
    );
    expect(Buffer.from((await storeOver(handler).get('k'))!).toString()).toBe('abcdefg');
    expect(requests.map((r) => [r.method, r.headers.range, r.headers['if-match']])).toEqual([
      ['GET', undefined, undefined],
      ['GET', 'bytes=3-', '"v1"'],
    ]);
  });

  it('gives up after as many reads as the client makes attempts', async () => {
    const { handler, requests } = s3Answering({ status: 200, headers: { etag: '"v1"', 'content-length': '7' }, body: ['a', socketReset()] });
    await expect(storeOver(handler, { AWS_MAX_ATTEMPTS: '2' }).get('k')).rejects.toMatchObject({ code: 'ECONNRESET' });
    expect(requests).toHaveLength(2);
  });
});
