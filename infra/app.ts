/**
 * The CDK app: the stack DStreamStack deploys one pipeline module, checked at synth by cdk-nag's
 * AwsSolutions rules. Environment-agnostic and free of lookups, so it synthesizes offline.
 *
 *   npx cdk synth                                  examples/wordcount.ts, 10 s intervals
 *   npx cdk deploy -c pipeline=examples/grep.ts -c intervalSeconds=5 -c partitions=4
 *   npx cdk deploy -c interactiveQueries=true      with the query function of `dstream shell --on-lambda`
 */
import { App, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { DStreamPipeline } from './dstream-pipeline.ts';

const app = new App();

/** A number given with `-c name=value`, or undefined when not given. */
function contextNumber(name: string): number | undefined {
  const raw: unknown = app.node.tryGetContext(name);
  if (raw === undefined) return undefined;
  const value = typeof raw === 'number' ? raw : Number(raw);
  if (typeof raw === 'string' && raw.trim() === '') throw new Error(`-c ${name}= needs a number`);
  if (!Number.isFinite(value)) throw new Error(`-c ${name} must be a number, got ${JSON.stringify(raw)}`);
  return value;
}

/** A switch given with `-c name=true`, false when not given. */
function contextFlag(name: string): boolean {
  const raw: unknown = app.node.tryGetContext(name);
  if (raw === undefined || raw === false || raw === 'false') return false;
  if (raw === true || raw === 'true') return true;
  throw new Error(`-c ${name} must be true or false, got ${JSON.stringify(raw)}`);
}

const stack = new Stack(app, 'DStreamStack');
// The construct loads the module: its name and checkpointing come from there.
const pipeline = new DStreamPipeline(stack, 'Pipeline', {
  pipeline: String(app.node.tryGetContext('pipeline') ?? 'examples/wordcount.ts'),
  intervalSeconds: contextNumber('intervalSeconds'),
  partitions: contextNumber('partitions'),
  interactiveQueries: contextFlag('interactiveQueries'),
});
stack.templateOptions.description = `dstream pipeline ${pipeline.pipelineName}`;

Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
