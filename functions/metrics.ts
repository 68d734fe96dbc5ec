/**
 * The functions' metrics as CloudWatch Embedded Metric Format log lines (the driver's, one per
 * interval; failure counts from the task function and the driver): CloudWatch
 * Logs turns the line into metrics, so publishing costs no API call and cannot fail the driver.
 * The names are the ones the stack's dashboard and alarms read (infra/pipeline-monitoring.ts).
 */
import type { IntervalReport } from '../core/streaming/driver.ts';

export const METRICS = {
  namespace: 'DStream',
  dimension: 'Pipeline',
  inputRecords: 'InputRecords',
  processingTime: 'ProcessingTime',
  schedulingDelay: 'SchedulingDelay',
  taskRetries: 'TaskRetries',
  speculativeTasks: 'SpeculativeTasks',
  /** Uploads an interval could not read (refused names, versions gone), each recorded under errors/. */
  refusedUploads: 'RefusedUploads',
  /** Copies of tasks sent but not started within their deadline (their delivery likely died before they could start). */
  unstartedTasksResent: 'UnstartedTasksResent',
  /** Task attempts that failed and were returned to the queue (published by the task function). */
  taskFailures: 'TaskFailures',
  /** Tasks that failed every delivery: their interval cannot commit until the cause is fixed. */
  deadLetteredTasks: 'DeadLetteredTasks',
  /** Published by each watchdog tick that finds the stream dormant: no interval commits, and none should. */
  dormantTicks: 'DormantTicks',
} as const;

/**
 * The EMF document of one committed interval. TaskRetries counts the tasks the driver ran again:
 * those whose inputs were lost (fetch failures) plus those rerun to rebuild lost outputs
 * (recomputed). Redeliveries of a task that crashed happen inside SQS, out of the driver's sight;
 * they show in the task function's Errors metric and, when they run out, in the dead-letter queue.
 */
export function intervalMetrics(pipeline: string, report: IntervalReport, timestamp: number): Record<string, unknown> {
  return emfDocument(
    pipeline,
    timestamp,
    [
      [METRICS.inputRecords, 'Count', report.recordsIn],
      [METRICS.processingTime, 'Milliseconds', report.processingMs],
      [METRICS.schedulingDelay, 'Milliseconds', report.schedulingDelayMs],
      [METRICS.taskRetries, 'Count', report.fetchFailures + report.recomputed],
      [METRICS.speculativeTasks, 'Count', report.speculative],
      [METRICS.refusedUploads, 'Count', report.refusedUploads],
      [METRICS.unstartedTasksResent, 'Count', report.unstartedResent],
    ],
    // Not metrics, but searchable in Logs Insights beside them.
    {
      interval: report.interval,
      uploads: report.uploads,
      inputBytes: report.inputBytes,
      outputs: report.outputs,
      tasks: report.tasks,
      tasksSkipped: report.tasksSkipped,
      recoveredIntervals: report.recoveredIntervals,
    },
  );
}

export function publishIntervalMetrics(pipeline: string, report: IntervalReport, timestamp: number): void {
  writeEmf(intervalMetrics(pipeline, report, timestamp));
}

export function publishTaskFailures(pipeline: string, count: number, timestamp: number): void {
  writeEmf(emfDocument(pipeline, timestamp, [[METRICS.taskFailures, 'Count', count]]));
}

export function publishDeadLetteredTask(pipeline: string, timestamp: number, fields: Record<string, unknown>): void {
  writeEmf(emfDocument(pipeline, timestamp, [[METRICS.deadLetteredTasks, 'Count', 1]], fields));
}

export function publishDormantTick(pipeline: string, timestamp: number): void {
  writeEmf(emfDocument(pipeline, timestamp, [[METRICS.dormantTicks, 'Count', 1]]));
}

/** An EMF document: the metrics, under the namespace and the pipeline dimension, and other fields beside them. */
function emfDocument(
  pipeline: string,
  timestamp: number,
  metrics: [name: string, unit: 'Count' | 'Milliseconds', value: number][],
  fields: Record<string, unknown> = {},
): Record<string, unknown> {
  return {
    _aws: {
      Timestamp: timestamp,
      CloudWatchMetrics: [
        { Namespace: METRICS.namespace, Dimensions: [[METRICS.dimension]], Metrics: metrics.map(([Name, Unit]) => ({ Name, Unit })) },
      ],
    },
    [METRICS.dimension]: pipeline,
    ...Object.fromEntries(metrics.map(([name, , value]) => [name, value])),
    ...fields,
  };
}

/**
 * Straight to stdout, not console.log: under Lambda's JSON log format console.log wraps the line
 * in a log record of its own, which hides the document from EMF extraction.
 */
function writeEmf(document: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(document)}\n`);
}
