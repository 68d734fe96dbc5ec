/**
 * The AWS deployment of a pipeline, read from its synthesized template: what is encrypted, who may
 * touch which keys, what feeds which function, what is watched. Synthesized once (bundling the
 * three functions with esbuild takes seconds), with the real handlers of functions/.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type { Asset } from 'aws-cdk-lib/aws-s3-assets';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { DStreamPipeline, type DStreamPipelineProps } from '../../infra/dstream-pipeline.ts';
import { DSTREAM_METRICS } from '../../infra/pipeline-monitoring.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const PIPELINE_MODULE = join(FIXTURES, 'pipeline.ts');
/** The feature flags of cdk.json, so that the template under test is the one `cdk synth` makes. */
const CONTEXT = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'cdk.json'), 'utf8')).context as Record<string, unknown>;

type Resource = { Type: string; Properties: Record<string, any> };
type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: Record<string, any> };

let app: App;
let stack: Stack;
let pipeline: DStreamPipeline;
let template: Template;
let resources: Record<string, Resource>;

beforeAll(() => {
  const started = Date.now();
  app = new App({ context: CONTEXT });
  stack = new Stack(app, 'Test');
  pipeline = new DStreamPipeline(stack, 'Wordcount', { pipelineModule: PIPELINE_MODULE, pipelineName: 'fixture', intervalSeconds: 5 });
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources;
  console.info(`synthesized the pipeline stack, bundling included, in ${Date.now() - started} ms`);
});

const logicalId = (construct: { node: { defaultChild?: unknown } }) => stack.resolve((construct.node.defaultChild as { logicalId: string }).logicalId) as string;
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const actions = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);

/** Every Allow statement of the policies attached to a function's role. */
function statementsOf(fn: { role?: iam.IRole }): Statement[] {
  const role = logicalId(fn.role as unknown as { node: { defaultChild: unknown } });
  return ofType('AWS::IAM::Policy')
    .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(`"${role}"`))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as Statement[]);
}

/** The key patterns (`cache/*`) of the bucket objects a function may do `action` on. */
function keyPatternsFor(fn: { role?: iam.IRole }, action: string): string[] {
  const bucket = logicalId(pipeline.bucket);
  return statementsOf(fn)
    .filter((s) => actions(s).includes(action))
    .flatMap((s) => (Array.isArray(s.Resource) ? s.Resource : [s.Resource]))
    .map((r) => {
      const [, parts] = (r as { 'Fn::Join': [string, [{ 'Fn::GetAtt': string[] }, string]] })['Fn::Join'];
      expect(parts[0]['Fn::GetAtt'][0]).toBe(bucket);
      return parts[1].replace(/^\//, '');
    })
    .sort();
}

describe('the bucket', () => {
  it('is encrypted, private, and refuses requests without TLS', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
    });
    template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({ Effect: 'Deny', Action: 's3:*', Condition: { Bool: { 'aws:SecureTransport': 'false' } } }),
        ]),
      },
    });
  });

  it('lets the cache vanish after a day and keeps uploads, their intake and lineage for the retention period', () => {
    const [[, bucket]] = ofType('AWS::S3::Bucket');
    const rules = bucket!.Properties.LifecycleConfiguration.Rules as Record<string, any>[];
    const expiryDays = Object.fromEntries(rules.filter((r) => r.Prefix).map((r) => [r.Prefix, r.ExpirationInDays]));
    expect(expiryDays).toEqual({ 'cache/': 1, 'incoming/': 7, 'intake/': 7, 'lineage/': 7 });
    expect(rules).toContainEqual(expect.objectContaining({ AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, Status: 'Enabled' }));
    // Checkpoints and outputs are what recovery and readers need: no rule expires them.
    expect(rules.filter((r) => r.ExpirationInDays && !r.Prefix)).toEqual([]);
  });

  it('notifies the ingest function of objects created under incoming/ and nothing else', () => {
    template.hasResourceProperties('Custom::S3BucketNotifications', {
      NotificationConfiguration: {
        LambdaFunctionConfigurations: [
          {
            Events: ['s3:ObjectCreated:*'],
            Filter: { Key: { FilterRules: [{ Name: 'prefix', Value: 'incoming/' }] } },
            LambdaFunctionArn: { 'Fn::GetAtt': [logicalId(pipeline.ingestFunction), 'Arn'] },
          },
        ],
      },
    });
  });
});

