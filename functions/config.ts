/**
 * What the functions learn from the environment the CDK stack sets, checked once, with errors
 * that name the variable; and the AWS adapters that environment describes.
 */
import type { TaskNotice as RunnerNotice, TaskNotices } from '../core/ports/task-runner.ts';
import { defaultSchedulerOptions } from '../core/scheduler/dag-scheduler.ts';
import type { DriverConfig } from '../core/streaming/driver.ts';
import { DEFAULT_MAX_INTERVALS_IN_FLIGHT, MAX_INTERVALS_IN_FLIGHT } from '../core/streaming/interval-pipeline.ts';
import { STATE_NAME } from '../core/graph/dstream.ts';
import { makeS3Client, makeSqsClient } from './aws/clients.ts';
import { S3ObjectStore } from './aws/s3-object-store.ts';
import { SqsTaskQueue } from './aws/sqs-task-queue.ts';
import { SqsWakeQueue } from './aws/sqs-wake-queue.ts';
import { queueChangeFeed, type ChangeFeed } from '../core/ports/change-feed.ts';

type Env = Record<string, string | undefined>;

/** What a task function sends the driver once a task has settled (its outcome is durable in the store): a hint to look. */
export type TaskNotice = Omit<RunnerNotice, 'event'>;

export type TaskNotifier = (notice: TaskNotice) => Promise<void>;

export interface FunctionConfig {
  bucket: string;
  taskQueueUrl: string | undefined;
  deadLetterQueueUrl: string | undefined;
  intervalMs: number;
  /** Splits per interval. */
  partitions: number;
  /** Deliveries of a task message before it is dead-lettered: the task queue's maxReceiveCount. */
  maxTaskAttempts: number;
  /** Named states an upgrade (a deploy of changed code) may set aside rather than carry: DSTREAM_DROP_STATE, comma-separated. */
  dropState: string[];
  /**
   * The driver events queue, which task functions notify when a task settles and the driver long
   * polls while a stage runs. Unset: the driver lists completions every second, as before.
   */
  eventsQueueUrl: string | undefined;
  /** The driver wake queue, whose messages (delayed for a timer) start the driver function. */
  wakeQueueUrl: string | undefined;
  /** With an events queue: how long the driver waits for a notice before it looks anyway (a lost notice's cost). */
  eventsFallbackMs: number;
  /**
   * A driver waits in its invocation for an interval end nearer than this, and for a later one
   * sends itself a delayed wake message and returns. Infinity: it always waits in its invocation.
   */
  stayAwakeMs: number;
  /** Intervals in a row without uploads after which the stream goes dormant. Infinity: never. */
  dormantAfterIntervals: number;
  /** A stage whose pending tasks read fewer bytes than this runs in the driver's process (functions/driver/in-driver.ts); 0: none does. */
  runInDriverBelowBytes: number;
  /** Intervals the driver runs at once (DriverConfig.maxIntervalsInFlight): DSTREAM_MAX_INTERVALS_IN_FLIGHT. */
  maxIntervalsInFlight: number;
}

const MiB = 1024 * 1024;

export function functionConfig(env: Env = process.env): FunctionConfig {
  const intervalMs = integer(env, 'DSTREAM_INTERVAL_MS', 10_000, 1_000, 900_000);
  return {
    bucket: required(env, 'DSTREAM_BUCKET'),
    taskQueueUrl: optional(env, 'DSTREAM_TASK_QUEUE_URL'),
    deadLetterQueueUrl: optional(env, 'DSTREAM_DEAD_LETTER_QUEUE_URL'),
    intervalMs,
    partitions: integer(env, 'DSTREAM_PARTITIONS', 8, 1, 10_000),
    // SQS's range for maxReceiveCount; the construct's default.
    maxTaskAttempts: integer(env, 'DSTREAM_MAX_TASK_ATTEMPTS', 5, 1, 1000),
    dropState: stateNames(env, 'DSTREAM_DROP_STATE'),
    maxIntervalsInFlight: integer(env, 'DSTREAM_MAX_INTERVALS_IN_FLIGHT', DEFAULT_MAX_INTERVALS_IN_FLIGHT, 1, MAX_INTERVALS_IN_FLIGHT),
    ...controlPlaneSettings(env, intervalMs),
  };
}

/** A re-invocation (SQS pickup, a cold start at worst) costs more latency than this: nearer ends are waited for in the invocation. */
export const DEFAULT_STAY_AWAKE_MS = 2_000;
/**
 * The construct's runInDriverBelow. Below this a stage runs in the driver: a few MB take a task tens of milliseconds to read and
 * compute, less than the hops through SQS and a task Lambda, and fit the driver's memory many
 * times over (DRIVER_TASK_CONCURRENCY at once, each holding its input and output).
 */
export const DEFAULT_RUN_IN_DRIVER_BELOW_BYTES = 8 * 1024 * 1024;
/** The largest bound the driver takes: an eighth of its 1,024 MB, so that its tasks at once (below) and its own work fit. */
export const MAX_RUN_IN_DRIVER_BELOW_BYTES = 128 * 1024 * 1024;
/** Tasks the driver runs at once: a stage's tasks are mostly waiting on S3, and the bound caps what they hold together. */
export const DRIVER_TASK_CONCURRENCY = 8;

/** A lost notice costs at most this; a LIST per stage every 5 s is a fifth of polling every second. */
export const DEFAULT_EVENTS_FALLBACK_MS = 5_000;

