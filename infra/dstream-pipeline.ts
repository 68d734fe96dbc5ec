/**
 * One dstream pipeline on AWS: a bucket that holds everything durable, a task queue and its
 * dead-letter queue, and three functions: ingest (admits uploads to intervals), driver (plans and
 * commits intervals) and task (computes partitions).
 */
import { resolve } from 'node:path';
import { Aws, CfnOutput, Duration, Fn, RemovalPolicy, Size, Stack, Token, Tokenization, Validations } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct, type IConstruct } from 'constructs';
import { INCOMING } from '../core/layout.ts';
import { validateKey } from '../core/ports/object-store.ts';
import { validateOutputName } from '../core/rdd/rdd.ts';
import { STATE_NAME } from '../core/graph/dstream.ts';
import { bucketAccessStatements, enginePrefixes, FUNCTION_BUCKET_ACCESS, wildcardPatterns, withObjectReads, withTaskAccess, type BucketAccess } from './bucket-access.ts';
import { MAX_RUN_IN_DRIVER_BELOW_BYTES } from '../functions/config.ts';
import { DEFAULT_MAX_INTERVALS_IN_FLIGHT, MAX_INTERVALS_IN_FLIGHT } from '../core/streaming/interval-pipeline.ts';
import { PipelineFunction, userProject, type HandlerKind, type UserProject } from './pipeline-function.ts';
import { describePipeline } from './pipeline-module.ts';
import { DSTREAM_METRICS, PipelineMonitoring } from './pipeline-monitoring.ts';
import { addQueryFunction, grantQueryAccess } from './query-function.ts';

/** Properties of a DStreamPipeline: only `pipeline` is required. */
export interface DStreamPipelineProps {
  /**
   * Path (absolute, or relative to the working directory) of the module whose default export is
   * the pipeline (`definePipeline`), TypeScript or JavaScript. It is loaded at synth time: its
   * `options.name` names the metrics, alarms and dashboard, and its `options.checkpointEvery`
   * bounds the retention periods below.
   */
  readonly pipeline: string;
  /** Length of an interval, in seconds: from 1 to 900, known at synth time. @default 10 */
  readonly intervalSeconds?: number;
  /** Input splits per interval (DSTREAM_PARTITIONS), from 1 to 10,000. @default 8 */
  readonly partitions?: number;
  /** Most task functions running at once: the maximum concurrency of the queue's event source, 2 to 1000. @default 20 */
  readonly taskConcurrency?: number;
  /** Memory of the task function, in MiB: from 128 to 10,240. @default 1024 */
  readonly taskMemoryMiB?: number;
  /** Longest a task may run: from 1 second to 15 minutes, known at synth time. @default Duration.minutes(5) */
  readonly taskTimeout?: Duration;
  /**
   * Days uploads (`incoming/`), their interval assignments (`intake/`) and the intervals' lineage
   * (`lineage/`) are kept, 1 to 36,500; no shorter than the time between checkpoints. An upload
   * replaced or deleted is kept as a noncurrent version for a day longer, for the lineage that names it.
   * @default 7, or 3 times the time between checkpoints if that is longer
   */
  readonly retentionDays?: number;
  /**
   * Days the records under `errors/` are kept, 1 to 36,500: quarantined records, refused uploads
   * and dead-lettered tasks. Quarantined records are raw lines of your input, so keep them no
   * longer than the input's own retention rules allow. The engine never reads them back.
   * @default 30
   */
  readonly errorRetentionDays?: number;
  /**
   * Days the cache tier (`cache/`: shuffle blocks, state between checkpoints) is kept, 1 to
   * 36,500. What expires is recomputed from lineage when needed, so this trades storage for
   * recomputation; keep it above the time between checkpoints, and above your longest window.
   * @default 1, or 3 times the time between checkpoints if that is longer
   */
  readonly cacheRetentionDays?: number;
  /**
   * Deliveries of a task before it is dead-lettered, 1 to 1000. AWS advises at least 5 for a
   * queue that feeds a function, so that throttled deliveries do not dead-letter a task.
   * @default 5
   */
  readonly maxTaskAttempts?: number;
  /**
   * The least severe level the functions' logs keep. The functions log in Lambda's JSON format:
   * each record has its level, timestamp and request id. DEBUG adds a record per admitted upload.
   * @default lambda.ApplicationLogLevel.INFO
   */
  readonly logLevel?: lambda.ApplicationLogLevel;
  /**
   * The lock file of the project that bundles the functions: esbuild runs in its folder and
   * resolves the pipeline's imports from there.
   * @default - the nearest package-lock.json, yarn.lock, pnpm-lock.yaml or bun.lock(b) in the working directory or above it
   */
  readonly depsLockFilePath?: string;
  /**
   * Named states of the running stream that the deployed code may set aside rather than carry
   * (DSTREAM_DROP_STATE). Deploying changed code upgrades the stream: its driver carries each
   * named state to the operator of the same name at the next interval boundary, and refuses to run
   * while a named state has no operator in the new code, unless it is listed here; what is set
   * aside is kept under `driver/upgrades/`, never deleted. Each 1-64 letters, digits, '.', '_' or
   * '-'. Remove it once the upgrade is done: a name the stream no longer has refuses the next one.
   * @default - none: an upgrade that would lose named state is refused
   */
  readonly dropState?: string[];
  /** @default - generated by CloudFormation */
  readonly bucketName?: string;
  /** Of the bucket and log groups; DESTROY removes the bucket only once it is empty. @default RemovalPolicy.RETAIN */
  readonly removalPolicy?: RemovalPolicy;
  /** Encrypt the bucket with this key instead of S3-managed keys. @default - SSE-S3 */
  readonly encryptionKey?: kms.IKey;
  /**
   * Whether task functions notify the driver, through the driver events queue, as each task
   * settles, so that a stage boundary costs milliseconds instead of up to a poll. Without, the
   * driver lists a running stage's completions every second (as before; the cost model's "current").
   * @default true
   */
  readonly completionNotices?: boolean;
  /**
   * With `completionNotices`: how long the driver waits for a notice before it lists the stage's
   * completions anyway, which is what a lost notice costs. From 1 to 20 seconds (SQS's longest
   * long poll), whole seconds, known at synth time.
   * @default Duration.seconds(5)
   */
  readonly completionFallback?: Duration;
  /**
   * The driver waits in its invocation for an interval end nearer than this; for a later one it
   * sets a timer (a delayed wake message) and returns, so no Lambda runs between intervals. From
   * 1 second to 15 minutes, whole seconds, known at synth time; `intervalSeconds` or more keeps
   * the driver running all the time (as before: the cost model's "current").
   * @default Duration.seconds(2) - a wake-up costs more latency than that
   */
  readonly stayAwake?: Duration;
  /**
   * Intervals in a row without uploads after which the stream goes dormant: no driver runs and
   * no interval is processed until the next upload, which wakes the stream; the intervals it slept
   * through are then caught up, in order, with the results they would have had on time. Never
   * before every window holding the last upload has passed it. From 1 to 1,000,000; 0 never.
   * @default - about a minute: 60 / intervalSeconds, rounded up
   */
  readonly dormantAfterIntervals?: number;
  /**
   * A stage whose tasks read less than this in all (its input splits, shuffle blocks and stored
   * state) runs in the driver function, with the task function's code and records, instead of
   * going through the task queue: for small intervals the hops through SQS and a task Lambda cost
   * more than the work. The driver's role is then granted what the task role reads and writes.
   * From 0 (every stage goes to the task queue) to 128 MiB, an eighth of the driver's memory.
   * @default Size.mebibytes(8)
   */
  readonly runInDriverBelow?: Size;
  /**
   * Whether shell sessions may run their queries' tasks on Lambda (`dstream shell --bucket <b>
   * --on-lambda <queryQueue url>`): a query function (the task function's code, as many at once as
   * `taskConcurrency` allows, beside the stream's tasks) fed by a query queue of its own, with a
   * role that reads the bucket and writes only the sessions' scratch under `queries/`. Let a shell
   * use it with `grantQuery`.
   * @default false
   */
  readonly interactiveQueries?: boolean;
  /**
   * Intervals the driver runs at once: once interval k+1 has ended, its stages over its own
   * uploads run while interval k's later stages finish; stages that read state or windows wait for
   * the interval that writes them, and outputs commit in interval order. 1 runs one interval after
   * another. From 1 to 16.
   * @default 2
   */
  readonly maxIntervalsInFlight?: number;
}