describe('the queues', () => {
  it('hide a task for six task timeouts and dead-letter it after maxTaskAttempts deliveries', () => {
    template.hasResourceProperties('AWS::SQS::Queue', {
      VisibilityTimeout: 6 * 5 * 60,
      SqsManagedSseEnabled: true,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [logicalId(pipeline.deadLetterQueue), 'Arn'] }, maxReceiveCount: 5 },
    });
    template.hasResourceProperties('AWS::SQS::Queue', { MessageRetentionPeriod: 14 * 24 * 3600, SqsManagedSseEnabled: true });
  });

  it('all refuse requests without TLS', () => {
    for (const queue of [pipeline.taskQueue, pipeline.deadLetterQueue, pipeline.ingestFailures]) {
      template.hasResourceProperties('AWS::SQS::QueuePolicy', {
        Queues: [{ Ref: logicalId(queue) }],
        PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
      });
    }
  });
});

describe('the functions', () => {
  it('are three, on Node.js 22 and ARM64, told where the bucket and queues are and what the interval is', () => {
    const node = ofType('AWS::Lambda::Function').filter(([, f]) => f.Properties.Runtime === 'nodejs22.x');
    expect(node.map(([id]) => id).sort()).toEqual([pipeline.driverFunction, pipeline.ingestFunction, pipeline.taskFunction].map(logicalId).sort());
    for (const [, fn] of node) {
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      expect(fn.Properties.Handler).toBe('index.handler');
      expect(fn.Properties.Environment.Variables).toMatchObject({
        DSTREAM_BUCKET: { Ref: logicalId(pipeline.bucket) },
        DSTREAM_TASK_QUEUE_URL: { Ref: logicalId(pipeline.taskQueue) },
        DSTREAM_DEAD_LETTER_QUEUE_URL: { Ref: logicalId(pipeline.deadLetterQueue) },
        DSTREAM_INTERVAL_MS: '5000',
        DSTREAM_PARTITIONS: '8',
        DSTREAM_CHECKPOINT_EVERY: '10',
        NODE_OPTIONS: '--enable-source-maps',
      });
    }
  });

  it('let a driver hand over to itself, forever, knowing its own name', () => {
    const driver = resources[logicalId(pipeline.driverFunction)]!.Properties;
    // No reserved concurrency, which fails deployment on accounts with a low quota: the lease serialises drivers.
    expect(driver.ReservedConcurrentExecutions).toBeUndefined();
    // Lambda's loop detection would cut the chain of hand-overs after 16.
    expect(driver.RecursiveLoop).toBe('Allow');
    expect(driver.Timeout).toBe(15 * 60);
    expect(driver.Environment.Variables.DSTREAM_DRIVER_FUNCTION_NAME).toBe(driver.FunctionName);
    const invoke = statementsOf(pipeline.driverFunction).filter((s) => actions(s).includes('lambda:InvokeFunction'));
    expect(invoke).toHaveLength(1);
    expect(JSON.stringify(invoke[0]!.Resource)).toMatch(new RegExp(`:function:${driver.FunctionName}"`));
  });

  it('feed tasks from the queue one per invocation, reporting failures, at most taskConcurrency at once', () => {
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(pipeline.taskFunction) },
      EventSourceArn: { 'Fn::GetAtt': [logicalId(pipeline.taskQueue), 'Arn'] },
      BatchSize: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 20 },
    });
  });

  it('wake a driver every minute as a watchdog', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(1 minute)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [logicalId(pipeline.driverFunction), 'Arn'] } })],
    });
  });

  it('are bundled into self-contained ESM that binds the pipeline module to the handler factory', () => {
    const code = pipeline.taskFunction.node.findChild('Code') as Asset;
    const bundle = join(app.outdir, code.assetPath, 'index.mjs');
    // A plain Node, far from node_modules: everything the handler needs must be in the bundle.
    const script = `const m = await import(${JSON.stringify(`file://${bundle}`)}); console.log(JSON.stringify(await m.handler({ Records: [] })));`;
    const output = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: app.outdir,
      env: { PATH: process.env.PATH, AWS_REGION: 'eu-west-1', DSTREAM_BUCKET: 'b' },
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(JSON.parse(output)).toEqual({ batchItemFailures: [] });
  });
});

