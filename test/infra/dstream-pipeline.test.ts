/**
 * The AWS deployment of a pipeline, read from its synthesized template: what is encrypted, who may
 * touch which keys, what feeds which function, what is watched. Synthesized once (bundling the
 * three functions with esbuild takes seconds), with the real handlers of functions/.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, CfnParameter, Duration, Size, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type { Asset } from 'aws-cdk-lib/aws-s3-assets';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DStreamPipeline, type DStreamPipelineProps } from '../../infra/dstream-pipeline.ts';
import { userProject } from '../../infra/pipeline-function.ts';
import { DSTREAM_METRICS } from '../../infra/pipeline-monitoring.ts';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const PIPELINE_MODULE = join(FIXTURES, 'pipeline.ts');
const RARE_CHECKPOINTS = join(FIXTURES, 'rare-checkpoints.ts');
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
  pipeline = new DStreamPipeline(stack, 'Wordcount', { pipeline: PIPELINE_MODULE, intervalSeconds: 5 });
  template = Template.fromStack(stack);
  resources = template.toJSON().Resources;
  console.info(`synthesized the pipeline stack, bundling included, in ${Date.now() - started} ms`);
  // Bundling three functions takes half a minute on a busy machine, and more beside another test file.
}, 240_000);

/** A stack whose functions are not bundled: for tests that read only its template. */
const unbundledStack = (id: string) => new Stack(new App({ context: { ...CONTEXT, 'aws:cdk:bundling-stacks': [] } }), id);
const lifecycleRulesOf = (t: Template) =>
  Object.values(t.toJSON().Resources as Record<string, Resource>).find((r) => r.Type === 'AWS::S3::Bucket')!.Properties.LifecycleConfiguration
    .Rules as Record<string, any>[];
const logicalId = (construct: { node: { defaultChild?: unknown } }) => stack.resolve((construct.node.defaultChild as { logicalId: string }).logicalId) as string;
const ofType = (type: string) => Object.entries(resources).filter(([, r]) => r.Type === type);
const actions = (s: Statement) => (Array.isArray(s.Action) ? s.Action : [s.Action]);

/** Every Allow statement of the policies attached to a function's role. */
function statementsOf(fn: { role?: iam.IRole }): Statement[] {
  const role = logicalId(fn.role as unknown as { node: { defaultChild: unknown } });
  // A role's policy past IAM's inline size spills into managed ones (CDK's overflow policies).
  return [...ofType('AWS::IAM::Policy'), ...ofType('AWS::IAM::ManagedPolicy')]
    .filter(([, p]) => JSON.stringify(p.Properties.Roles).includes(`"${role}"`))
    .flatMap(([, p]) => p.Properties.PolicyDocument.Statement as Statement[]);
}