/** A deployed dstream pipeline, as other constructs see it. */
export interface IDStreamPipeline extends IConstruct {
  /** The pipeline's `options.name`: the value of its metrics' `Pipeline` dimension. */
  readonly pipelineName: string;
  /** Holds everything durable: uploads under `incoming/`, outputs under `output/`, the engine's state. */
  readonly bucket: s3.IBucket;
  /** The queue the driver sends tasks on, which feeds the task function. */
  readonly taskQueue: sqs.IQueue;
  /** Tasks that failed every delivery (`maxTaskAttempts`), or that cannot succeed: their interval cannot commit until the cause is fixed. */
  readonly deadLetterQueue: sqs.IQueue;
  /** Admits uploads under `incoming/` to intervals, on the bucket's notifications. */
  readonly ingestFunction: lambda.IFunction;
  /**
   * Plans, runs and commits intervals, when its wake queue starts it (a timer it set, an upload to
   * a dormant stream); a rule every minute starts one if none holds the lease and the stream is awake.
   */
  readonly driverFunction: lambda.IFunction;
  /** Starts the driver function: the timers it sets itself (delayed messages), its hand-overs, and uploads to a dormant stream. */
  readonly driverWakeQueue: sqs.IQueue;
  /** Task functions' notices that a task settled, which the driver long polls while a stage runs; absent without `completionNotices`. */
  readonly driverEventsQueue?: sqs.IQueue;
  /** Computes one partition of a stage per message of the task queue. */
  readonly taskFunction: lambda.IFunction;
  /** Where shell sessions send their queries' tasks (`--on-lambda <url>`); absent without `interactiveQueries`. */
  readonly queryQueue?: sqs.IQueue;
  /** Query tasks that failed every delivery, which their sessions drain; absent without `interactiveQueries`. */
  readonly queryDeadLetterQueue?: sqs.IQueue;
  /** Runs each query task on its session's scratch under `queries/`; absent without `interactiveQueries`. */
  readonly queryFunction?: lambda.IFunction;
  /** Lets `grantee` run shell sessions on the query function (needs `interactiveQueries`). */
  grantQuery(grantee: iam.IGrantable): iam.Grant;
  /** Lets `grantee` upload input under `incoming/<prefix>`. */
  grantUpload(grantee: iam.IGrantable, prefix?: string): iam.Grant;
  /** Lets `grantee` read committed outputs, all or one. */
  grantReadOutputs(grantee: iam.IGrantable, outputName?: string): iam.Grant;
  /** One of the metrics the pipeline publishes (DSTREAM_METRICS), under its `Pipeline` dimension. */
  metric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Records read per interval. @default - sum over 5 minutes */
  metricInputRecords(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Milliseconds from an interval's start of work to its commit. @default - average over 5 minutes */
  metricProcessingTime(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Milliseconds an interval started after its end: above a few intervals, the pipeline falls behind. @default - maximum over 5 minutes */
  metricSchedulingDelay(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Uploads refused (a name or version that cannot be read), each recorded under `errors/`. @default - sum over 5 minutes */
  metricRefusedUploads(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Task attempts that failed and went back to the queue. @default - sum over 5 minutes */
  metricTaskFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Tasks the driver ran again to rebuild lost inputs or outputs. @default - sum over 5 minutes */
  metricTaskRetries(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Speculative copies of slow tasks. @default - sum over 5 minutes */
  metricSpeculativeTasks(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
  /** Tasks that failed every delivery: their interval cannot commit until the cause is fixed. @default - sum over 5 minutes */
  metricDeadLetteredTasks(props?: cloudwatch.MetricOptions): cloudwatch.Metric;
}

/** The driver runs up to ~14 minutes, then hands over to a fresh invocation of itself. */
const DRIVER_TIMEOUT = Duration.minutes(15);
/** AWS's advice for a queue that feeds a function: visibility at least six times its timeout. */
const VISIBILITY_PER_TIMEOUT = 6;
const LOG_RETENTION = logs.RetentionDays.ONE_MONTH;

/**
 * A dstream pipeline on AWS, from the module that defines it: `new DStreamPipeline(stack, 'Clicks',
 * { pipeline: 'pipelines/clicks.ts' })`. Its members are documented on IDStreamPipeline.
 */
export class DStreamPipeline extends Construct implements IDStreamPipeline {
  readonly pipelineName: string;
  readonly bucket: s3.IBucket;
  readonly taskQueue: sqs.IQueue;
  readonly deadLetterQueue: sqs.IQueue;
  /** S3 events the ingest function failed to admit after its retries. */
  readonly ingestFailures: sqs.IQueue;
  readonly ingestFunction: lambda.IFunction;
  readonly driverFunction: lambda.IFunction;
  readonly driverWakeQueue: sqs.IQueue;
  readonly driverEventsQueue?: sqs.IQueue;
  readonly taskFunction: lambda.IFunction;
  readonly queryQueue?: sqs.IQueue;
  readonly queryDeadLetterQueue?: sqs.IQueue;
  readonly queryFunction?: lambda.IFunction;
  /** The pipeline's alarms and dashboard. */
  readonly monitoring: PipelineMonitoring;

  constructor(scope: Construct, id: string, props: DStreamPipelineProps) {
    super(scope, id);
    const config = this.checked(undefined, () => resolveProps(props));
    this.pipelineName = config.pipelineName;
    const removalPolicy = props.removalPolicy ?? RemovalPolicy.RETAIN;

    const bucket = new s3.Bucket(this, 'Bucket', {
      bucketName: props.bucketName,
      ...(props.encryptionKey
        ? { encryption: s3.BucketEncryption.KMS, encryptionKey: props.encryptionKey, bucketKeyEnabled: true }
        : { encryption: s3.BucketEncryption.S3_MANAGED }),
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      // Every upload is pinned at admission by its version id: a later PUT to the key is another
      // upload, and the admitted bytes stay readable for recomputation.
      versioned: true,
      removalPolicy,
      lifecycleRules: lifecycleRules(config),
    });
    this.bucket = bucket;
    Validations.of(bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'Nearly all requests to this bucket are the pipeline\'s own functions (every task reads and writes several objects ' +
        'per interval), which access logs would mostly repeat at a cost; where uploads must be audited, use CloudTrail data events.',
    });

    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetterQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    this.taskQueue = new sqs.Queue(this, 'TaskQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(config.taskTimeout.toSeconds() * VISIBILITY_PER_TIMEOUT),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: config.maxTaskAttempts },
    });

    // A wake message is a hint to run: one lost or failed is made good by the watchdog.
    this.driverWakeQueue = new sqs.Queue(this, 'DriverWakeQueue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout: Duration.seconds(DRIVER_TIMEOUT.toSeconds() * VISIBILITY_PER_TIMEOUT),
      // Past its delay and a failed delivery, a wake message says nothing the watchdog does not.
      retentionPeriod: Duration.hours(1),
    });
    Validations.of(this.driverWakeQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'A wake message only starts the driver, which reads everything from the bucket; the watchdog rule replaces one that failed, so there is nothing to dead-letter.',
    });
    if (config.completionNotices) {
      this.driverEventsQueue = new sqs.Queue(this, 'DriverEventsQueue', {
        encryption: sqs.QueueEncryption.SQS_MANAGED,
        enforceSSL: true,
        // A notice is stale within seconds: SQS's shortest retention keeps a dormant stream's queue empty.
        retentionPeriod: Duration.seconds(60),
      });
      Validations.of(this.driverEventsQueue).acknowledge({
        id: 'AwsSolutions-SQS3',
        reason: 'A notice is a hint that the driver looks at the bucket; one lost costs a fallback poll, so there is nothing to dead-letter.',
      });
    }
    const environment = {
      DSTREAM_BUCKET: this.bucket.bucketName,
      DSTREAM_TASK_QUEUE_URL: this.taskQueue.queueUrl,
      DSTREAM_DEAD_LETTER_QUEUE_URL: this.deadLetterQueue.queueUrl,
      DSTREAM_INTERVAL_MS: String(config.intervalMs),
      DSTREAM_PARTITIONS: Tokenization.stringifyNumber(config.partitions),
      // The task function dead-letters a task's last failed delivery itself, at once.
      DSTREAM_MAX_TASK_ATTEMPTS: Tokenization.stringifyNumber(config.maxTaskAttempts),
      DSTREAM_WAKE_QUEUE_URL: this.driverWakeQueue.queueUrl,
      ...(this.driverEventsQueue ? { DSTREAM_EVENTS_QUEUE_URL: this.driverEventsQueue.queueUrl, DSTREAM_EVENTS_FALLBACK_MS: String(config.completionFallbackMs) } : {}),
      DSTREAM_STAY_AWAKE_MS: String(config.stayAwakeMs),
      DSTREAM_RUN_IN_DRIVER_BELOW_BYTES: Tokenization.stringifyNumber(config.runInDriverBelowBytes),
      ...(config.dormantAfterIntervals === undefined ? {} : { DSTREAM_DORMANT_AFTER_INTERVALS: config.dormantAfterIntervals }),
      DSTREAM_MAX_INTERVALS_IN_FLIGHT: Tokenization.stringifyNumber(config.maxIntervalsInFlight),
      NODE_OPTIONS: '--enable-source-maps',
      ...(config.dropState === undefined ? {} : { DSTREAM_DROP_STATE: config.dropState }),
    };
    const common = { pipelineModule: config.pipelineModule, driverAccess: config.driverAccess, project: config.project, removalPolicy, logLevel: config.logLevel, key: props.encryptionKey };

    // S3 invokes ingest asynchronously: after Lambda's two retries an event would be dropped,
    // and its upload never admitted. It lands here instead, and the monitoring alarms on it.
    this.ingestFailures = new sqs.Queue(this, 'IngestFailures', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.ingestFailures).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: 'This queue is itself a dead-letter destination: the ingest function\'s on-failure destination for events it could not admit.',
    });
    this.ingestFunction = this.pipelineFunction('ingest', common, {
      description: `dstream ${config.pipelineName}: admits uploads under ${INCOMING} to intervals`,
      memorySize: 256,
      timeout: Duration.seconds(30),
      onFailure: new destinations.SqsDestination(this.ingestFailures),
      environment,
    });
    this.driverFunction = this.pipelineFunction('driver', common, {
      description: `dstream ${config.pipelineName}: seals, plans and commits intervals`,
      memorySize: 1024,
      timeout: DRIVER_TIMEOUT,
      // No reserved concurrency (it fails deployment on accounts with a low concurrency quota):
      // the lease in S3 lets one driver work, and any other returns at once.
      // A lost watchdog event is not retried: the next watchdog tick, within a minute, starts a
      // driver if none holds the lease.
      retryAttempts: 0,
      maxEventAge: Duration.minutes(1),
      // A driver wakes itself through its wake queue (timers, hand-overs), forever; Lambda would
      // otherwise take that chain for a runaway loop and stop it after 16 hops.
      recursiveLoop: lambda.RecursiveLoop.ALLOW,
      environment,
    });
    this.taskFunction = this.pipelineFunction('task', common, {
      description: `dstream ${config.pipelineName}: computes the partitions of an interval`,
      memorySize: config.taskMemoryMiB,
      timeout: config.taskTimeout,
      environment,
    });

    bucket.addEventNotification(s3.EventType.OBJECT_CREATED, new s3n.LambdaDestination(this.ingestFunction), { prefix: INCOMING });
    acknowledgeNotificationsHandler(Stack.of(this));

    // One task per invocation: a batch would run its tasks one after another in one function,
    // taking a stage's parallelism away and hiding the queued ones from speculation.
    this.taskFunction.addEventSource(
      new SqsEventSource(this.taskQueue, { batchSize: 1, reportBatchItemFailures: true, maxConcurrency: config.taskConcurrency }),
    );
    // A task that fails its last allowed delivery is dead-lettered at once by the function itself.
    this.taskFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [this.deadLetterQueue.queueArn] }));
    // Whoever may send a task chooses what the task role computes: only the driver may, whatever
    // the identity policies of the account's other principals allow.
    this.taskQueue.addToResourcePolicy(
      new iam.PolicyStatement({
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['sqs:SendMessage'],
        resources: [this.taskQueue.queueArn],
        conditions: { ArnNotEquals: { 'aws:PrincipalArn': this.driverFunction.role!.roleArn } },
      }),
    );

    this.driverFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage', 'sqs:GetQueueAttributes'], resources: [this.taskQueue.queueArn] }));
    this.driverFunction.addToRolePolicy(
      new iam.PolicyStatement({
        actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueAttributes'],
        resources: [this.deadLetterQueue.queueArn],
      }),
    );
    // Timers and hand-overs; and an upload wakes a dormant stream. Each wake message is one
    // start (a batch may hold several); two is SQS's least concurrency, and the lease lets one work.
    this.driverFunction.addEventSource(new SqsEventSource(this.driverWakeQueue, { batchSize: 10, maxConcurrency: 2 }));
    for (const sender of [this.driverFunction, this.ingestFunction]) {
      sender.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [this.driverWakeQueue.queueArn] }));
    }
    if (this.driverEventsQueue) {
      this.taskFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [this.driverEventsQueue.queueArn] }));
      this.driverFunction.addToRolePolicy(new iam.PolicyStatement({ actions: ['sqs:ReceiveMessage', 'sqs:DeleteMessage'], resources: [this.driverEventsQueue.queueArn] }));
    }

    // The watchdog: timers and uploads wake the driver; this only restarts a missing one (a lost
    // wake message, a crashed driver), returning at once for a live lease or a dormant stream.
    new events.Rule(this, 'DriverWatchdog', {
      description: `dstream ${config.pipelineName}: starts a driver unless one holds the lease or the stream is dormant`,
      schedule: events.Schedule.rate(Duration.minutes(1)),
      targets: [new targets.LambdaFunction(this.driverFunction)],
    });

    if (config.interactiveQueries) {
      const queries = addQueryFunction(this, {
        bucket: this.bucket,
        maxTaskAttempts: config.maxTaskAttempts,
        visibilityTimeout: Duration.seconds(config.taskTimeout.toSeconds() * VISIBILITY_PER_TIMEOUT),
        concurrency: config.taskConcurrency,
        // What a query task needs of the stream's settings: no events queue (it tells no driver), no interval.
        environment: { DSTREAM_BUCKET: environment.DSTREAM_BUCKET, DSTREAM_MAX_TASK_ATTEMPTS: environment.DSTREAM_MAX_TASK_ATTEMPTS, NODE_OPTIONS: environment.NODE_OPTIONS },
        makeFunction: (access, queryEnvironment) =>
          this.pipelineFunction('task', common, {
            description: `dstream ${config.pipelineName}: runs the tasks of shell sessions' queries`,
            memorySize: config.taskMemoryMiB,
            timeout: config.taskTimeout,
            environment: queryEnvironment,
          }, { name: 'Query', access }),
      });
      this.queryQueue = queries.queue;
      this.queryDeadLetterQueue = queries.deadLetterQueue;
      this.queryFunction = queries.function;
      new CfnOutput(this, 'QueryQueueUrl', { description: 'Give it to dstream shell --on-lambda', value: queries.queue.queueUrl });
    }

    this.monitoring = new PipelineMonitoring(this, 'Monitoring', { pipeline: this, intervalMs: config.intervalMs, ingestFailures: this.ingestFailures });

    new CfnOutput(this, 'BucketName', { description: 'The pipeline\'s bucket', value: this.bucket.bucketName });
    new CfnOutput(this, 'UploadPrefix', { description: 'Upload input here', value: `s3://${this.bucket.bucketName}/${INCOMING}` });
    new CfnOutput(this, 'IngestFunctionArn', { description: 'The function S3 notifies of uploads', value: this.ingestFunction.functionArn });
    new CfnOutput(this, 'Dashboard', {
      description: 'The pipeline\'s CloudWatch dashboard',
      value: `https://${Aws.REGION}.console.aws.amazon.com/cloudwatch/home?region=${Aws.REGION}#dashboards:name=${this.monitoring.dashboard.dashboardName}`,
    });
  }

  /**
   * One of the metrics the pipeline publishes (DSTREAM_METRICS: the driver once per interval, the
   * task function on failures), in the `DStream` namespace under its `Pipeline` dimension.
   * @default - the sum over 5 minutes, as aws-cdk-lib's metrics; `props` overrides any of it
   */
  metric(metricName: string, props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return new cloudwatch.Metric({
      namespace: DSTREAM_METRICS.namespace,
      metricName,
      dimensionsMap: { [DSTREAM_METRICS.dimension]: this.pipelineName },
      statistic: cloudwatch.Stats.SUM,
      ...props,
    }).attachTo(this);
  }

  metricInputRecords(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(DSTREAM_METRICS.inputRecords, props);
  }

  metricProcessingTime(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(DSTREAM_METRICS.processingTime, { statistic: cloudwatch.Stats.AVERAGE, ...props });
  }

  metricSchedulingDelay(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(DSTREAM_METRICS.schedulingDelay, { statistic: cloudwatch.Stats.MAXIMUM, ...props });
  }

  metricRefusedUploads(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(DSTREAM_METRICS.refusedUploads, props);
  }

  metricTaskFailures(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(DSTREAM_METRICS.taskFailures, props);
  }

  metricTaskRetries(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(DSTREAM_METRICS.taskRetries, props);
  }

  metricSpeculativeTasks(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(DSTREAM_METRICS.speculativeTasks, props);
  }

  metricDeadLetteredTasks(props?: cloudwatch.MetricOptions): cloudwatch.Metric {
    return this.metric(DSTREAM_METRICS.deadLetteredTasks, props);
  }

  /**
   * Lets `grantee` upload input for the pipeline: s3:PutObject on keys under `incoming/<prefix>`
   * and nothing else (no reads, nothing the engine keeps), plus the bucket's key if it has one.
   * Each PUT is an upload of its own, even to a key used before: the bucket is versioned and the
   * pipeline reads the version it admitted. A failed multipart upload is aborted by the bucket's
   * lifecycle after a day.
   *
   * @param prefix what the uploaded keys start with under `incoming/`, e.g. `sensors/` for a
   *   folder (without the trailing '/', `sensors` also covers `sensors-old/`); no '*' or '?', no
   *   leading '/', no '.' or '..' segment. @default - every key under `incoming/`
   */
  grantUpload(grantee: iam.IGrantable, prefix = ''): iam.Grant {
    const pattern = `${INCOMING}${this.checkedUploadPrefix(prefix)}*`;
    const grant = iam.Grant.addToPrincipalOrResource({ grantee, actions: ['s3:PutObject'], resourceArns: [this.bucket.arnForObjects(pattern)], resource: this.bucket });
    return this.withKey(grant, grantee, 'kms:GenerateDataKey', 'kms:Decrypt');
  }

  /**
   * Lets `grantee` read committed outputs: s3:GetObject under `output/<outputName>/`, and
   * listings under it, plus decryption with the bucket's key if it has one. An interval's part
   * files are complete once its `_SUCCESS` exists.
   *
   * @param outputName the name an output was saved under (`saveAsTextFiles('counts')`).
   *   @default - every output
   */
  grantReadOutputs(grantee: iam.IGrantable, outputName?: string): iam.Grant {
    if (outputName !== undefined && !Token.isUnresolved(outputName)) {
      this.checked('grantReadOutputs', () => validateOutputName(outputName));
    }
    const pattern = outputName === undefined ? 'output/*' : `output/${outputName}/*`;
    const read = iam.Grant.addToPrincipalOrResource({ grantee, actions: ['s3:GetObject'], resourceArns: [this.bucket.arnForObjects(pattern)], resource: this.bucket });
    const list = iam.Grant.addToPrincipalOrResource({
      grantee,
      actions: ['s3:ListBucket'],
      resourceArns: [this.bucket.bucketArn],
      resource: this.bucket,
      conditions: { StringLike: { 's3:prefix': [pattern] } },
    });
    return this.withKey(read.combine(list), grantee, 'kms:Decrypt');
  }

  /**
   * Lets `grantee` run shell sessions on the query function (`dstream shell --bucket <b>
   * --on-lambda <queryQueue url>`): read the bucket, write and delete under `queries/` (the
   * sessions' scratch and the code they send), send to the query queue and read its redrive
   * policy, find its dead-letter queue and drain it, plus the bucket's key if it has one. Needs
   * `interactiveQueries`.
   */
  grantQuery(grantee: iam.IGrantable): iam.Grant {
    const { queryQueue, queryDeadLetterQueue } = this;
    if (!queryQueue || !queryDeadLetterQueue) {
      throw new Error(`DStreamPipeline ${this.node.path}: grantQuery: the pipeline has no query function; construct it with interactiveQueries: true`);
    }
    return this.withKey(grantQueryAccess(grantee, this.bucket, { queue: queryQueue, deadLetterQueue: queryDeadLetterQueue }), grantee, 'kms:Decrypt', 'kms:GenerateDataKey');
  }

  private checkedUploadPrefix(prefix: string): string {
    if (Token.isUnresolved(prefix) || prefix === '') return prefix;
    return this.checked('grantUpload', () => {
      if (typeof prefix !== 'string') throw new Error(`prefix must be a string, got ${typeof prefix}`);
      if (prefix.startsWith('/')) throw new Error(`prefix ${JSON.stringify(prefix)} starts with '/': give it relative to ${INCOMING}`);
      if (/[*?]/.test(prefix)) throw new Error(`prefix ${JSON.stringify(prefix)} contains '*' or '?', which IAM reads as wildcards`);
      // A prefix is a key, or a folder of keys: what the engine's stores refuse, no upload may be.
      validateKey(`${INCOMING}${prefix.endsWith('/') ? prefix.slice(0, -1) : prefix}`);
      return prefix;
    });
  }

  /**
   * Runs a check of the props or of a method's arguments; its error names this construct (by its
   * path, as aws-cdk-lib's own validation errors do) and the method.
   */
  private checked<T>(method: string | undefined, check: () => T): T {
    try {
      return check();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`DStreamPipeline ${this.node.path}: ${method ? `${method}: ` : ''}${reason}`, { cause: error });
    }
  }

  private withKey(grant: iam.Grant, grantee: iam.IGrantable, ...actions: string[]): iam.Grant {
    return this.bucket.encryptionKey ? grant.combine(this.bucket.encryptionKey.grant(grantee, ...actions)) : grant;
  }

  /**
   * A function with its own role (granted exactly its share of the bucket) and log group: its
   * kind's, or, for another function of a kind's code (the query function), `as` says which.
   */
  private pipelineFunction(
    kind: HandlerKind,
    common: { pipelineModule: string; driverAccess: BucketAccess; project: UserProject; removalPolicy: RemovalPolicy; logLevel: lambda.ApplicationLogLevel; key?: kms.IKey },
    options: lambda.FunctionOptions,
    as?: { name: string; access: BucketAccess },
  ): lambda.Function {
    const name = as?.name ?? kind[0]!.toUpperCase() + kind.slice(1);
    const role = new iam.Role(this, `${name}Role`, {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `dstream ${as ? name.toLowerCase() : kind} function`,
    });
    const logGroup = new logs.LogGroup(this, `${name}Logs`, { retention: LOG_RETENTION, removalPolicy: common.removalPolicy });
    // Instead of AWSLambdaBasicExecutionRole, which may write to every log group.
    logGroup.grantWrite(role);
    const access = as?.access ?? (kind === 'driver' ? common.driverAccess : FUNCTION_BUCKET_ACCESS[kind]);
    for (const statement of bucketAccessStatements(this.bucket, access, common.key)) role.addToPolicy(statement);
    const bucketArn = `<${Stack.of(this).resolve((this.bucket.node.defaultChild as s3.CfnBucket).logicalId)}.Arn>`;
    for (const pattern of wildcardPatterns(access)) {
      Validations.of(role).acknowledge({
        id: `AwsSolutions-IAM5[Resource::${bucketArn}/${pattern}]`,
        reason: `The ${name.toLowerCase()} function's access is limited to named S3 actions on the objects matching ${pattern}, keys of the pipeline's layout (core/layout.ts) that its code reads or writes.`,
      });
    }
    const fn = new PipelineFunction(this, `${name}Function`, {
      ...options,
      kind,
      pipelineModule: common.pipelineModule,
      project: common.project,
      role,
      logGroup,
      // console.debug/info/warn/error become JSON records with level, timestamp and request id
      // (functions/log.ts), and Lambda drops those below the level.
      loggingFormat: lambda.LoggingFormat.JSON,
      applicationLogLevelV2: common.logLevel,
      systemLogLevelV2: lambda.SystemLogLevel.INFO,
    });
    Validations.of(fn).acknowledge({
      id: 'AwsSolutions-L1',
      reason: 'Node.js 22 is the runtime dstream is built and tested for; move to the next runtime once the suite runs on it.',
    });
    return fn;
  }
}