describe('permissions', () => {
  it('name every action: no IAM statement anywhere has a wildcard action', () => {
    const policies = ofType('AWS::IAM::Policy').map(([, p]) => p.Properties.PolicyDocument);
    const inline = ofType('AWS::IAM::Role').flatMap(([, r]) => (r.Properties.Policies ?? []).map((p: { PolicyDocument: unknown }) => p.PolicyDocument));
    const all = [...policies, ...inline].flatMap((d) => d.Statement as Statement[]).flatMap(actions);
    expect(all.length).toBeGreaterThan(20);
    expect(all.filter((a) => a.includes('*'))).toEqual([]);
  });

  it('let nobody rewrite or delete the uploads, and only the driver delete anything', () => {
    const fns = { ingest: pipeline.ingestFunction, driver: pipeline.driverFunction, task: pipeline.taskFunction };
    for (const [kind, fn] of Object.entries(fns)) {
      expect(keyPatternsFor(fn, 's3:PutObject'), kind).not.toContain('incoming/*');
      if (kind !== 'driver') expect(keyPatternsFor(fn, 's3:DeleteObject'), kind).toEqual([]);
    }
    expect(keyPatternsFor(pipeline.ingestFunction, 's3:PutObject')).toEqual(['driver/progress.json', 'intake/*']);
    expect(keyPatternsFor(pipeline.taskFunction, 's3:PutObject')).toEqual(['cache/*', 'checkpoints/*', 'errors/*', 'lineage/*', 'output/*']);
    expect(keyPatternsFor(pipeline.driverFunction, 's3:DeleteObject')).not.toContain('incoming/*');
  });

  it('hold listings to the prefixes a function reads', () => {
    const list = statementsOf(pipeline.taskFunction).filter((s) => actions(s).includes('s3:ListBucket'));
    expect(list).toEqual([
      expect.objectContaining({
        Resource: { 'Fn::GetAtt': [logicalId(pipeline.bucket), 'Arn'] },
        Condition: { StringLikeIfExists: { 's3:prefix': ['incoming/*', 'lineage/*', 'cache/*', 'checkpoints/*'] } },
      }),
    ]);
  });

  it('let the task function consume the task queue, and only the driver send to it', () => {
    const sends = (fn: { role?: iam.IRole }, queue: { node: { defaultChild?: unknown } }) =>
      statementsOf(fn).filter((s) => actions(s).includes('sqs:SendMessage') && JSON.stringify(s.Resource).includes(`"${logicalId(queue)}"`));
    expect(sends(pipeline.driverFunction, pipeline.taskQueue)).toHaveLength(1);
    expect([...sends(pipeline.taskFunction, pipeline.taskQueue), ...sends(pipeline.ingestFunction, pipeline.taskQueue)]).toEqual([]);
    // Ingest sends only the events it failed on, to their own queue.
    expect(sends(pipeline.ingestFunction, pipeline.ingestFailures)).toHaveLength(1);
    // ChangeMessageVisibility: a failed task comes back after its retry delay, not the queue's timeout.
    expect(statementsOf(pipeline.taskFunction).flatMap(actions)).toEqual(
      expect.arrayContaining(['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility']),
    );
  });

  it('send the S3 events ingest fails on, after its retries, to a queue of their own', () => {
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: logicalId(pipeline.ingestFunction) },
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [logicalId(pipeline.ingestFailures), 'Arn'] } } },
    });
  });
});