/** The key patterns (`cache/*`) of the pipeline bucket's objects a statement is on. */
function objectPatternsOf(s: Statement): string[] {
  const bucket = logicalId(pipeline.bucket);
  return (Array.isArray(s.Resource) ? s.Resource : [s.Resource]).map((r) => {
    const [, parts] = (r as { 'Fn::Join': [string, [{ 'Fn::GetAtt': string[] }, string]] })['Fn::Join'];
    expect(parts[0]['Fn::GetAtt'][0]).toBe(bucket);
    return parts[1].replace(/^\//, '');
  });
}

/** The prefixes a ListBucket statement allows listings under. */
function listPrefixesOf(s: Statement): string[] {
  const prefixes = s.Condition?.StringLike?.['s3:prefix'] as string | string[] | undefined;
  return prefixes === undefined ? ['(any)'] : Array.isArray(prefixes) ? prefixes : [prefixes];
}

/**
 * What each function may do to the bucket, by IAM key pattern (`*` spans '/'): the spec, written
 * from the code of functions/ and core/ by the keys of core/layout.ts. Every scope on AWS is an
 * interval. PutObject comes with AbortMultipartUpload on the same keys. Listing is allowed under
 * the prefixes a function lists (`lists`) and every key it reads: the S3 adapter lists a key to
 * tell a missing one from a refused read.
 */
const BUCKET_ACCESS_SPEC = {
  ingest: {
    // HEAD of the notified version at admission; the bytes are never read here.
    's3:GetObjectVersion': ['incoming/*'],
    // The dormant mark: read after admitting, removed by the upload that wakes the stream.
    's3:GetObject': ['driver/progress.json', 'driver/dormant.json', 'intake/interval=*/_SEALING', 'intake/interval=*/entries/*'],
    's3:PutObject': ['driver/progress.json', 'intake/interval=*/entries/*'],
    's3:DeleteObject': ['driver/dormant.json'],
    lists: [],
  },
  task: {
    // Its inputs, by the version admitted.
    's3:GetObjectVersion': ['incoming/*'],
    's3:GetObject': [
      'lineage/interval=*/record.json',
      'lineage/interval=*/splits/*',
      // The pinned copies of the objects the pipeline reads its initial state from.
      'lineage/interval=*/objects/*',
      'lineage/interval=*/task-records/*',
      'lineage/interval=*/tasks/*',
      'lineage/interval=*/fetch-failed/*',
      'cache/interval=*/shuffle/*',
      'cache/interval=*/persist/*',
      'checkpoints/interval=*/persist/*',
    ],
    // Its own stage's keys only: nothing of the record, sinks, commits, output markers or dead letters.
    's3:PutObject': [
      'lineage/interval=*/tasks/*',
      'lineage/interval=*/fetch-failed/*',
      'lineage/interval=*/task-errors/*',
      'cache/interval=*/shuffle/*',
      'cache/interval=*/persist/*',
      'cache/interval=*/collect/*',
      'checkpoints/interval=*/persist/*',
      'output/*/interval=*/part-*',
      'errors/interval=*/records/*',
    ],
    's3:DeleteObject': [],
    lists: [],
  },
  driver: {
    's3:GetObjectVersion': [],
    's3:GetObject': [
      'driver/*',
      'intake/*',
      'lineage/*',
      'cache/interval=*/collect/*',
      // The state RDDs an upgrade (a deploy of changed code) checkpoints at its boundary.
      'cache/interval=*/persist/*',
      'checkpoints/interval=*/persist/*',
      'output/*/interval=*/_SUCCESS',
      'errors/interval=*/dead-letters/*',
      'errors/interval=*/uploads/*',
    ],
    // Never an upload, a task's output part, a quarantined record or the cache's blocks.
    's3:PutObject': [
      'driver/progress.json',
      'driver/lease.json',
      'driver/dormant.json',
      'driver/pipeline.json',
      'driver/upgrades/*',
      'intake/interval=*/_SEALING',
      'intake/interval=*/_SEALED',
      'intake/claims/*',
      'lineage/interval=*/record.json',
      'lineage/interval=*/run.json',
      'lineage/interval=*/splits/*',
      'lineage/interval=*/objects/*',
      'lineage/interval=*/uploads/*',
      'lineage/interval=*/task-records/*',
      'lineage/interval=*/sinks/*',
      'lineage/interval=*/_COMMITTED',
      'output/*/interval=*/_SUCCESS',
      'errors/interval=*/dead-letters/*',
      'errors/interval=*/uploads/*',
      'errors/unreadable-dead-letters/*',
      // An upgrade's boundary checkpoints, and no other checkpoint: the tasks write those.
      'checkpoints/interval=*/persist/boundary-*',
    ],
    // Its lease and dormant mark, completions whose data was lost, and garbage: never output, errors, intake or uploads.
    's3:DeleteObject': ['driver/lease.json', 'driver/dormant.json', 'lineage/interval=*/tasks/*', 'cache/interval=*/*', 'checkpoints/interval=*/*'],
    // Where it lists what it collects.
    lists: ['cache/interval=*/', 'checkpoints/interval=*/'],
  },
};

type AccessSpec = (typeof BUCKET_ACCESS_SPEC)[keyof typeof BUCKET_ACCESS_SPEC];

/** What two specs allow together. */
function bothSpecs(a: AccessSpec, b: AccessSpec): AccessSpec {
  const union = (x: readonly string[], y: readonly string[]) => [...new Set([...x, ...y])];
  return Object.fromEntries(Object.keys(a).map((k) => [k, union(a[k as keyof AccessSpec], b[k as keyof AccessSpec])])) as unknown as AccessSpec;
}

/** The S3 grants a spec asks for, by action, each list of patterns sorted. */
function expectedGrants({ lists, ...spec }: AccessSpec): Record<string, string[]> {
  const listed = [...new Set<string>([...lists, ...spec['s3:GetObjectVersion'], ...spec['s3:GetObject']])];
  return Object.fromEntries(
    Object.entries({ ...spec, 's3:AbortMultipartUpload': spec['s3:PutObject'], 's3:ListBucket': listed })
      .filter(([, patterns]) => patterns.length > 0)
      .map(([action, patterns]) => [action, [...patterns].sort()]),
  );
}

function addGrants(granted: Record<string, string[]>, s: Statement): void {
  for (const action of actions(s).filter((a) => a.startsWith('s3:'))) {
    // ListBucket is on the bucket, held to prefixes; every other action is on objects.
    const patterns = action === 's3:ListBucket' ? listPrefixesOf(s) : objectPatternsOf(s);
    granted[action] = [...(granted[action] ?? []), ...patterns].sort();
  }
}

function bucketGrantsOf(fn: lambda.IFunction): Record<string, string[]> {
  const granted: Record<string, string[]> = {};
  for (const s of statementsOf(fn)) addGrants(granted, s);
  return granted;
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

  it('is versioned, so that the version of an upload admitted to an interval can be read by its id', () => {
    template.hasResourceProperties('AWS::S3::Bucket', { VersioningConfiguration: { Status: 'Enabled' } });
  });

  it('lets the cache vanish after a day, keeps uploads, intake and lineage for the retention period and errors for theirs', () => {
    const rules = lifecycleRulesOf(template);
    const expiryDays = Object.fromEntries(rules.filter((r) => r.Prefix).map((r) => [r.Prefix, r.ExpirationInDays]));
    // Checkpoints and outputs are what recovery and readers need, the driver's records its state: no rule expires them.
    expect(expiryDays).toEqual({
      'cache/': 1,
      'checkpoints/': undefined,
      'driver/': undefined,
      'errors/': 30,
      'incoming/': 7,
      'intake/': 7,
      'lineage/': 7,
      'output/': undefined,
    });
    expect(rules.filter((r) => r.ExpirationInDays && !r.Prefix)).toEqual([]);
    expect(rules.every((r) => r.Status === 'Enabled')).toBe(true);
  });

  it('keeps a replaced or deleted upload while lineage may name it, and any other prefix\'s old versions a day', () => {
    const rules = lifecycleRulesOf(template);
    const noncurrentDays = Object.fromEntries(rules.filter((r) => r.Prefix).map((r) => [r.Prefix, r.NoncurrentVersionExpiration?.NoncurrentDays]));
    // Lineage is kept 7 days from the seal, which follows admission within an interval or so.
    expect(noncurrentDays).toEqual({
      'cache/': 1,
      'checkpoints/': 1,
      'driver/': 1,
      'errors/': 1,
      'incoming/': 8,
      'intake/': 1,
      'lineage/': 1,
      'output/': 1,
    });
  });

  it('aborts incomplete multipart uploads and removes delete markers left with no versions, everywhere', () => {
    expect(lifecycleRulesOf(template).filter((r) => !r.Prefix)).toEqual([
      { Id: 'leftovers', AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 }, ExpiredObjectDeleteMarker: true, Status: 'Enabled' },
    ]);
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
        NODE_OPTIONS: '--enable-source-maps',
      });
      // Checkpointing is the module's own: the deployment cannot set it otherwise.
      expect(fn.Properties.Environment.Variables).not.toHaveProperty('DSTREAM_CHECKPOINT_EVERY');
      // No state dropped unless asked: an upgrade that would lose named state is refused.
      expect(fn.Properties.Environment.Variables).not.toHaveProperty('DSTREAM_DROP_STATE');
    }
  });

  it('let a driver wake itself through its wake queue, forever, and ingest wake a dormant one', () => {
    const driver = resources[logicalId(pipeline.driverFunction)]!.Properties;
    // No reserved concurrency, which fails deployment on accounts with a low quota: the lease serialises drivers.
    expect(driver.ReservedConcurrentExecutions).toBeUndefined();
    // Lambda's loop detection would cut the chain of timers and hand-overs (Lambda, SQS, Lambda) after 16.
    expect(driver.RecursiveLoop).toBe('Allow');
    expect(driver.Timeout).toBe(15 * 60);
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: logicalId(pipeline.driverFunction) },
      EventSourceArn: { 'Fn::GetAtt': [logicalId(pipeline.driverWakeQueue), 'Arn'] },
      ScalingConfig: { MaximumConcurrency: 2 },
    });
    // Its messages wait up to a driver's timeout, six times over, as Lambda asks of a queue it reads.
    expect(resources[logicalId(pipeline.driverWakeQueue)]!.Properties.VisibilityTimeout).toBe(6 * 15 * 60);
    for (const fn of [pipeline.driverFunction, pipeline.ingestFunction]) {
      expect(resources[logicalId(fn)]!.Properties.Environment.Variables.DSTREAM_WAKE_QUEUE_URL).toEqual({ Ref: logicalId(pipeline.driverWakeQueue) });
      const sends = statementsOf(fn).filter((s) => actions(s).includes('sqs:SendMessage') && JSON.stringify(s.Resource).includes(logicalId(pipeline.driverWakeQueue)));
      expect(sends).toHaveLength(1);
    }
    expect(statementsOf(pipeline.driverFunction).filter((s) => actions(s).includes('lambda:InvokeFunction'))).toEqual([]);
    expect(driver.Environment.Variables).toMatchObject({ DSTREAM_STAY_AWAKE_MS: '2000' });
  });

  it('let task functions notify the driver through its events queue, which only the driver reads', () => {
    const events = logicalId(pipeline.driverEventsQueue!);
    const on = (fn: lambda.IFunction) => statementsOf(fn).filter((s) => JSON.stringify(s.Resource).includes(events)).flatMap(actions).sort();
    expect(on(pipeline.taskFunction)).toEqual(['sqs:SendMessage']);
    expect(on(pipeline.driverFunction)).toEqual(['sqs:DeleteMessage', 'sqs:ReceiveMessage']);
    expect(on(pipeline.ingestFunction)).toEqual([]);
    // Stale notices do not outlive SQS's shortest retention.
    expect(resources[events]!.Properties.MessageRetentionPeriod).toBe(60);
    for (const fn of [pipeline.taskFunction, pipeline.driverFunction]) {
      expect(resources[logicalId(fn)]!.Properties.Environment.Variables).toMatchObject({ DSTREAM_EVENTS_QUEUE_URL: { Ref: events }, DSTREAM_EVENTS_FALLBACK_MS: '5000' });
    }
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

  it('let each function do to the bucket what its code does, key pattern by key pattern, and nothing else', () => {
    const fns = { ingest: pipeline.ingestFunction, task: pipeline.taskFunction, driver: pipeline.driverFunction };
    for (const [kind, fn] of Object.entries(fns)) {
      // By default the driver runs small stages itself: it does what a task does too.
      const spec = kind === 'driver' ? bothSpecs(BUCKET_ACCESS_SPEC.driver, BUCKET_ACCESS_SPEC.task) : BUCKET_ACCESS_SPEC[kind as keyof typeof BUCKET_ACCESS_SPEC];
      expect(bucketGrantsOf(fn), kind).toEqual(expectedGrants(spec));
    }
  });

  it('give the driver only its own access to the bucket when it runs no stage itself (runInDriverBelow 0)', () => {
    const stack = unbundledStack('NoTasksInDriver');
    const p = new DStreamPipeline(stack, 'P', { pipeline: PIPELINE_MODULE, runInDriverBelow: Size.bytes(0) });
    const resources = Template.fromStack(stack).toJSON().Resources;
    const role = stack.resolve((p.driverFunction.role!.node.defaultChild as iam.CfnRole).logicalId);
    const policies = JSON.stringify(Object.values(resources).filter((r) => /^AWS::IAM::(Managed)?Policy$/.test((r as { Type: string }).Type) && JSON.stringify(r).includes(`"${role}"`)));
    // What only a task writes: a task's output part and shuffle blocks, quarantined records.
    for (const taskOnly of ['output/*/interval=*/part-*', 'cache/interval=*/shuffle/*', 'errors/interval=*/records/*']) {
      expect(policies).not.toContain(taskOnly);
      expect(JSON.stringify(statementsOf(pipeline.driverFunction))).toContain(taskOnly);
    }
    expect(resources[stack.resolve((p.driverFunction.node.defaultChild as lambda.CfnFunction).logicalId)].Properties.Environment.Variables).toMatchObject({ DSTREAM_RUN_IN_DRIVER_BELOW_BYTES: '0' });
  });

  it('tell the driver the bound below which it runs a stage itself: 8 MiB unless said, at most 128 MiB', () => {
    const variables = (p: DStreamPipeline) => {
      const stack = Stack.of(p);
      return Template.fromStack(stack).toJSON().Resources[stack.resolve((p.driverFunction.node.defaultChild as lambda.CfnFunction).logicalId)].Properties.Environment.Variables;
    };
    expect(variables(pipeline)).toMatchObject({ DSTREAM_RUN_IN_DRIVER_BELOW_BYTES: String(8 * 1024 * 1024) });
    expect(variables(new DStreamPipeline(unbundledStack('Bound'), 'P', { pipeline: PIPELINE_MODULE, runInDriverBelow: Size.kibibytes(512) }))).toMatchObject({ DSTREAM_RUN_IN_DRIVER_BELOW_BYTES: '524288' });
    expect(() => new DStreamPipeline(unbundledStack('TooBig'), 'P', { pipeline: PIPELINE_MODULE, runInDriverBelow: Size.mebibytes(129) })).toThrow(/runInDriverBelow must be a whole number from 0 to 134217728 bytes/);
  });

  it('allow listing only with a prefix: a listing of the whole bucket is refused', () => {
    for (const fn of [pipeline.ingestFunction, pipeline.taskFunction, pipeline.driverFunction]) {
      const list = statementsOf(fn).filter((s) => actions(s).includes('s3:ListBucket'));
      expect(list).toHaveLength(1);
      // StringLike on a key the request may lack fails without it (IfExists would pass it).
      expect(Object.keys(list[0]!.Condition!)).toEqual(['StringLike']);
      expect(list[0]!.Resource).toEqual({ 'Fn::GetAtt': [logicalId(pipeline.bucket), 'Arn'] });
    }
  });

  it('let the task function consume the task queue, and only the driver send to it', () => {
    const sends = (fn: { role?: iam.IRole }, queue: { node: { defaultChild?: unknown } }) =>
      statementsOf(fn).filter((s) => actions(s).includes('sqs:SendMessage') && JSON.stringify(s.Resource).includes(`"${logicalId(queue)}"`));
    expect(sends(pipeline.driverFunction, pipeline.taskQueue)).toHaveLength(1);
    expect([...sends(pipeline.taskFunction, pipeline.taskQueue), ...sends(pipeline.ingestFunction, pipeline.taskQueue)]).toEqual([]);
    // Ingest sends only the events it failed on, to their own queue.
    expect(sends(pipeline.ingestFunction, pipeline.ingestFailures)).toHaveLength(1);
    // The last allowed delivery of a failing task is dead-lettered by the task function itself.
    expect(sends(pipeline.taskFunction, pipeline.deadLetterQueue)).toHaveLength(1);
    // ChangeMessageVisibility: a failed task comes back after its retry delay, not the queue's timeout.
    expect(statementsOf(pipeline.taskFunction).flatMap(actions)).toEqual(
      expect.arrayContaining(['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:ChangeMessageVisibility']),
    );
  });

  it('refuse a task sent by anyone but the driver, whatever their own policies allow', () => {
    template.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: logicalId(pipeline.taskQueue) }],
      PolicyDocument: {
        Statement: Match.arrayWith([
          {
            Effect: 'Deny',
            Principal: { AWS: '*' },
            Action: 'sqs:SendMessage',
            Resource: { 'Fn::GetAtt': [logicalId(pipeline.taskQueue), 'Arn'] },
            Condition: { ArnNotEquals: { 'aws:PrincipalArn': { 'Fn::GetAtt': [logicalId(pipeline.driverFunction.role as any), 'Arn'] } } },
          },
        ]),
      },
    });
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
    // Every committed interval publishes a delay, even an empty one, and every watchdog tick on a
    // dormant stream a DormantTick: no data of either means no commits where some were due.
    const stalled = ofType('AWS::CloudWatch::Alarm').filter(([, a]) => String(a.Properties.AlarmDescription).includes('no interval committed'));
    expect(stalled).toHaveLength(1);
    const stalledAlarm = stalled[0]![1].Properties;
    expect(stalledAlarm).toMatchObject({ Threshold: 1, ComparisonOperator: 'LessThanThreshold', TreatMissingData: 'breaching' });
    const queries = stalledAlarm.Metrics as { Id: string; Expression?: string; MetricStat?: { Metric: { MetricName: string }; Stat: string } }[];
    expect(queries.find((q) => q.Expression)!.Expression).toBe('FILL(committed, 0) + FILL(dormant, 0)');
    expect(queries.filter((q) => q.MetricStat).map((q) => [q.Id, q.MetricStat!.Metric.MetricName, q.MetricStat!.Stat])).toEqual([
      ['committed', 'SchedulingDelay', 'SampleCount'],
      ['dormant', 'DormantTicks', 'SampleCount'],
    ]);
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
    new DStreamPipeline(slow, 'P', { pipeline: PIPELINE_MODULE, intervalSeconds: 300 });
    const alarms = Object.values(Template.fromStack(slow).toJSON().Resources as Record<string, Resource>).filter((r) => r.Type === 'AWS::CloudWatch::Alarm');
    const delays = alarms.filter((a) => a.Properties.MetricName === 'SchedulingDelay');
    const stalled = alarms.flatMap((a) => (a.Properties.Metrics as { MetricStat?: { Period: number } }[] | undefined) ?? []).filter((q) => q.MetricStat);
    expect([...delays.map((a) => a.Properties.Period), ...stalled.map((q) => q.MetricStat!.Period)]).toEqual([300, 300, 300]);
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
    new DStreamPipeline(new Stack(new App({ context: CONTEXT }), 'Bad'), 'P', { pipeline: PIPELINE_MODULE, ...props });

  it.each([0, 901, 0.5, Number.NaN])('reject an interval of %s seconds', (intervalSeconds) => {
    expect(construct({ intervalSeconds })).toThrow(`intervalSeconds must be a number from 1 to 900 seconds, got ${intervalSeconds}`);
  });

  it.each([
    [{ taskConcurrency: 1 }, 'taskConcurrency must be a whole number from 2 to 1000, got 1'],
    [{ maxTaskAttempts: 0 }, 'maxTaskAttempts must be a whole number from 1 to 1000, got 0'],
    [{ partitions: 2.5 }, 'partitions must be a whole number from 1 to 10000, got 2.5'],
    [{ taskTimeout: Duration.minutes(16) }, 'taskTimeout must be a whole number from 1 to 900 seconds, got 960'],
    [{ pipeline: '/nowhere/pipeline.ts' }, 'pipeline module /nowhere/pipeline.ts does not exist'],
    // 900 s × the module's 1000 intervals between checkpoints is 10.42 days.
    [{ pipeline: RARE_CHECKPOINTS, intervalSeconds: 900, cacheRetentionDays: 10 }, 'cacheRetentionDays (10) is shorter than the 10.42 days between checkpoints'],
    [{ pipeline: RARE_CHECKPOINTS, intervalSeconds: 900, retentionDays: 7 }, 'retentionDays (7) is shorter than the 10.42 days between checkpoints'],
    [{ errorRetentionDays: 0 }, 'errorRetentionDays must be a whole number from 1 to 36500 days, got 0'],
    [{ errorRetentionDays: 1.5 }, 'errorRetentionDays must be a whole number from 1 to 36500 days, got 1.5'],
    [{ errorRetentionDays: 36_501 }, 'errorRetentionDays must be a whole number from 1 to 36500 days, got 36501'],
    [{ dropState: ['sessions', 'a,b'] as string[] }, `dropState must list state names, each 1-64 letters, digits, '.', '_' or '-', got "a,b"`],
    [{ completionFallback: Duration.seconds(21) }, 'completionFallback must be a whole number from 1 to 20 seconds, got 21'],
    [{ stayAwake: Duration.minutes(16) }, 'stayAwake must be a whole number from 1 to 900 seconds, got 960'],
    [{ dormantAfterIntervals: 1.5 }, 'dormantAfterIntervals must be a whole number from 1 to 1000000, got 1.5'],
    [{ dormantAfterIntervals: -1 }, 'dormantAfterIntervals must be a whole number from 1 to 1000000, got -1'],
    [{ interactiveQueries: 'yes' as unknown as boolean }, 'interactiveQueries must be true or false, got "yes"'],
    [{ maxIntervalsInFlight: 0 }, 'maxIntervalsInFlight must be a whole number from 1 to 16, got 0'],
    [{ maxIntervalsInFlight: 17 }, 'maxIntervalsInFlight must be a whole number from 1 to 16, got 17'],
    [{ maxIntervalsInFlight: 1.5 }, 'maxIntervalsInFlight must be a whole number from 1 to 16, got 1.5'],
  ] as const)('reject %o', (props, message) => {
    expect(construct(props)).toThrow(message);
  });

  it('tell the driver which named states a deploy of changed code may set aside, as CloudFormation resolves them', () => {
    const dropping = unbundledStack('Dropping');
    const list = new CfnParameter(dropping, 'Dropped', { type: 'CommaDelimitedList' });
    const given = new DStreamPipeline(dropping, 'Given', { pipeline: PIPELINE_MODULE, dropState: ['sessions', 'recent'] });
    const fromParameter = new DStreamPipeline(dropping, 'FromParameter', { pipeline: PIPELINE_MODULE, dropState: list.valueAsList });
    const variable = (fn: lambda.IFunction) =>
      (Template.fromStack(dropping).toJSON().Resources as Record<string, Resource>)[dropping.resolve((fn.node.defaultChild as lambda.CfnFunction).logicalId) as string]!
        .Properties.Environment.Variables.DSTREAM_DROP_STATE;
    expect(variable(given.driverFunction)).toBe('sessions,recent');
    expect(variable(fromParameter.driverFunction)).toEqual({ 'Fn::Join': [',', { Ref: 'Dropped' }] });
  });

  it('tell the driver how many intervals it may run at once: 2 unless said, a parameter as CloudFormation resolves it', () => {
    const stack = unbundledStack('InFlight');
    const bound = new CfnParameter(stack, 'InFlight', { type: 'Number' });
    const variable = (p: DStreamPipeline) =>
      (Template.fromStack(stack).toJSON().Resources as Record<string, Resource>)[stack.resolve((p.driverFunction.node.defaultChild as lambda.CfnFunction).logicalId) as string]!
        .Properties.Environment.Variables.DSTREAM_MAX_INTERVALS_IN_FLIGHT;
    const defaulted = new DStreamPipeline(stack, 'Defaulted', { pipeline: PIPELINE_MODULE });
    const sequential = new DStreamPipeline(stack, 'Sequential', { pipeline: PIPELINE_MODULE, maxIntervalsInFlight: 1 });
    const fromParameter = new DStreamPipeline(stack, 'FromParameter', { pipeline: PIPELINE_MODULE, maxIntervalsInFlight: bound.valueAsNumber });
    expect(variable(defaulted)).toBe('2');
    expect(variable(sequential)).toBe('1');
    expect(variable(fromParameter)).toEqual({ Ref: 'InFlight' });
  });

  it('reproduce the control plane from before wake-ups: no notices, a driver always awake, never dormant', () => {
    const current = unbundledStack('Current');
    const p = new DStreamPipeline(current, 'P', { pipeline: PIPELINE_MODULE, completionNotices: false, stayAwake: Duration.minutes(15), dormantAfterIntervals: 0 });
    const resources = Template.fromStack(current).toJSON().Resources;
    const variables = (fn: lambda.IFunction) => resources[current.resolve((fn.node.defaultChild as lambda.CfnFunction).logicalId)].Properties.Environment.Variables;
    expect(p.driverEventsQueue).toBeUndefined();
    expect(variables(p.taskFunction)).not.toHaveProperty('DSTREAM_EVENTS_QUEUE_URL');
    expect(variables(p.driverFunction)).toMatchObject({ DSTREAM_STAY_AWAKE_MS: '900000', DSTREAM_DORMANT_AFTER_INTERVALS: 'never' });
  });

  it('name the construct by its path in their errors', () => {
    expect(construct({ taskConcurrency: 1 })).toThrow('DStreamPipeline Bad/P: taskConcurrency must be a whole number from 2 to 1000, got 1');
  });

  it('take the pipeline\'s name and checkpointing from its module', () => {
    const fromModule = unbundledStack('FromModule');
    const p = new DStreamPipeline(fromModule, 'P', { pipeline: RARE_CHECKPOINTS, intervalSeconds: 900 });
    expect(p.pipelineName).toBe('rare-checkpoints');
    // 3 × the 10.42 days between the module's checkpoints.
    expect(lifecycleRulesOf(Template.fromStack(fromModule)).find((r) => r.Prefix === 'cache/')!.ExpirationInDays).toBe(32);
  });

  it.each([
    [join(FIXTURES, 'not-a-pipeline.ts'), 'exports no pipeline: its default export must be definePipeline(...) or defineBatch(...) from dstream (found object)'],
    [join(FIXTURES, '..', '..', 'fixtures', 'error-report.ts'), 'defines a batch job; only a streaming pipeline (definePipeline) is deployed'],
  ])('refuse a module that is no streaming pipeline: %s', (pipeline, reason) => {
    expect(construct({ pipeline })).toThrow(`DStreamPipeline Bad/P: could not load pipeline module ${pipeline}: ${pipeline} ${reason}`);
  });

  it("grant the driver a read of exactly the objects the pipeline names, and refuse a name IAM would read as a pattern", () => {
    const pipeline = join(FIXTURES, 'wildcard-seeds.ts');

    expect(construct({ pipeline })).toThrow(`DStreamPipeline Bad/P: the pipeline reads "seeds/*.jsonl" from the store: on AWS a key with '*' or '?' would be granted as a pattern, so rename it`);
  });

  it('take deploy-time parameters where CloudFormation can check them, and refuse them where the construct computes with them', () => {
    const parameterised = unbundledStack('Parameters');
    const number = (id: string) => new CfnParameter(parameterised, id, { type: 'Number' }).valueAsNumber;
    const p = new DStreamPipeline(parameterised, 'P', { pipeline: PIPELINE_MODULE, partitions: number('Partitions'), taskMemoryMiB: number('Memory'), maxTaskAttempts: number('Attempts') });
    const task = Template.fromStack(parameterised).toJSON().Resources[parameterised.resolve((p.taskFunction.node.defaultChild as lambda.CfnFunction).logicalId)];
    expect(task.Properties.MemorySize).toEqual({ Ref: 'Memory' });
    expect(task.Properties.Environment.Variables.DSTREAM_PARTITIONS).toEqual({ Ref: 'Partitions' });
    expect(task.Properties.Environment.Variables.DSTREAM_MAX_TASK_ATTEMPTS).toEqual({ Ref: 'Attempts' });

    const interval = unbundledStack('IntervalParameter');
    const seconds = new CfnParameter(interval, 'Seconds', { type: 'Number' }).valueAsNumber;
    expect(() => new DStreamPipeline(interval, 'P', { pipeline: PIPELINE_MODULE, intervalSeconds: seconds })).toThrow(
      'DStreamPipeline IntervalParameter/P: intervalSeconds must be known at synth time, not a token',
    );
  });

  it('log as JSON records at the level asked, INFO unless said', () => {
    const levels = (logLevel?: lambda.ApplicationLogLevel) => {
      const logging = unbundledStack(`Logging${logLevel ?? ''}`);
      new DStreamPipeline(logging, 'P', { pipeline: PIPELINE_MODULE, logLevel });
      return Object.values(Template.fromStack(logging).toJSON().Resources as Record<string, Resource>)
        .filter((r) => r.Type === 'AWS::Lambda::Function' && r.Properties.Environment?.Variables?.DSTREAM_BUCKET)
        .map((r) => r.Properties.LoggingConfig);
    };
    expect(levels()).toEqual(Array(3).fill(expect.objectContaining({ LogFormat: 'JSON', ApplicationLogLevel: 'INFO', SystemLogLevel: 'INFO' })));
    expect(levels(lambda.ApplicationLogLevel.DEBUG)).toEqual(Array(3).fill(expect.objectContaining({ ApplicationLogLevel: 'DEBUG' })));
  });

  it('expire errors/ after errorRetentionDays, which may be a deploy-time parameter', () => {
    const given = unbundledStack('Errors');
    new DStreamPipeline(given, 'P', { pipeline: PIPELINE_MODULE, errorRetentionDays: 90 });
    expect(lifecycleRulesOf(Template.fromStack(given)).find((r) => r.Prefix === 'errors/')!.ExpirationInDays).toBe(90);

    const parameterised = unbundledStack('ErrorsParameter');
    const days = new CfnParameter(parameterised, 'ErrorDays', { type: 'Number' });
    new DStreamPipeline(parameterised, 'P', { pipeline: PIPELINE_MODULE, errorRetentionDays: days.valueAsNumber });
    expect(lifecycleRulesOf(Template.fromStack(parameterised)).find((r) => r.Prefix === 'errors/')!.ExpirationInDays).toEqual({ Ref: 'ErrorDays' });
  });
});