interface ResolvedConfig {
  pipelineModule: string;
  pipelineName: string;
  driverAccess: BucketAccess;
  project: UserProject;
  intervalMs: number;
  partitions: number;
  taskConcurrency: number;
  taskMemoryMiB: number;
  taskTimeout: Duration;
  retentionDays: number;
  cacheRetentionDays: number;
  errorRetentionDays: number;
  maxTaskAttempts: number;
  logLevel: lambda.ApplicationLogLevel;
  /** DSTREAM_DROP_STATE, comma-separated; undefined when none is dropped. */
  dropState: string | undefined;
  completionNotices: boolean;
  completionFallbackMs: number;
  stayAwakeMs: number;
  /** The environment's value; undefined: the functions' default (about a minute). */
  dormantAfterIntervals: string | undefined;
  runInDriverBelowBytes: number;
  interactiveQueries: boolean;
  maxIntervalsInFlight: number;
}

function resolveProps(props: DStreamPipelineProps): ResolvedConfig {
  if (!props.pipeline) throw new Error('needs pipeline: the path of the module whose default export is the pipeline');
  const pipelineModule = resolve(props.pipeline);
  const { name: pipelineName, checkpointEvery, storeObjects } = describePipeline(pipelineModule);
  const intervalSeconds = inRange('intervalSeconds', known('intervalSeconds', props.intervalSeconds ?? 10), 1, 900, 'seconds', false);
  const taskTimeout = props.taskTimeout ?? Duration.minutes(5);
  inRange('taskTimeout', known('taskTimeout', taskTimeout.toSeconds()), 1, 900, 'seconds');
  // State since the last checkpoint lives in the cache, and is rebuilt from the uploads and
  // lineage of the intervals since then: each must outlast the time between checkpoints.
  const checkpointDays = (intervalSeconds * checkpointEvery) / 86_400;
  const outlastsCheckpoints = (name: string, days: number) => {
    if (!Token.isUnresolved(days) && days < checkpointDays) {
      throw new Error(
        `${name} (${days}) is shorter than the ${checkpointDays.toFixed(2)} days between checkpoints ` +
          `(intervalSeconds ${intervalSeconds} × the pipeline's checkpointEvery ${checkpointEvery}): state would expire before it is checkpointed`,
      );
    }
    return days;
  };
  const runInDriverBelowBytes = inRange('runInDriverBelow', (props.runInDriverBelow ?? Size.mebibytes(8)).toBytes(), 0, MAX_RUN_IN_DRIVER_BELOW_BYTES, 'bytes');
  // A token may be anything in range: the driver may then run tasks.
  const driverRunsTasks = Token.isUnresolved(runInDriverBelowBytes) || runInDriverBelowBytes > 0;
  return {
    pipelineModule,
    pipelineName,
    // The driver pins the pipeline's own store objects into interval 0's lineage.
    driverAccess: withObjectReads(driverRunsTasks ? withTaskAccess(FUNCTION_BUCKET_ACCESS.driver) : FUNCTION_BUCKET_ACCESS.driver, storeObjects),
    runInDriverBelowBytes,
    project: userProject(props.depsLockFilePath),
    intervalMs: Math.round(intervalSeconds * 1000),
    partitions: inRange('partitions', props.partitions ?? 8, 1, 10_000),
    taskConcurrency: inRange('taskConcurrency', props.taskConcurrency ?? 20, 2, 1000),
    taskMemoryMiB: inRange('taskMemoryMiB', props.taskMemoryMiB ?? 1024, 128, 10_240, 'MiB'),
    taskTimeout,
    retentionDays: outlastsCheckpoints(
      'retentionDays',
      inRange('retentionDays', props.retentionDays ?? Math.max(7, Math.ceil(3 * checkpointDays)), 1, 36_500, 'days'),
    ),
    cacheRetentionDays: outlastsCheckpoints(
      'cacheRetentionDays',
      inRange('cacheRetentionDays', props.cacheRetentionDays ?? Math.max(1, Math.ceil(3 * checkpointDays)), 1, 36_500, 'days'),
    ),
    errorRetentionDays: inRange('errorRetentionDays', props.errorRetentionDays ?? 30, 1, 36_500, 'days'),
    maxTaskAttempts: inRange('maxTaskAttempts', props.maxTaskAttempts ?? 5, 1, 1000),
    logLevel: props.logLevel ?? lambda.ApplicationLogLevel.INFO,
    dropState: dropStateSetting(props.dropState),
    completionNotices: props.completionNotices ?? true,
    completionFallbackMs: 1000 * inRange('completionFallback', known('completionFallback', (props.completionFallback ?? Duration.seconds(5)).toSeconds()), 1, 20, 'seconds'),
    stayAwakeMs: 1000 * inRange('stayAwake', known('stayAwake', (props.stayAwake ?? Duration.seconds(2)).toSeconds()), 1, 900, 'seconds'),
    dormantAfterIntervals: dormancy(props.dormantAfterIntervals),
    interactiveQueries: flag('interactiveQueries', props.interactiveQueries ?? false),
    maxIntervalsInFlight: inRange('maxIntervalsInFlight', props.maxIntervalsInFlight ?? DEFAULT_MAX_INTERVALS_IN_FLIGHT, 1, MAX_INTERVALS_IN_FLIGHT),
  };
}

