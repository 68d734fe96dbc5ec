/**
 * Alarms and a dashboard for one pipeline: the driver's own metrics (published as Embedded Metric
 * Format log lines) next to what AWS measures of the queues and functions.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import type { IDStreamPipeline } from './dstream-pipeline.ts';
import { Construct } from 'constructs';

/** The metrics the driver publishes (functions/metrics.ts), one dimension `Pipeline`; times in ms. */
export { METRICS as DSTREAM_METRICS } from '../functions/metrics.ts';
import { METRICS as DSTREAM_METRICS } from '../functions/metrics.ts';

export interface PipelineMonitoringProps {
  /** The pipeline watched: its metrics, functions and queues. */
  readonly pipeline: IDStreamPipeline;
  /** Length of the pipeline's interval, in milliseconds: its metrics come once an interval. */
  readonly intervalMs: number;
  /** S3 events the ingest function failed on after its retries. */
  readonly ingestFailures: sqs.IQueue;
}

const MINUTE = Duration.minutes(1);
/** A driver invocation lives up to 15 minutes, so a failing one fails about that often. */
const DRIVER_LIFETIME = Duration.minutes(15);

export class PipelineMonitoring extends Construct {
  /** A task failed every delivery and was dead-lettered: its interval cannot commit. */
  readonly deadLetterAlarm: cloudwatch.Alarm;
  /** Intervals start later and later: the pipeline does not keep up with its input. */
  readonly schedulingDelayAlarm: cloudwatch.Alarm;
  /** No interval committed for several intervals: the driver is stuck or not running. */
  readonly stalledAlarm: cloudwatch.Alarm;
  /** Tasks keep failing (each failure is retried, but a steady stream of them is a fault). */
  readonly taskFailuresAlarm: cloudwatch.Alarm;
  /** Task invocations crash or time out, beyond the failures tasks report themselves. */
  readonly taskErrorsAlarm: cloudwatch.Alarm;
  /** Driver invocations fail. */
  readonly driverErrorsAlarm: cloudwatch.Alarm;
  /** Uploads whose S3 event the ingest function could not admit: they are in no interval. */
  readonly ingestFailuresAlarm: cloudwatch.Alarm;
  /** Uploads an interval refused (a name S3 allows but dstream cannot read, a version gone): recorded, not read. */
  readonly refusedUploadsAlarm: cloudwatch.Alarm;
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: PipelineMonitoringProps) {
    super(scope, id);
    // The driver publishes once per interval: periods shorter than an interval would be empty.
    const period = Duration.seconds(Math.max(60, Math.ceil(props.intervalMs / 60_000) * 60));
    const { pipeline } = props;
    const metric = (metricName: string, statistic: string, label?: string, metricPeriod = MINUTE) =>
      pipeline.metric(metricName, { statistic, period: metricPeriod, label });
    // No label: a labelled metric makes the alarm a metric-math alarm.
    const schedulingDelay = metric(DSTREAM_METRICS.schedulingDelay, 'Maximum', undefined, period);
    // Three intervals behind is a backlog, not a blip; a floor of 30 s absorbs the driver's
    // handover to its successor and cold starts.
    const lagThresholdMs = Math.max(3 * props.intervalMs, 30_000);

    /** Missing data is not breaching unless said: a pipeline with no input is not failing. */
    const alarm = (
      id: string,
      description: string,
      alarmMetric: cloudwatch.IMetric,
      threshold: number,
      periods: number,
      comparison = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      missing = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) =>
      new cloudwatch.Alarm(this, id, {
        alarmDescription: `dstream ${pipeline.pipelineName}: ${description}`,
        metric: alarmMetric,
        threshold,
        comparisonOperator: comparison,
        evaluationPeriods: periods,
        treatMissingData: missing,
      });
    const errors = (fn: lambda.IFunction, errorPeriod = MINUTE) => fn.metricErrors({ period: errorPeriod, statistic: 'Sum' });
    // The driver drains the dead-letter queue within a second of a letter arriving, so the
    // queue's depth would rarely be seen; the driver counts what it drains instead.
    this.deadLetterAlarm = alarm(
      'DeadLetters',
      'a task failed every delivery and was dead-lettered; its interval cannot commit until the cause is fixed (see the driver\'s log and errors/)',
      metric(DSTREAM_METRICS.deadLetteredTasks, 'Sum'),
      1,
      1,
    );
    this.schedulingDelayAlarm = alarm(
      'SchedulingDelay',
      `intervals start more than ${lagThresholdMs} ms late for 3 periods`,
      schedulingDelay,
      lagThresholdMs,
      3,
      cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
    );
    // A committed interval publishes its scheduling delay, even when empty: none in three periods
    // means none committed, whatever the input, unless the watchdog found the stream dormant.
    this.stalledAlarm = alarm(
      'Stalled',
      'no interval committed for 3 periods, and the stream is not dormant: the driver is failing, stuck, or not running',
      new cloudwatch.MathExpression({
        expression: 'FILL(committed, 0) + FILL(dormant, 0)',
        usingMetrics: {
          committed: metric(DSTREAM_METRICS.schedulingDelay, 'SampleCount', undefined, period),
          dormant: metric(DSTREAM_METRICS.dormantTicks, 'SampleCount', undefined, period),
        },
        period,
      }),
      1,
      3,
      cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      cloudwatch.TreatMissingData.BREACHING,
    );
    this.taskFailuresAlarm = alarm('TaskFailures', 'tasks failed in 3 consecutive minutes (each is retried; see the task function\'s log)', metric(DSTREAM_METRICS.taskFailures, 'Sum'), 1, 3);
    this.taskErrorsAlarm = alarm('TaskErrors', 'task function invocations crashed or timed out in 3 consecutive minutes', errors(pipeline.taskFunction), 1, 3);
    this.driverErrorsAlarm = alarm('DriverErrors', 'the driver function failed (see its log)', errors(pipeline.driverFunction, DRIVER_LIFETIME), 1, 1);
    this.ingestFailuresAlarm = alarm(
      'IngestFailures',
      'uploads the ingest function could not admit after its retries: they are in no interval until their events are replayed (see the README)',
      props.ingestFailures.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: 'Maximum' }),
      1,
      1,
    );
    this.refusedUploadsAlarm = alarm(
      'RefusedUploads',
      'uploads were refused and not read: each has a record under errors/interval=<k>/uploads/ saying why (see the README\'s runbook)',
      metric(DSTREAM_METRICS.refusedUploads, 'Sum'),
      1,
      1,
    );

    const functions = Object.entries({ ingest: pipeline.ingestFunction, driver: pipeline.driverFunction, task: pipeline.taskFunction });
    const graph = (title: string, left: cloudwatch.IMetric[], extra: Partial<cloudwatch.GraphWidgetProps> = {}) =>
      new cloudwatch.GraphWidget({ title, left, width: 8, height: 6, ...extra });
    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
      widgets: [
        [
          graph('Input records', [metric(DSTREAM_METRICS.inputRecords, 'Sum', 'records per minute')]),
          graph('Processing time per interval (ms)', [
            metric(DSTREAM_METRICS.processingTime, 'Average', 'average'),
            metric(DSTREAM_METRICS.processingTime, 'Maximum', 'worst'),
          ], { leftAnnotations: [{ value: props.intervalMs, label: 'interval' }] }),
          graph('Scheduling delay (ms)', [schedulingDelay.with({ label: 'worst' })], { leftAnnotations: [{ value: lagThresholdMs, label: 'alarm' }] }),
        ],
        [
          graph('Task failures, retries and speculative copies', [
            metric(DSTREAM_METRICS.taskFailures, 'Sum', 'failed attempts'),
            metric(DSTREAM_METRICS.taskRetries, 'Sum', 'rerun by the driver'),
            metric(DSTREAM_METRICS.speculativeTasks, 'Sum', 'speculative'),
            metric(DSTREAM_METRICS.deadLetteredTasks, 'Sum', 'dead-lettered'),
            metric(DSTREAM_METRICS.refusedUploads, 'Sum', 'uploads refused'),
          ]),
          graph('Task queue', [
            pipeline.taskQueue.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: 'Maximum', label: 'waiting' }),
            pipeline.taskQueue.metricApproximateNumberOfMessagesNotVisible({ period: MINUTE, statistic: 'Maximum', label: 'running' }),
            pipeline.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: 'Maximum', label: 'dead letters' }),
          ]),
          new cloudwatch.AlarmStatusWidget({
            title: 'Alarms',
            alarms: [
              this.deadLetterAlarm,
              this.stalledAlarm,
              this.schedulingDelayAlarm,
              this.taskFailuresAlarm,
              this.taskErrorsAlarm,
              this.driverErrorsAlarm,
              this.ingestFailuresAlarm,
              this.refusedUploadsAlarm,
            ],
            width: 8,
            height: 6,
          }),
        ],
        [
          graph('Function errors', functions.map(([label, fn]) => fn.metricErrors({ period: MINUTE, statistic: 'Sum', label }))),
          graph('Function duration, p99 (ms)', functions.map(([label, fn]) => fn.metricDuration({ period: MINUTE, statistic: 'p99', label }))),
          graph('Function throttles', functions.map(([label, fn]) => fn.metricThrottles({ period: MINUTE, statistic: 'Sum', label }))),
        ],
      ],
    });
  }
}