describe('metrics for others', () => {
  it('are the pipeline\'s own, under its name, with the statistic that fits each and any option overridden', () => {
    const watched = unbundledStack('Metrics');
    const p = new DStreamPipeline(watched, 'P', { pipeline: PIPELINE_MODULE });
    const shape = (m: cloudwatch.Metric) => ({ namespace: m.namespace, metricName: m.metricName, dimensions: m.dimensions, statistic: m.statistic, period: m.period.toSeconds() });
    const of = (metricName: string, statistic: string) => ({ namespace: 'DStream', metricName, dimensions: { Pipeline: 'fixture' }, statistic, period: 300 });
    expect(shape(p.metricInputRecords())).toEqual(of('InputRecords', 'Sum'));
    expect(shape(p.metricProcessingTime())).toEqual(of('ProcessingTime', 'Average'));
    expect(shape(p.metricSchedulingDelay())).toEqual(of('SchedulingDelay', 'Maximum'));
    expect(shape(p.metricRefusedUploads())).toEqual(of('RefusedUploads', 'Sum'));
    expect(shape(p.metricTaskFailures())).toEqual(of('TaskFailures', 'Sum'));
    expect(shape(p.metricTaskRetries())).toEqual(of('TaskRetries', 'Sum'));
    expect(shape(p.metricSpeculativeTasks())).toEqual(of('SpeculativeTasks', 'Sum'));
    expect(shape(p.metricDeadLetteredTasks())).toEqual(of('DeadLetteredTasks', 'Sum'));
    expect(shape(p.metricSchedulingDelay({ statistic: 'p99', period: Duration.minutes(1) }))).toEqual({ ...of('SchedulingDelay', 'p99'), period: 60 });
  });

  it('can be alarmed on by the user\'s own stack', () => {
    const watched = unbundledStack('UserAlarm');
    const p = new DStreamPipeline(watched, 'P', { pipeline: PIPELINE_MODULE });
    p.metricSchedulingDelay().createAlarm(watched, 'Late', { threshold: 60_000, evaluationPeriods: 2 });
    Template.fromStack(watched).hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'DStream',
      MetricName: 'SchedulingDelay',
      Dimensions: [{ Name: 'Pipeline', Value: 'fixture' }],
      Statistic: 'Maximum',
      Period: 300,
      Threshold: 60_000,
    });
  });
});

