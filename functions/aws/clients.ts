/**
 * SDK client configuration from the environment, so that the same code talks to AWS in a Lambda
 * and to LocalStack (or any S3-compatible server) on a laptop, by environment alone; and the one
 * retry policy of the adapters: the SDK's, configured here. The adapters add only what the SDK
 * cannot retry (a body that breaks after its response, entries a batch failed inside a success),
 * bounded by the same attempts.
 */
import { S3Client, type S3ClientConfig } from '@aws-sdk/client-s3';
import { SQSClient, type SQSClientConfig } from '@aws-sdk/client-sqs';

type Env = Record<string, string | undefined>;

export interface AwsClientConfigs {
  s3: S3ClientConfig;
  sqs: SQSClientConfig;
}

const DEFAULT_REGION = 'us-east-1';
const DEFAULT_MAX_ATTEMPTS = 5;
/**
 * A hung connection fails (TimeoutError, which is retried) instead of holding a driver until its
 * invocation times out. Idle, not total: a long ranged GET streams for as long as data flows.
 * SQS's idle bound is above its 20 s long poll.
 */
const CONNECTION_TIMEOUT_MS = 3_000;
const S3_IDLE_TIMEOUT_MS = 30_000;
const SQS_IDLE_TIMEOUT_MS = 60_000;

/**
 * Region from AWS_REGION or AWS_DEFAULT_REGION; endpoint overrides from AWS_ENDPOINT_URL_S3 /
 * AWS_ENDPOINT_URL_SQS, else AWS_ENDPOINT_URL; attempts from AWS_MAX_ATTEMPTS. Retries are
 * adaptive: throttling and 5xx are retried with jittered backoff, and the client slows its own
 * sending rate while it is being throttled.
 */
export function awsClientConfig(env: Env = process.env): AwsClientConfigs {
  const common = {
    region: env.AWS_REGION || env.AWS_DEFAULT_REGION || DEFAULT_REGION,
    maxAttempts: maxAttemptsFrom(env),
    retryMode: 'adaptive',
  };
  const s3Endpoint = endpointFrom(env, 'AWS_ENDPOINT_URL_S3');
  const sqsEndpoint = endpointFrom(env, 'AWS_ENDPOINT_URL_SQS');
  return {
    // Emulators serve buckets as paths, not as virtual hosts under their own DNS name.
    s3: {
      ...common,
      requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, socketTimeout: S3_IDLE_TIMEOUT_MS },
      ...(s3Endpoint ? { endpoint: s3Endpoint, forcePathStyle: true } : {}),
    },
    sqs: {
      ...common,
      requestHandler: { connectionTimeout: CONNECTION_TIMEOUT_MS, socketTimeout: SQS_IDLE_TIMEOUT_MS },
      ...(sqsEndpoint ? { endpoint: sqsEndpoint } : {}),
    },
  };
}

export function makeS3Client(env: Env = process.env, overrides: Partial<S3ClientConfig> = {}): S3Client {
  return new S3Client({ ...awsClientConfig(env).s3, ...overrides });
}

export function makeSqsClient(env: Env = process.env, overrides: Partial<SQSClientConfig> = {}): SQSClient {
  return new SQSClient({ ...awsClientConfig(env).sqs, ...overrides });
}

/** The attempts a client makes of a request, as configured: the bound of the adapters' own resends too. */
export async function attemptsOf(client: { config: { maxAttempts: () => Promise<number> } }): Promise<number> {
  return await client.config.maxAttempts();
}

/** Full jitter, as the SDK's own backoff: uniform in [0, min(20 s, 100 ms × 2^(attempt-1))). */
export function backoffMs(attempt: number, random: () => number = Math.random): number {
  return random() * Math.min(20_000, 100 * 2 ** (attempt - 1));
}

export function httpStatusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
}

/** How Node reports a connection that broke or stalled while a response body streamed. */
const BROKEN_CONNECTION = new Set(['ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ERR_STREAM_PREMATURE_CLOSE', 'TimeoutError']);

/** Whether an error from reading a response body is the connection's, which reading again from where it broke may get past. */
export function isBrokenConnection(error: unknown): boolean {
  const { name, code } = (error ?? {}) as { name?: unknown; code?: unknown };
  return BROKEN_CONNECTION.has(String(code)) || BROKEN_CONNECTION.has(String(name));
}

function endpointFrom(env: Env, serviceVariable: string): string | undefined {
  const variable = env[serviceVariable] ? serviceVariable : 'AWS_ENDPOINT_URL';
  const value = env[variable];
  if (!value) return undefined;
  if (!URL.canParse(value)) throw new Error(`${variable} is not a URL: ${JSON.stringify(value)}`);
  return value;
}

function maxAttemptsFrom(env: Env): number {
  const value = env.AWS_MAX_ATTEMPTS;
  if (value === undefined || value === '') return DEFAULT_MAX_ATTEMPTS;
  const attempts = Number(value);
  if (!Number.isInteger(attempts) || attempts < 1) {
    throw new Error(`AWS_MAX_ATTEMPTS must be an integer >= 1, got ${JSON.stringify(value)}`);
  }
  return attempts;
}