/** The state names as the driver reads them, each checked unless a token (CloudFormation's to resolve). */
function dropStateSetting(names: string[] | undefined): string | undefined {
  if (names === undefined) return undefined;
  if (Token.isUnresolved(names)) return Fn.join(',', names);
  const bad = names.find((n) => !Token.isUnresolved(n) && (typeof n !== 'string' || !STATE_NAME.test(n)));
  if (bad !== undefined) throw new Error(`dropState must list state names, each 1-64 letters, digits, '.', '_' or '-', got ${JSON.stringify(bad)}`);
  return names.length === 0 ? undefined : names.join(',');
}

/** The driver's DSTREAM_DORMANT_AFTER_INTERVALS: 0 is "never"; a token is passed on as it resolves. */
function dormancy(intervals: number | undefined): string | undefined {
  if (intervals === undefined) return undefined;
  if (Token.isUnresolved(intervals)) return Tokenization.stringifyNumber(intervals);
  if (intervals === 0) return 'never';
  return String(inRange('dormantAfterIntervals', intervals, 1, 1_000_000));
}

/**
 * What expires when. Every prefix the engine overwrites or deletes under keeps a noncurrent
 * version for a day only, so that versioning costs no storage there. An upload's versions stay
 * for as long as lineage that may name them: lineage is written when its interval is sealed,
 * minutes after admission, and kept `retentionDays`; a day more covers the gap and a slow seal.
 */
