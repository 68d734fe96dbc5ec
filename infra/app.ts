/**
 * The CDK app: the stack DStreamStack deploys one pipeline module, checked at synth by cdk-nag's
 * AwsSolutions rules. Environment-agnostic and free of lookups, so it synthesizes offline.
 *
 *   npx cdk synth                                  examples/wordcount.ts, 10 s intervals
 *   npx cdk deploy -c pipeline=examples/grep.ts -c intervalSeconds=5 -c partitions=4
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { App, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { pipelineFromModule } from '../core/runtime/task-handler.ts';
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

const pipelineModule = resolve(String(app.node.tryGetContext('pipeline') ?? 'examples/wordcount.ts'));
// Loading the module checks it is a streaming pipeline, and gives the name its metrics go under.
const pipeline = pipelineFromModule(await import(pathToFileURL(pipelineModule).href), pipelineModule);
if (pipeline.kind !== 'stream') {
  throw new Error(`${pipelineModule} defines a batch job; only a streaming pipeline (definePipeline) is deployed`);
}

const stack = new Stack(app, 'DStreamStack', { description: `dstream pipeline ${pipeline.options.name}` });
new DStreamPipeline(stack, 'Pipeline', {
  pipelineModule,
  pipelineName: pipeline.options.name,
  // The module's own value, if it sets one, is the one that runs: retention is checked against it.
  checkpointEvery: pipeline.options.checkpointEvery,
  intervalSeconds: contextNumber('intervalSeconds'),
  partitions: contextNumber('partitions'),
});

Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
