/**
 * Run by infra/pipeline-module.ts in a child process (constructs are synchronous; loading a
 * module is not): loads the pipeline module given as the only argument and prints what the
 * construct needs of it as one JSON line. A module that fails to load, or is no streaming
 * pipeline, exits 1 with the reason on stderr.
 */
import { pathToFileURL } from 'node:url';
import { pipelineFromModule } from '../core/runtime/task-handler.ts';

const path = process.argv[2];
try {
  if (!path) throw new Error('usage: describe-pipeline <module>');
  const pipeline = pipelineFromModule(await import(pathToFileURL(path).href), path);
  if (pipeline.kind !== 'stream') throw new Error(`${path} defines a batch job; only a streaming pipeline (definePipeline) is deployed`);
  const { name, checkpointEvery } = pipeline.options;
  process.stdout.write(`${JSON.stringify({ name, checkpointEvery, fingerprint: pipeline.fingerprint, storeObjects: pipeline.graph.storeObjects })}\n`);
} catch (error) {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
