/**
 * What the functions learn from the environment the CDK stack sets, checked once, with errors
 * that name the variable; and the AWS adapters that environment describes.
 */
import { defaultSchedulerOptions } from '../core/scheduler/dag-scheduler.ts';
import type { DriverConfig } from '../core/streaming/driver.ts';
import { STATE_NAME } from '../core/graph/dstream.ts';
import { makeS3Client, makeSqsClient } from './aws/clients.ts';
import { S3ObjectStore } from './aws/s3-object-store.ts';
import { SqsTaskQueue } from './aws/sqs-task-queue.ts';

type Env = Record<string, string | undefined>;

export interface FunctionConfig {
  bucket: string;
  taskQueueUrl: string | undefined;
  deadLetterQueueUrl: string | undefined;
  intervalMs: number;
  /** Splits per interval. */
  partitions: number;
  /** Deliveries of a task message before it is dead-lettered: the task queue's maxReceiveCount. */
  maxTaskAttempts: number;
  driverFunctionName: string | undefined;
  /** Named states an upgrade (a deploy of changed code) may set aside rather than carry: DSTREAM_DROP_STATE, comma-separated. */
  dropState: string[];
}

const MiB = 1024 * 1024;

export function functionConfig(env: Env = process.env): FunctionConfig {
  return {
    bucket: required(env, 'DSTREAM_BUCKET'),
    taskQueueUrl: optional(env, 'DSTREAM_TASK_QUEUE_URL'),
    deadLetterQueueUrl: optional(env, 'DSTREAM_DEAD_LETTER_QUEUE_URL'),
    intervalMs: integer(env, 'DSTREAM_INTERVAL_MS', 10_000, 1_000, 900_000),
    partitions: integer(env, 'DSTREAM_PARTITIONS', 8, 1, 10_000),
    // SQS's range for maxReceiveCount; the construct's default.
    maxTaskAttempts: integer(env, 'DSTREAM_MAX_TASK_ATTEMPTS', 5, 1, 1000),
    driverFunctionName: optional(env, 'DSTREAM_DRIVER_FUNCTION_NAME'),
    dropState: stateNames(env, 'DSTREAM_DROP_STATE'),
  };
}

/**
 * Whether logs may carry the contents of a bad record (DSTREAM_LOG_RECORDS=true). Off by default:
 * records are user data, kept in the bucket (errors/, failure records), not in CloudWatch.
 */
export function logRecords(env: Env = process.env): boolean {
  return env.DSTREAM_LOG_RECORDS === 'true';
}

export function driverConfig(config: FunctionConfig): DriverConfig {
  return {
    intervalMs: config.intervalMs,
    inputPartitions: config.partitions,
    maxSplitBytes: 64 * MiB,
    // Every poll lists the stage's completions, and S3 charges per LIST: once a second. S3 dates
    // start markers to the second, so a task is never judged a straggler before it has run 2 s.
    scheduler: {
      ...defaultSchedulerOptions,
      pollMs: 1000,
      speculation: { ...defaultSchedulerOptions.speculation, minMs: 2000 },
      // A task Lambda that dies before its start marker would wait out the visibility timeout.
      unstarted: { ...defaultSchedulerOptions.unstarted, enabled: true, minMs: 2000 },
    },
    retainIntervals: 2,
    // On AWS, deploying changed code is the upgrade: its driver carries it out at the next boundary.
    upgrade: { dropState: config.dropState },
  };
}

/**
 * A task function stops a copy whose task another copy has committed, looking every 2 s: no copy
 * exists before speculation's 2 s, and a HEAD every 2 s costs far less than the Lambda time saved.
 */
export const SUPERSEDED_CHECK_MS = 2000;

/**
 * How long a failed task waits before its next delivery: 5 s, 10 s, 20 s, ... up to 5 minutes.
 * Long enough that a passing fault (an S3 503 burst) does not use up a task's deliveries in
 * seconds; short against the queue's visibility timeout, which would be half an hour.
 */
export function taskRetryDelayMs(receiveCount: number): number {
  return Math.min(5000 * 2 ** Math.max(0, receiveCount - 1), 300_000);
}

/** A variable this function needs, though not every function does: an error naming it when absent. */
export function requireSetting(value: string | undefined, variable: string): string {
  if (!value) throw new Error(`environment variable ${variable} is not set`);
  return value;
}

export function s3Store(config: FunctionConfig): S3ObjectStore {
  return new S3ObjectStore({ client: makeS3Client(), bucket: config.bucket });
}

export function sqsQueue(config: FunctionConfig): SqsTaskQueue {
  return new SqsTaskQueue({
    client: makeSqsClient(),
    queueUrl: requireSetting(config.taskQueueUrl, 'DSTREAM_TASK_QUEUE_URL'),
    ...(config.deadLetterQueueUrl ? { deadLetterQueueUrl: config.deadLetterQueueUrl } : {}),
  });
}

function optional(env: Env, variable: string): string | undefined {
  const value = env[variable]?.trim();
  return value ? value : undefined;
}

function required(env: Env, variable: string): string {
  return requireSetting(optional(env, variable), variable);
}

function integer(env: Env, variable: string, fallback: number, min: number, max: number): number {
  const raw = optional(env, variable);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new Error(`environment variable ${variable} must be a whole number from ${min} to ${max}, got ${JSON.stringify(env[variable])}`);
  }
  return value;
}

function stateNames(env: Env, variable: string): string[] {
  const names = (optional(env, variable) ?? '').split(',').map((n) => n.trim()).filter(Boolean);
  const bad = names.find((n) => !STATE_NAME.test(n));
  if (bad !== undefined) throw new Error(`environment variable ${variable} must list state names (1-64 letters, digits, '.', '_' or '-') separated by commas, got ${JSON.stringify(bad)}`);
  return names;
}
