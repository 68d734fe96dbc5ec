/**
 * Alarms and a dashboard for one pipeline: the driver's own metrics (published as Embedded Metric
 * Format log lines) next to what AWS measures of the queues and functions.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** The metrics the driver publishes (functions/metrics.ts), one dimension `Pipeline`; times in ms. */
export { METRICS as DSTREAM_METRICS } from '../functions/metrics.ts';
import { METRICS as DSTREAM_METRICS } from '../functions/metrics.ts';

export interface PipelineMonitoringProps {
  /** The pipeline's name (its `options.name`): the value of the metrics' `Pipeline` dimension. */
  pipelineName: string;
  intervalMs: number;
  ingestFunction: lambda.IFunction;
  driverFunction: lambda.IFunction;
  taskFunction: lambda.IFunction;
  taskQueue: sqs.IQueue;
  deadLetterQueue: sqs.IQueue;
}

const MINUTE = Duration.minutes(1);

export class PipelineMonitoring extends Construct {
  /** Dead letters waiting: a task failed every attempt and its interval cannot commit. */
  readonly deadLetterAlarm: cloudwatch.Alarm;
  /** Intervals start later and later: the pipeline does not keep up with its input. */
  readonly schedulingDelayAlarm: cloudwatch.Alarm;
  /** Task invocations keep failing (crashes, timeouts), not just single retried tasks. */
  readonly taskErrorsAlarm: cloudwatch.Alarm;
  /** Driver invocations keep failing: no interval is being committed. */
  readonly driverErrorsAlarm: cloudwatch.Alarm;
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: PipelineMonitoringProps) {
    super(scope, id);
    const metric = (metricName: string, statistic: string, label?: string) =>
      new cloudwatch.Metric({
        namespace: DSTREAM_METRICS.namespace,
        metricName,
        dimensionsMap: { [DSTREAM_METRICS.dimension]: props.pipelineName },
        statistic,
        period: MINUTE,
        label,
      });
    // No label: a labelled metric makes the alarm a metric-math alarm.
    const schedulingDelay = metric(DSTREAM_METRICS.schedulingDelay, 'Maximum');
    // Three intervals behind is a backlog, not a blip; a floor of 30 s absorbs the driver's
    // handover to its successor and cold starts.
    const lagThresholdMs = Math.max(3 * props.intervalMs, 30_000);

    /** An alarm that never fires on missing data: a pipeline with no input is not failing. */
    const alarm = (id: string, description: string, alarmMetric: cloudwatch.IMetric, threshold: number, periods: number, atLeast = false) =>
      new cloudwatch.Alarm(this, id, {
        alarmDescription: `dstream ${props.pipelineName}: ${description}`,
        metric: alarmMetric,
        threshold,
        comparisonOperator: atLeast
          ? cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD
          : cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
        evaluationPeriods: periods,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
      });
    const errors = (fn: lambda.IFunction) => fn.metricErrors({ period: MINUTE, statistic: 'Sum' });
    this.deadLetterAlarm = alarm(
      'DeadLetters',
      'tasks in the dead-letter queue (every attempt failed)',
      props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: 'Maximum' }),
      0,
      1,
    );
    this.schedulingDelayAlarm = alarm('SchedulingDelay', `intervals start more than ${lagThresholdMs} ms late for 3 minutes`, schedulingDelay, lagThresholdMs, 3);
    this.taskErrorsAlarm = alarm('TaskErrors', 'task function errors in 3 consecutive minutes', errors(props.taskFunction), 1, 3, true);
    this.driverErrorsAlarm = alarm('DriverErrors', 'driver function errors in 3 consecutive minutes', errors(props.driverFunction), 1, 3, true);

    const functions = Object.entries({ ingest: props.ingestFunction, driver: props.driverFunction, task: props.taskFunction });
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
          graph('Task retries and speculative copies', [
            metric(DSTREAM_METRICS.taskRetries, 'Sum', 'retries'),
            metric(DSTREAM_METRICS.speculativeTasks, 'Sum', 'speculative'),
          ]),
          graph('Task queue', [
            props.taskQueue.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: 'Maximum', label: 'waiting' }),
            props.taskQueue.metricApproximateNumberOfMessagesNotVisible({ period: MINUTE, statistic: 'Maximum', label: 'running' }),
            props.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: MINUTE, statistic: 'Maximum', label: 'dead letters' }),
          ]),
          new cloudwatch.AlarmStatusWidget({
            title: 'Alarms',
            alarms: [this.deadLetterAlarm, this.schedulingDelayAlarm, this.taskErrorsAlarm, this.driverErrorsAlarm],
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