describe('the user\'s project', () => {
  let project: string;
  beforeAll(() => {
    project = mkdtempSync(join(tmpdir(), 'dstream-project-'));
    writeFileSync(join(project, 'package-lock.json'), '{}');
    mkdirSync(join(project, 'lib', 'stacks'), { recursive: true });
  });
  afterAll(() => rmSync(project, { recursive: true, force: true }));

  it('is found by the nearest lock file above the working directory', () => {
    expect(userProject(undefined, join(project, 'lib', 'stacks'))).toEqual({ lockFile: join(project, 'package-lock.json'), root: project });
  });

  it('is where the functions are bundled and their generated entries written, never in dstream\'s own folder', () => {
    const stack = unbundledStack('UserProject');
    const p = new DStreamPipeline(stack, 'P', { pipeline: PIPELINE_MODULE, depsLockFilePath: join(project, 'package-lock.json') });
    const entries = readdirSync(join(project, 'cdk.out', '.dstream-entries'), { recursive: true }).map(String).filter((f) => f.endsWith('.ts'));
    expect(entries.map((f) => f.split('/').at(-1)).sort()).toEqual(['driver.ts', 'ingest.ts', 'task.ts']);
    expect(p.taskFunction).toBeDefined();
  });

  it('without a lock file is an error saying how to give one', () => {
    const bare = mkdtempSync(join(tmpdir(), 'dstream-bare-'));
    try {
      expect(() => userProject(undefined, bare)).toThrow(`found no lock file (pnpm-lock.yaml, yarn.lock, bun.lockb, bun.lock, package-lock.json) in ${bare} or above it`);
    } finally {
      rmSync(bare, { recursive: true, force: true });
    }
    expect(() => new DStreamPipeline(unbundledStack('NoLock'), 'P', { pipeline: PIPELINE_MODULE, depsLockFilePath: join(project, 'yarn.lock') })).toThrow(
      `DStreamPipeline NoLock/P: depsLockFilePath ${join(project, 'yarn.lock')} does not exist`,
    );
  });
});

