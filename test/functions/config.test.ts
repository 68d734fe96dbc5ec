/**
 * The functions' environment: defaults for what may be left out, an error naming the variable for
 * what is missing or out of range; and the metrics line, in the names the dashboard reads.
 */
import { describe, expect, it } from 'vitest';
import { driverConfig, functionConfig } from '../../functions/config.ts';
import { intervalMetrics } from '../../functions/metrics.ts';
import type { IntervalReport } from '../../core/streaming/driver.ts';

const bucket = { DSTREAM_BUCKET: 'my-bucket' };

describe('function configuration', () => {
  it('defaults what the stack may leave out', () => {
    expect(functionConfig(bucket)).toEqual({
      bucket: 'my-bucket',
      taskQueueUrl: undefined,
      deadLetterQueueUrl: undefined,
      intervalMs: 10_000,
      partitions: 8,
      maxTaskAttempts: 5,
      dropState: [],
      eventsQueueUrl: undefined,
      wakeQueueUrl: undefined,
      eventsFallbackMs: 5_000,
      stayAwakeMs: 2_000,
      // About a minute of 10-second intervals.
      dormantAfterIntervals: 6,
      // Every stage to the task queue: the construct sets the bound.
      runInDriverBelowBytes: 0,
      // Interval k+1's map stages overlap k's reduce side.
      maxIntervalsInFlight: 2,
    });
  });

  it('reads what the stack sets', () => {
    const config = functionConfig({
      ...bucket,
      DSTREAM_TASK_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/tasks',
      DSTREAM_DEAD_LETTER_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/dead',
      DSTREAM_INTERVAL_MS: '2000',
      DSTREAM_PARTITIONS: '16',
      DSTREAM_MAX_TASK_ATTEMPTS: '3',
      DSTREAM_EVENTS_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/events',
      DSTREAM_WAKE_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/wake',
      DSTREAM_EVENTS_FALLBACK_MS: '3000',
      DSTREAM_STAY_AWAKE_MS: '5000',
      DSTREAM_DORMANT_AFTER_INTERVALS: '12',
      DSTREAM_RUN_IN_DRIVER_BELOW_BYTES: '8388608',
      DSTREAM_DROP_STATE: 'sessions, recent',
      DSTREAM_MAX_INTERVALS_IN_FLIGHT: '4',
    });
    expect(config).toMatchObject({
      intervalMs: 2000,
      partitions: 16,
      maxTaskAttempts: 3,
      deadLetterQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/dead',
      eventsQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/events',
      wakeQueueUrl: 'https://sqs.eu-west-1.amazonaws.com/1/wake',
      eventsFallbackMs: 3000,
      stayAwakeMs: 5000,
      dormantAfterIntervals: 12,
      runInDriverBelowBytes: 8 * 1024 * 1024,
      maxIntervalsInFlight: 4,
    });
    expect(driverConfig(config).maxIntervalsInFlight).toBe(4);
    expect(config.dropState).toEqual(['sessions', 'recent']);
    // Deploying changed code upgrades the stream, setting aside only the states named here.
    expect(driverConfig(config).upgrade).toEqual({ dropState: ['sessions', 'recent'] });
  });

  it('reproduces the control plane from before wake-ups: no events queue, always awake, never dormant', () => {
    const config = functionConfig({ ...bucket, DSTREAM_STAY_AWAKE_MS: 'always', DSTREAM_DORMANT_AFTER_INTERVALS: 'never' });
    expect(config).toMatchObject({ eventsQueueUrl: undefined, stayAwakeMs: Infinity, dormantAfterIntervals: Infinity });
    expect(driverConfig(config).scheduler.pollMs).toBe(1000);
  });

  it('polls a stage at each notice, and after the fallback wait without one, when there is an events queue', () => {
    const config = driverConfig(functionConfig({ ...bucket, DSTREAM_EVENTS_QUEUE_URL: 'https://sqs.eu-west-1.amazonaws.com/1/events' }));
    expect(config.scheduler.pollMs).toBe(5000);
  });

  it('goes dormant after about a minute of quiet, at least one interval', () => {
    expect(functionConfig({ ...bucket, DSTREAM_INTERVAL_MS: '1000' }).dormantAfterIntervals).toBe(60);
    expect(functionConfig({ ...bucket, DSTREAM_INTERVAL_MS: '45000' }).dormantAfterIntervals).toBe(2);
    expect(functionConfig({ ...bucket, DSTREAM_INTERVAL_MS: '900000' }).dormantAfterIntervals).toBe(1);
  });

  it.each([
    [{}, 'environment variable DSTREAM_BUCKET is not set'],
    [{ DSTREAM_BUCKET: '  ' }, 'environment variable DSTREAM_BUCKET is not set'],
    [{ ...bucket, DSTREAM_INTERVAL_MS: '999' }, 'environment variable DSTREAM_INTERVAL_MS must be a whole number from 1000 to 900000, got "999"'],
    [{ ...bucket, DSTREAM_INTERVAL_MS: '900001' }, 'DSTREAM_INTERVAL_MS must be a whole number from 1000 to 900000, got "900001"'],
    [{ ...bucket, DSTREAM_INTERVAL_MS: '10s' }, 'DSTREAM_INTERVAL_MS must be a whole number from 1000 to 900000, got "10s"'],
    [{ ...bucket, DSTREAM_PARTITIONS: '0' }, 'environment variable DSTREAM_PARTITIONS must be a whole number from 1 to 10000, got "0"'],
    [{ ...bucket, DSTREAM_PARTITIONS: '2.5' }, 'DSTREAM_PARTITIONS must be a whole number from 1 to 10000, got "2.5"'],
    [{ ...bucket, DSTREAM_MAX_TASK_ATTEMPTS: '0' }, 'environment variable DSTREAM_MAX_TASK_ATTEMPTS must be a whole number from 1 to 1000, got "0"'],
    [{ ...bucket, DSTREAM_DROP_STATE: 'totals,no spaces' }, 'environment variable DSTREAM_DROP_STATE must list state names (1-64 letters, digits, \'.\', \'_\' or \'-\') separated by commas, got "no spaces"'],
    // SQS delays and long polls are whole seconds.
    [{ ...bucket, DSTREAM_STAY_AWAKE_MS: '500' }, 'environment variable DSTREAM_STAY_AWAKE_MS must be a whole number from 1000 to 900000 or "always", got "500"'],
    [{ ...bucket, DSTREAM_STAY_AWAKE_MS: 'never' }, 'DSTREAM_STAY_AWAKE_MS must be a whole number from 1000 to 900000 or "always", got "never"'],
    [{ ...bucket, DSTREAM_DORMANT_AFTER_INTERVALS: '0' }, 'DSTREAM_DORMANT_AFTER_INTERVALS must be a whole number from 1 to 1000000 or "never", got "0"'],
    [{ ...bucket, DSTREAM_EVENTS_FALLBACK_MS: '30000' }, 'DSTREAM_EVENTS_FALLBACK_MS must be a whole number from 1000 to 20000, got "30000"'],
    // At most an eighth of the driver's memory.
    [{ ...bucket, DSTREAM_RUN_IN_DRIVER_BELOW_BYTES: '134217729' }, 'DSTREAM_RUN_IN_DRIVER_BELOW_BYTES must be a whole number from 0 to 134217728, got "134217729"'],
    [{ ...bucket, DSTREAM_MAX_INTERVALS_IN_FLIGHT: '0' }, 'DSTREAM_MAX_INTERVALS_IN_FLIGHT must be a whole number from 1 to 16, got "0"'],
    [{ ...bucket, DSTREAM_MAX_INTERVALS_IN_FLIGHT: '17' }, 'DSTREAM_MAX_INTERVALS_IN_FLIGHT must be a whole number from 1 to 16, got "17"'],
  ])('%j is refused: %s', (env, error) => {
    expect(() => functionConfig(env)).toThrow(error);
  });

  it('polls S3 once a second on AWS, and bounds what one task reads', () => {
    const config = driverConfig(functionConfig({ ...bucket, DSTREAM_INTERVAL_MS: '5000', DSTREAM_PARTITIONS: '4' }));
    expect(config).toMatchObject({ intervalMs: 5000, inputPartitions: 4, maxSplitBytes: 64 * 1024 * 1024, retainIntervals: 2 });
    expect(config.scheduler.pollMs).toBe(1000);
    // Tasks whose delivery died before they started are copied, no sooner than S3's second-dated markers allow.
    expect(config.scheduler.unstarted).toEqual({ enabled: true, multiplier: 4, minMs: 2000 });
  });
});