function lifecycleRules(config: ResolvedConfig): s3.LifecycleRule[] {
  const currentDays: Record<string, number> = {
    // The cache tier may vanish: whatever is missing is recomputed from lineage.
    'cache/': config.cacheRetentionDays,
    'intake/': config.retentionDays,
    // Recovery needs lineage back to the last checkpoint at most; the records are small but
    // one interval writes dozens, and at 10 s intervals that is millions of objects a week.
    'lineage/': config.retentionDays,
    // Raw user data, kept no longer than asked.
    'errors/': config.errorRetentionDays,
  };
  return [
    {
      id: 'incoming',
      prefix: INCOMING,
      expiration: Duration.days(config.retentionDays),
      noncurrentVersionExpiration: Duration.days(config.retentionDays + 1),
    },
    ...enginePrefixes().map((prefix): s3.LifecycleRule => ({
      id: prefix.slice(0, -1),
      prefix,
      ...(currentDays[prefix] === undefined ? {} : { expiration: Duration.days(currentDays[prefix]) }),
      noncurrentVersionExpiration: Duration.days(1),
    })),
    // Its own rule: S3 takes no expired-marker clean-up in a rule that expires by age.
    { id: 'leftovers', abortIncompleteMultipartUploadAfter: Duration.days(1), expiredObjectDeleteMarker: true },
  ];
}