describe('monitoring', () => {
  it('alarms on dead letters, failing tasks, lag, a stalled driver, failing functions and uploads ingest could not admit', () => {
    const dstream = (metricName: string, more: Record<string, unknown>) =>
      template.hasResourceProperties('AWS::CloudWatch::Alarm', { Namespace: 'DStream', MetricName: metricName, Dimensions: [{ Name: 'Pipeline', Value: 'fixture' }], ...more });
    // Counted by the driver as it drains them: the queue's depth would rarely be seen.
    dstream('DeadLetteredTasks', { Statistic: 'Sum', Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', EvaluationPeriods: 1 });
    dstream('TaskFailures', { Statistic: 'Sum', Threshold: 1, EvaluationPeriods: 3 });
    // Three 5 s intervals are under the 30 s floor.
    dstream('SchedulingDelay', { Statistic: 'Maximum', Threshold: 30_000, ComparisonOperator: 'GreaterThanThreshold' });
    // Every committed interval publishes a delay, even an empty one: no data means no commits.
    dstream('SchedulingDelay', { Statistic: 'SampleCount', Threshold: 1, ComparisonOperator: 'LessThanThreshold', TreatMissingData: 'breaching' });
    for (const fn of [pipeline.taskFunction, pipeline.driverFunction]) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'AWS/Lambda',
        MetricName: 'Errors',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: logicalId(fn) } }],
      });
    }
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [logicalId(pipeline.ingestFailures), 'QueueName'] } }],
      Threshold: 1,
    });
  });

  it('reads the driver\'s per-interval metrics over periods no shorter than an interval', () => {
    const slow = new Stack(new App({ context: { ...CONTEXT, 'aws:cdk:bundling-stacks': [] } }), 'Slow');
    new DStreamPipeline(slow, 'P', { pipelineModule: PIPELINE_MODULE, pipelineName: 'fixture', intervalSeconds: 300 });
    const alarms = Object.values(Template.fromStack(slow).toJSON().Resources as Record<string, Resource>).filter((r) => r.Type === 'AWS::CloudWatch::Alarm');
    const delays = alarms.filter((a) => a.Properties.MetricName === 'SchedulingDelay');
    expect(delays.map((a) => a.Properties.Period)).toEqual([300, 300]);
  });

  it('has a dashboard of the driver\'s metrics, the queues and the functions', () => {
    const [[, dashboard]] = ofType('AWS::CloudWatch::Dashboard');
    const body = JSON.stringify(dashboard!.Properties.DashboardBody);
    for (const name of ['InputRecords', 'ProcessingTime', 'SchedulingDelay', 'TaskRetries', 'SpeculativeTasks', 'TaskFailures', 'DeadLetteredTasks']) {
      expect(body).toContain(`\\"${DSTREAM_METRICS.namespace}\\",\\"${name}\\",\\"Pipeline\\",\\"fixture\\"`);
    }
    expect(body).toContain('ApproximateNumberOfMessagesVisible');
    expect(body).toContain('AWS/Lambda');
  });

  it('outputs the bucket, where to upload, and the dashboard', () => {
    const outputs = Object.entries(template.toJSON().Outputs as Record<string, { Value: unknown }>);
    const value = (name: string) => JSON.stringify(outputs.find(([id]) => id.startsWith(`Wordcount${name}`))?.[1].Value);
    expect(value('BucketName')).toBe(JSON.stringify({ Ref: logicalId(pipeline.bucket) }));
    expect(value('UploadPrefix')).toContain('/incoming/');
    expect(value('Dashboard')).toContain('#dashboards:name=');
  });
});