describe('interval metrics', () => {
  const report: IntervalReport = {
    interval: 7,
    uploads: 2,
    inputBytes: 100,
    refusedUploads: 1,
    recordsIn: 42,
    quarantined: 0,
    outputs: { counts: 5 },
    processingMs: 1500,
    schedulingDelayMs: 30,
    tasks: 12,
    tasksSkipped: 1,
    speculative: 2,
    unstartedResent: 6,
    fetchFailures: 3,
    recomputed: 4,
    recoveredIntervals: [5],
  };

  it('is an EMF document declaring every metric it carries, under the Pipeline dimension', () => {
    const line = intervalMetrics('wordcount', report, 1_700_000_000_000);
    const directive = (line._aws as { Timestamp: number; CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string; Unit: string }[] }[] });
    expect(directive.Timestamp).toBe(1_700_000_000_000);
    expect(directive.CloudWatchMetrics).toHaveLength(1);
    const [{ Namespace, Dimensions, Metrics }] = directive.CloudWatchMetrics as [(typeof directive.CloudWatchMetrics)[number]];
    expect(Namespace).toBe('DStream');
    expect(Dimensions).toEqual([['Pipeline']]);
    expect(line.Pipeline).toBe('wordcount');
    expect(Object.fromEntries(Metrics.map((m) => [m.Name, [m.Unit, line[m.Name]]]))).toEqual({
      InputRecords: ['Count', 42],
      ProcessingTime: ['Milliseconds', 1500],
      SchedulingDelay: ['Milliseconds', 30],
      // Tasks the driver ran again: 3 fetch failures, 4 recomputed.
      TaskRetries: ['Count', 7],
      SpeculativeTasks: ['Count', 2],
      RefusedUploads: ['Count', 1],
      UnstartedTasksResent: ['Count', 6],
    });
  });
});