describe('grants to others', () => {
  /** A pipeline, a role to grant to, and the statements the grant adds to that role's policy. */
  function granted(grant: (p: DStreamPipeline, role: iam.Role) => void, { encrypted = false } = {}) {
    const other = unbundledStack('Grants');
    const encryptionKey = encrypted ? new kms.Key(other, 'Key', { enableKeyRotation: true }) : undefined;
    const p = new DStreamPipeline(other, 'P', { pipeline: PIPELINE_MODULE, encryptionKey });
    const role = new iam.Role(other, 'Producer', { assumedBy: new iam.AccountRootPrincipal() });
    grant(p, role);
    const bucket = other.resolve((p.bucket.node.defaultChild as s3.CfnBucket).logicalId);
    const roleId = other.resolve((role.node.defaultChild as iam.CfnRole).logicalId);
    const statements = Object.values(Template.fromStack(other).toJSON().Resources as Record<string, Resource>)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles) === JSON.stringify([{ Ref: roleId }]))
      .flatMap((r) => r.Properties.PolicyDocument.Statement as Statement[]);
    const keyArn = encryptionKey && { 'Fn::GetAtt': [other.resolve((encryptionKey.node.defaultChild as kms.CfnKey).logicalId), 'Arn'] };
    return { statements, keyArn, objects: (pattern: string) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [bucket, 'Arn'] }, `/${pattern}`]] }), bucketArn: { 'Fn::GetAtt': [bucket, 'Arn'] } };
  }

  it('grantUpload lets a producer put objects under incoming/ and do nothing else', () => {
    const { statements, objects } = granted((p, role) => p.grantUpload(role));
    expect(statements).toEqual([{ Effect: 'Allow', Action: 's3:PutObject', Resource: objects('incoming/*') }]);
  });

  it('grantUpload with a prefix holds the producer to the keys under it', () => {
    const { statements, objects } = granted((p, role) => p.grantUpload(role, 'sensors/eu/'));
    expect(statements).toEqual([{ Effect: 'Allow', Action: 's3:PutObject', Resource: objects('incoming/sensors/eu/*') }]);
  });

  it('grantUpload lets the producer encrypt with the bucket\'s key when it has one', () => {
    const { statements, objects, keyArn } = granted((p, role) => p.grantUpload(role), { encrypted: true });
    expect(statements).toEqual([
      { Effect: 'Allow', Action: 's3:PutObject', Resource: objects('incoming/*') },
      { Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: keyArn },
    ]);
  });

  it.each([
    ['../lineage/', 'segment ".." is not allowed'],
    ['/sensors/', "starts with '/'"],
    ['a//b/', 'segment "" is not allowed'],
    ['sensors/*', "contains '*' or '?'"],
    ['a\\b', 'contains NUL or backslash'],
    ['./a', 'segment "." is not allowed'],
  ])('grantUpload refuses the prefix %j, naming the construct', (prefix, reason) => {
    expect(() => granted((p, role) => p.grantUpload(role, prefix))).toThrow(`DStreamPipeline Grants/P: grantUpload: `);
    expect(() => granted((p, role) => p.grantUpload(role, prefix))).toThrow(reason);
  });

  it('grantUpload takes a prefix only known at deploy time as it is', () => {
    const { statements } = granted((p, role) => p.grantUpload(role, new CfnParameter(Stack.of(p), 'Prefix').valueAsString));
    expect(JSON.stringify(statements[0]!.Resource)).toContain('{"Ref":"Prefix"}');
  });

  it('grantReadOutputs lets a reader get and list one output\'s objects', () => {
    const { statements, objects, bucketArn } = granted((p, role) => p.grantReadOutputs(role, 'counts'));
    expect(statements).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: objects('output/counts/*') },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn, Condition: { StringLike: { 's3:prefix': ['output/counts/*'] } } },
    ]);
  });

  it('grantReadOutputs without a name covers every output and nothing beside', () => {
    const { statements, objects, bucketArn } = granted((p, role) => p.grantReadOutputs(role));
    expect(statements).toEqual([
      { Effect: 'Allow', Action: 's3:GetObject', Resource: objects('output/*') },
      { Effect: 'Allow', Action: 's3:ListBucket', Resource: bucketArn, Condition: { StringLike: { 's3:prefix': ['output/*'] } } },
    ]);
  });

  it('grantReadOutputs refuses a name no output can have, naming the construct', () => {
    expect(() => granted((p, role) => p.grantReadOutputs(role, '../lineage'))).toThrow('DStreamPipeline Grants/P: grantReadOutputs: invalid output name "../lineage"');
  });
});