/**
 * `value` if it is a number within [min, max] (whole unless said), or a token, checked by
 * CloudFormation at deploy time instead; else an error naming the prop.
 */
function inRange(name: string, value: number, min: number, max: number, unit = '', whole = true): number {
  if (Token.isUnresolved(value)) return value;
  const kind = whole ? 'a whole number' : 'a number';
  if (typeof value !== 'number' || !Number.isFinite(value) || (whole && !Number.isInteger(value)) || value < min || value > max) {
    throw new Error(`${name} must be ${kind} from ${min} to ${max}${unit ? ` ${unit}` : ''}, got ${value}`);
  }
  return value;
}

/** A switch the construct decides by, which a token cannot be. */
function flag(name: string, value: boolean): boolean {
  if (Token.isUnresolved(value)) throw new Error(`${name} must be known at synth time, not a token: it decides which resources exist`);
  if (typeof value !== 'boolean') throw new Error(`${name} must be true or false, got ${JSON.stringify(value)}`);
  return value;
}

/** A number the construct computes with (periods, timeouts), which a token cannot be. */
function known(name: string, value: number): number {
  if (Token.isUnresolved(value)) throw new Error(`${name} must be known at synth time, not a token: the construct derives periods and timeouts from it`);
  return value;
}

/**
 * S3 notifications are configured by a custom resource that CDK adds once per stack, with
 * AWSLambdaBasicExecutionRole (CDK's code, not ours).
 */
function acknowledgeNotificationsHandler(stack: Stack): void {
  const handler = stack.node.children.find((c) => c.node.id.startsWith('BucketNotificationsHandler'));
  if (!handler) return;
  Validations.of(handler).acknowledge({
    id: 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    reason: 'CDK\'s own handler that applies the bucket notification configuration, at deploy time only; its role is CDK\'s.',
  });
}
