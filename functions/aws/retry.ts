/**
 * Our own retries, on top of the SDK's: the SDK retries a request until it has a response, but not
 * an error that arrives while the response body streams (a socket reset mid-download), nor a
 * transient error that outlasts its attempts (S3 `SlowDown` bursts during a large shuffle).
 * Only calls that are safe to repeat go through here: idempotent ones, sends to an at-least-once
 * queue, and a conditional write that sorts out its own ambiguity. The backoff is exponential
 * with full jitter so that the many tasks of one stage hitting one prefix do not retry in lockstep.
 */
import { systemClock } from '../../core/ports/clock.ts';

export interface RetryPolicy {
  /** Attempts in all, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  sleep: (ms: number) => Promise<void>;
  /** In [0, 1); injectable so that tests are deterministic. */
  random: () => number;
}

export const defaultRetryPolicy: RetryPolicy = {
  attempts: 4,
  baseDelayMs: 100,
  maxDelayMs: 5_000,
  sleep: systemClock.sleep,
  random: Math.random,
};

export function retryPolicy(overrides: Partial<RetryPolicy> = {}): RetryPolicy {
  const policy = { ...defaultRetryPolicy, ...overrides };
  if (!Number.isInteger(policy.attempts) || policy.attempts < 1) {
    throw new RangeError(`retry attempts must be an integer >= 1, got ${policy.attempts}`);
  }
  return policy;
}

/** Full jitter: uniform in [0, min(max, base * 2^(attempt-1))). `attempt` counts failures so far, from 1. */
export function backoffMs(policy: RetryPolicy, attempt: number): number {
  return policy.random() * Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
}

const TRANSIENT_NAMES = new Set([
  // Throttling, as AWS services name it.
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'BandwidthLimitExceeded',
  // Server-side trouble and timeouts.
  'InternalError',
  'ServiceUnavailable',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
  // The socket, as Node reports it.
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

interface ErrorShape {
  name?: unknown;
  code?: unknown;
  $metadata?: { httpStatusCode?: number };
}

export function httpStatusOf(error: unknown): number | undefined {
  return (error as ErrorShape | undefined)?.$metadata?.httpStatusCode;
}

/** Worth another attempt: throttling, a 5xx, or a dropped connection. */
export function isTransient(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { name, code } = error as ErrorShape;
  if (TRANSIENT_NAMES.has(String(name)) || TRANSIENT_NAMES.has(String(code))) return true;
  const status = httpStatusOf(error);
  return status === 429 || (status !== undefined && status >= 500);
}

/** Runs `operation` until it succeeds, fails with an error `retryable` rejects, or the attempts run out. */
export async function withRetries<T>(
  operation: () => Promise<T>,
  policy: RetryPolicy = defaultRetryPolicy,
  retryable: (error: unknown) => boolean = isTransient,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (attempt >= policy.attempts || !retryable(error)) throw error;
      await policy.sleep(backoffMs(policy, attempt));
    }
  }
}