it('encrypts the bucket with a customer key when given one, and lets the functions use it', () => {
  // Bundling is skipped for this stack: only its template is read.
  const other = new Stack(new App({ context: { ...CONTEXT, 'aws:cdk:bundling-stacks': [] } }), 'Kms');
  const key = new kms.Key(other, 'Key', { enableKeyRotation: true });
  const withKey = new DStreamPipeline(other, 'P', { pipeline: PIPELINE_MODULE, encryptionKey: key });
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

describe('interactive queries', () => {
  it('are off by default: no query function, queue or output, and grantQuery says which prop to set', () => {
    expect([pipeline.queryQueue, pipeline.queryDeadLetterQueue, pipeline.queryFunction]).toEqual([undefined, undefined, undefined]);
    expect(Object.keys(resources).filter((id) => /Query/.test(id))).toEqual([]);
    expect(() => pipeline.grantQuery(new iam.Role(stack, 'NoQueries', { assumedBy: new iam.AccountRootPrincipal() }))).toThrow(
      'DStreamPipeline Test/Wordcount: grantQuery: the pipeline has no query function; construct it with interactiveQueries: true',
    );
  });

  /** A pipeline with interactiveQueries, bundled (its bundles are the main stack's, cached), and a shell's role granted grantQuery. */
  let q: { stack: Stack; p: DStreamPipeline; shell: iam.Role; resources: Record<string, Resource>; id: (c: { node: { defaultChild?: unknown } }) => string };
  beforeAll(() => {
    const other = new Stack(new App({ context: CONTEXT }), 'Queries');
    const p = new DStreamPipeline(other, 'Wordcount', { pipeline: PIPELINE_MODULE, intervalSeconds: 5, interactiveQueries: true });
    const shell = new iam.Role(other, 'Shell', { assumedBy: new iam.AccountRootPrincipal() });
    p.grantQuery(shell);
    const id = (c: { node: { defaultChild?: unknown } }) => other.resolve((c.node.defaultChild as { logicalId: string }).logicalId) as string;
    q = { stack: other, p, shell, resources: Template.fromStack(other).toJSON().Resources, id };
  }, 240_000);
  const statementsOfRole = (role: iam.IRole) =>
    Object.values(q.resources)
      .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(`"${q.id(role as unknown as { node: { defaultChild: unknown } })}"`))
      .flatMap((r) => r.Properties.PolicyDocument.Statement as Statement[]);
  /** Statements as `<Effect> <action>` to what it is on (and when): CDK merges and orders statements as it likes. */
  const byAction = (statements: Statement[]) => {
    const all: Record<string, unknown[]> = {};
    for (const s of statements) for (const a of actions(s)) (all[`${s.Effect} ${a}`] ??= []).push(s.Condition ? { on: s.Resource, when: s.Condition } : s.Resource);
    return all;
  };
  const objects = (pattern: string) => ({ 'Fn::Join': ['', [{ 'Fn::GetAtt': [q.id(q.p.bucket), 'Arn'] }, `/${pattern}`]] });
  const arn = (c: { node: { defaultChild?: unknown } }) => ({ 'Fn::GetAtt': [q.id(c), 'Arn'] });

  it("run the task function's code as a function of its own, told its role and its own queues, none of the stream's", () => {
    const fn = q.resources[q.id(q.p.queryFunction!)]!.Properties;
    const task = q.resources[q.id(q.p.taskFunction)]!.Properties;
    // The same bundle (the ingest function's differs): one asset, two roles.
    expect(fn.Code).toEqual(task.Code);
    expect(fn.Code).not.toEqual(q.resources[q.id(q.p.ingestFunction)]!.Properties.Code);
    expect(fn.Role).not.toEqual(task.Role);
    expect([fn.MemorySize, fn.Timeout]).toEqual([task.MemorySize, task.Timeout]);
    expect(fn.Environment.Variables).toEqual({
      DSTREAM_ROLE: 'query',
      DSTREAM_BUCKET: { Ref: q.id(q.p.bucket) },
      DSTREAM_TASK_QUEUE_URL: { Ref: q.id(q.p.queryQueue!) },
      DSTREAM_DEAD_LETTER_QUEUE_URL: { Ref: q.id(q.p.queryDeadLetterQueue!) },
      DSTREAM_MAX_TASK_ATTEMPTS: '5',
      NODE_OPTIONS: '--enable-source-maps',
    });
    Template.fromStack(q.stack).hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: q.id(q.p.queryFunction!) },
      EventSourceArn: arn(q.p.queryQueue!),
      BatchSize: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 20 },
    });
    const queue = q.resources[q.id(q.p.queryQueue!)]!.Properties;
    expect(queue.RedrivePolicy).toEqual({ deadLetterTargetArn: arn(q.p.queryDeadLetterQueue!), maxReceiveCount: 5 });
    expect(queue.VisibilityTimeout).toBe(6 * 5 * 60);
    // Nothing of the stream's queues: its tasks, dead letters, driver.
    const stream = [q.p.taskQueue, q.p.deadLetterQueue, q.p.driverWakeQueue, q.p.driverEventsQueue!].map(q.id);
    expect(stream.filter((queueId) => JSON.stringify(statementsOfRole(q.p.queryFunction!.role!)).includes(`"${queueId}"`))).toEqual([]);
    expect(Template.fromStack(q.stack).toJSON().Outputs).toMatchObject({ [Object.keys(Template.fromStack(q.stack).toJSON().Outputs).find((k) => k.includes('QueryQueueUrl'))!]: { Value: { Ref: q.id(q.p.queryQueue!) } } });
  });

  it("let the query function read the bucket and write only the sessions' scratch, never the code objects", () => {
    const s3 = statementsOfRole(q.p.queryFunction!.role!).filter((s) => actions(s).some((a) => a.startsWith('s3:')));
    expect(byAction(s3)).toEqual({
      'Allow s3:GetObject': [objects('*')],
      'Allow s3:GetObjectVersion': [objects('incoming/*')],
      'Allow s3:ListBucket': [{ on: arn(q.p.bucket), when: { StringLike: { 's3:prefix': ['*', 'incoming/*'] } } }],
      // Nothing of output/, cache/, lineage/, checkpoints/, driver/, intake/, errors/ or incoming/.
      'Allow s3:PutObject': [objects('queries/*')],
      'Allow s3:AbortMultipartUpload': [objects('queries/*')],
      'Allow s3:DeleteObject': [objects('queries/*')],
      'Deny s3:PutObject': [objects('queries/code/*')],
      'Deny s3:AbortMultipartUpload': [objects('queries/code/*')],
      'Deny s3:DeleteObject': [objects('queries/code/*')],
    });
    // Its queue it consumes, its dead-letter queue it sends a task's last failed delivery to.
    const sqsActions = (queue: { node: { defaultChild?: unknown } }) =>
      statementsOfRole(q.p.queryFunction!.role!).filter((s) => JSON.stringify(s.Resource) === JSON.stringify(arn(queue))).flatMap(actions).sort();
    expect(sqsActions(q.p.queryQueue!)).toEqual(['sqs:ChangeMessageVisibility', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl', 'sqs:ReceiveMessage']);
    expect(sqsActions(q.p.queryDeadLetterQueue!)).toEqual(['sqs:SendMessage']);
  });

  it("grantQuery lets a shell read the bucket, write its scratch and code, send tasks and drain its dead letters: what --on-lambda calls", () => {
    expect(byAction(statementsOfRole(q.shell))).toEqual({
      'Allow s3:GetObject': [objects('*')],
      'Allow s3:ListBucket': [{ on: arn(q.p.bucket), when: { StringLike: { 's3:prefix': ['*'] } } }],
      'Allow s3:PutObject': [objects('queries/*')],
      'Allow s3:AbortMultipartUpload': [objects('queries/*')],
      'Allow s3:DeleteObject': [objects('queries/*')],
      // local/shell/query-queue.ts: the redrive policy read, then SqsTaskQueue's send and dead-letter drain.
      'Allow sqs:GetQueueAttributes': [arn(q.p.queryQueue!)],
      'Allow sqs:SendMessage': [arn(q.p.queryQueue!)],
      'Allow sqs:GetQueueUrl': [arn(q.p.queryDeadLetterQueue!)],
      'Allow sqs:ReceiveMessage': [arn(q.p.queryDeadLetterQueue!)],
      'Allow sqs:DeleteMessage': [arn(q.p.queryDeadLetterQueue!)],
    });
  });

  it('grantQuery adds the bucket\'s key when it has one', () => {
    const other = unbundledStack('QueriesKms');
    const key = new kms.Key(other, 'Key', { enableKeyRotation: true });
    const p = new DStreamPipeline(other, 'P', { pipeline: PIPELINE_MODULE, encryptionKey: key, interactiveQueries: true });
    const shell = new iam.Role(other, 'Shell', { assumedBy: new iam.AccountRootPrincipal() });
    p.grantQuery(shell);
    const keyArn = { 'Fn::GetAtt': [other.resolve((key.node.defaultChild as kms.CfnKey).logicalId), 'Arn'] };
    const of = (role: iam.IRole) =>
      Object.values(Template.fromStack(other).toJSON().Resources as Record<string, Resource>)
        .filter((r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties.Roles).includes(`"${other.resolve((role.node.defaultChild as iam.CfnRole).logicalId)}"`))
        .flatMap((r) => r.Properties.PolicyDocument.Statement as Statement[]);
    expect(of(shell)).toContainEqual({ Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: keyArn });
    expect(of(p.queryFunction!.role!)).toContainEqual({ Effect: 'Allow', Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Resource: keyArn });
  });

  it('pass the cdk-nag AwsSolutions checks, every exception acknowledged with a reason', () => {
    // The pipeline's own resources: the shell's role, and its wildcards, are the user's to review (as grantUpload's).
    const report = new AwsSolutionsChecks().validateScope(q.p);
    expect(report.violations.map((v) => `${v.ruleName} at ${v.violatingResources.map((r) => r.constructPath).join(', ')}`)).toEqual([]);
  });
});