it('passes the cdk-nag AwsSolutions checks, every exception acknowledged with a reason', () => {
  const report = new AwsSolutionsChecks().validateScope(stack);
  expect(report.violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
});

describe('props', () => {
  /** Construction fails on bad props before anything is bundled. */
  const construct = (props: Partial<DStreamPipelineProps>) => () =>
    new DStreamPipeline(new Stack(new App({ context: CONTEXT }), 'Bad'), 'P', { pipelineModule: PIPELINE_MODULE, pipelineName: 'fixture', ...props });

  it.each([0, 901, 0.5, Number.NaN])('reject an interval of %s seconds', (intervalSeconds) => {
    expect(construct({ intervalSeconds })).toThrow(`intervalSeconds must be a number from 1 to 900 seconds, got ${intervalSeconds}`);
  });

  it.each([
    [{ taskConcurrency: 1 }, 'taskConcurrency must be a whole number from 2 to 1000, got 1'],
    [{ maxTaskAttempts: 0 }, 'maxTaskAttempts must be a whole number from 1 to 1000, got 0'],
    [{ partitions: 2.5 }, 'partitions must be a whole number from 1 to 10000, got 2.5'],
    [{ taskTimeout: Duration.minutes(16) }, 'taskTimeout must be a whole number from 1 to 900 seconds, got 960'],
    [{ pipelineModule: '/nowhere/pipeline.ts' }, 'pipelineModule /nowhere/pipeline.ts does not exist'],
    [{ pipelineName: 'word count' }, 'pipelineName must be the pipeline\'s name (1-64 letters, digits, \'.\', \'_\' or \'-\'), got "word count"'],
    [{ functionsDir: FIXTURES }, `the ingest handler module is missing: expected ${join(FIXTURES, 'ingest', 'handler.ts')}`],
    // 900 s × 1000 intervals between checkpoints is 10.42 days.
    [{ intervalSeconds: 900, checkpointEvery: 1000, cacheRetentionDays: 10 }, 'cacheRetentionDays (10) is shorter than the 10.42 days between checkpoints'],
    [{ intervalSeconds: 900, checkpointEvery: 1000, retentionDays: 7 }, 'retentionDays (7) is shorter than the 10.42 days between checkpoints'],
  ] as const)('reject %o', (props, message) => {
    expect(construct(props)).toThrow(message);
  });
});

it('encrypts the bucket with a customer key when given one, and lets the functions use it', () => {
  // Bundling is skipped for this stack: only its template is read.
  const other = new Stack(new App({ context: { ...CONTEXT, 'aws:cdk:bundling-stacks': [] } }), 'Kms');
  const key = new kms.Key(other, 'Key', { enableKeyRotation: true });
  const withKey = new DStreamPipeline(other, 'P', { pipelineModule: PIPELINE_MODULE, pipelineName: 'fixture', encryptionKey: key });
  const keyArn = { 'Fn::GetAtt': [other.resolve((key.node.defaultChild as kms.CfnKey).logicalId), 'Arn'] };
  Template.fromStack(other).hasResourceProperties('AWS::S3::Bucket', {
    BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: keyArn }, BucketKeyEnabled: true }] },
  });
  const policies = Template.fromStack(other).toJSON().Resources as Record<string, Resource>;
  const taskRole = other.resolve((withKey.taskFunction.role!.node.defaultChild as iam.CfnRole).logicalId);
  const taskStatements = Object.values(policies)
    .filter((p) => p.Type === 'AWS::IAM::Policy' && JSON.stringify(p.Properties.Roles).includes(`"${taskRole}"`))
    .flatMap((p) => p.Properties.PolicyDocument.Statement as Statement[]);
  expect(taskStatements).toContainEqual(expect.objectContaining({ Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: keyArn }));
});