/**
 * About a minute of quiet: short gaps between uploads (a producer's batches, a retry) do not pay
 * a wake-up, while a pipeline left alone is dormant within a watchdog tick or two.
 */
export function defaultDormantAfterIntervals(intervalMs: number): number {
  return Math.max(1, Math.ceil(60_000 / intervalMs));
}

/**
 * How the driver is woken and waits (see the README's "On AWS"). Needs no other variable, so the
 * handlers can read it when their other settings come from their deps.
 */
export function controlPlaneSettings(
  env: Env,
  intervalMs: number,
): Pick<FunctionConfig, 'eventsQueueUrl' | 'wakeQueueUrl' | 'eventsFallbackMs' | 'stayAwakeMs' | 'dormantAfterIntervals' | 'runInDriverBelowBytes'> {
  return {
    eventsQueueUrl: optional(env, 'DSTREAM_EVENTS_QUEUE_URL'),
    wakeQueueUrl: optional(env, 'DSTREAM_WAKE_QUEUE_URL'),
    // SQS long polls wait whole seconds, 20 at most.
    eventsFallbackMs: integer(env, 'DSTREAM_EVENTS_FALLBACK_MS', DEFAULT_EVENTS_FALLBACK_MS, 1_000, 20_000),
    // SQS delays are whole seconds, so a nearer end than 1 s is always waited for in the invocation; 900 s is SQS's longest delay.
    stayAwakeMs: integerOr(env, 'DSTREAM_STAY_AWAKE_MS', 'always', DEFAULT_STAY_AWAKE_MS, 1_000, 900_000),
    dormantAfterIntervals: integerOr(env, 'DSTREAM_DORMANT_AFTER_INTERVALS', 'never', defaultDormantAfterIntervals(intervalMs), 1, 1_000_000),
    // Unset: every stage goes to the task queue, as before; the construct sets its runInDriverBelow.
    runInDriverBelowBytes: integer(env, 'DSTREAM_RUN_IN_DRIVER_BELOW_BYTES', 0, 0, MAX_RUN_IN_DRIVER_BELOW_BYTES),
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
    // Every poll lists the stage's completions, and S3 charges per LIST: once a second, or, when
    // task functions notify the driver, at each notice and after a fallback wait without one. S3
    // dates start markers to the second, so a task is never judged a straggler before it has run 2 s.
    scheduler: {
      ...defaultSchedulerOptions,
      pollMs: config.eventsQueueUrl ? config.eventsFallbackMs : 1000,
      speculation: { ...defaultSchedulerOptions.speculation, minMs: 2000 },
      // A task Lambda that dies before its start marker would wait out the visibility timeout.
      unstarted: { ...defaultSchedulerOptions.unstarted, enabled: true, minMs: 2000 },
    },
    retainIntervals: 2,
    maxIntervalsInFlight: config.maxIntervalsInFlight,
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

/** The driver events queue, as task functions send to it: notices go out one per settled task. */
export function eventsQueue(url: string): SqsTaskQueue {
  return new SqsTaskQueue({ client: makeSqsClient(), queueUrl: url });
}

/** Where a task function tells the driver a task settled: the events queue, when there is one. */
export function taskNotifier(env: Env = process.env): TaskNotifier | undefined {
  const url = optional(env, 'DSTREAM_EVENTS_QUEUE_URL');
  if (!url) return undefined;
  const queue = eventsQueue(url);
  return (notice) => queue.send([JSON.stringify(notice)]);
}

/** What the driver waits on between polls of a stage: the events queue's notices, when there is one; they name the tasks settled. */
export function eventsFeed(config: Pick<FunctionConfig, 'eventsQueueUrl'>): (ChangeFeed & TaskNotices) | undefined {
  return config.eventsQueueUrl ? queueChangeFeed(eventsQueue(config.eventsQueueUrl)) : undefined;
}

export function wakeQueue(config: Pick<FunctionConfig, 'wakeQueueUrl'>): SqsWakeQueue {
  return new SqsWakeQueue({ client: makeSqsClient(), queueUrl: requireSetting(config.wakeQueueUrl, 'DSTREAM_WAKE_QUEUE_URL') });
}

function optional(env: Env, variable: string): string | undefined {
  const value = env[variable]?.trim();
  return value ? value : undefined;
}

function required(env: Env, variable: string): string {
  return requireSetting(optional(env, variable), variable);
}

/** A whole number in range, or `word` for Infinity (a knob turned all the way: "always", "never"). */
function integerOr(env: Env, variable: string, word: string, fallback: number, min: number, max: number): number {
  return optional(env, variable) === word ? Infinity : integer(env, variable, fallback, min, max, word);
}

function integer(env: Env, variable: string, fallback: number, min: number, max: number, word?: string): number {
  const raw = optional(env, variable);
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) {
    throw new Error(`environment variable ${variable} must be a whole number from ${min} to ${max}${word ? ` or "${word}"` : ''}, got ${JSON.stringify(env[variable])}`);
  }
  return value;
}

function stateNames(env: Env, variable: string): string[] {
  const names = (optional(env, variable) ?? '').split(',').map((n) => n.trim()).filter(Boolean);
  const bad = names.find((n) => !STATE_NAME.test(n));
  if (bad !== undefined) throw new Error(`environment variable ${variable} must list state names (1-64 letters, digits, '.', '_' or '-') separated by commas, got ${JSON.stringify(bad)}`);
  return names;
}
