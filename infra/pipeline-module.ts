/**
 * What the construct learns from a pipeline module at synth time: its name (the metrics'
 * dimension) and how often it checkpoints (what retention is checked against). The module is the
 * only source of both, so a deployment cannot disagree with the code it runs.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export interface PipelineDescription {
  /** `options.name`. */
  readonly name: string;
  /** `options.checkpointEvery`, resolved as the deployed functions resolve it. */
  readonly checkpointEvery: number;
  readonly fingerprint: string;
  /** Keys of the objects the pipeline reads from the store (`ctx.jsonFile`): the driver pins them at interval 0. */
  readonly storeObjects: readonly string[];
}

/** Next to this file, as sources (.ts) or as the built package (.js). */
const DESCRIBE_SCRIPT = ['describe-pipeline.ts', 'describe-pipeline.js'].map((name) => join(import.meta.dirname, name)).find(existsSync);
/** Loading a module costs a Node start; a synth that builds several stacks of one module pays it once. */
const described = new Map<string, PipelineDescription>();

/**
 * Loads the module in a child Node (with tsx, so that a TypeScript module loads as a JavaScript
 * one does) and returns its description; a module that fails to load or is no streaming pipeline
 * is an error saying why.
 */
export function describePipeline(modulePath: string): PipelineDescription {
  if (!existsSync(modulePath)) throw new Error(`pipeline module ${modulePath} does not exist`);
  const cacheKey = `${modulePath}\0${statSync(modulePath).mtimeMs}`;
  const cached = described.get(cacheKey);
  if (cached) return cached;
  if (!DESCRIBE_SCRIPT) throw new Error(`dstream is incomplete: no describe-pipeline script in ${import.meta.dirname}`);
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href;
  const child = spawnSync(process.execPath, ['--import', tsx, DESCRIBE_SCRIPT, modulePath], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (child.error) throw new Error(`could not load pipeline module ${modulePath}: ${child.error.message}`);
  if (child.status !== 0) {
    const reason = child.stderr.trim() || `node exited with ${child.status ?? child.signal}`;
    throw new Error(`could not load pipeline module ${modulePath}: ${reason}`);
  }
  // The module may print while it loads: the description is the last line.
  const description = JSON.parse(child.stdout.trim().split('\n').at(-1)!) as PipelineDescription;
  described.set(cacheKey, description);
  return description;
}
