/**
 * The code a shell session sends the query function: the stream's pipeline, bundled into one ESM
 * file by the shell (local/shell/query-code.ts) and left at `keys.queryCode(session, sha256)`,
 * for the tasks that recompute stream data the cache lost. Anything that can write under
 * `queries/` could replace it, so its bytes are checked against the hash its key and the task
 * message name before it is loaded.
 */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { keys } from '../../core/layout.ts';
import { pipelineFromModule } from '../../core/runtime/task-handler.ts';
import { InvalidTaskMessageError } from '../../core/scheduler/task-message.ts';

/** Loaded code by hash: one import per container, whichever session sent it. */
const loaded = new Map<string, Promise<Pipeline>>();

/**
 * The pipeline of the code object `keys.queryCode(session, sha256)`, written to `dir` (Lambda's
 * /tmp) and imported. Code that is gone (its session ended), does not match its hash, does not
 * load or is no streaming pipeline is an InvalidTaskMessageError: every delivery would meet it, so
 * the task is dead-lettered at once with the reason, which the session's query reports.
 */
export function loadQueryCode(store: ObjectStore, session: string, sha256: string, dir = path.join(tmpdir(), 'dstream-query-code')): Promise<Pipeline> {
  let pipeline = loaded.get(sha256);
  if (!pipeline) {
    pipeline = load(store, keys.queryCode(session, sha256), sha256, dir);
    loaded.set(sha256, pipeline);
    // A failure is not kept: the next task of another session may send the same code intact.
    pipeline.catch(() => loaded.delete(sha256));
  }
  return pipeline;
}

async function load(store: ObjectStore, key: string, sha256: string, dir: string): Promise<Pipeline> {
  const bytes = await store.get(key);
  if (!bytes) throw new InvalidTaskMessageError(`query code ${key} is missing: its session has ended, or never sent it`);
  const actual = createHash('sha256').update(bytes).digest('hex');
  if (actual !== sha256) throw new InvalidTaskMessageError(`query code ${key} has SHA-256 ${actual}, not the ${sha256} its name and the task give: it was altered, and is not loaded`);
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, `${sha256}.mjs`);
  await writeFile(file, bytes);
  let module: unknown;
  try {
    module = await import(pathToFileURL(file).href);
  } catch (error) {
    throw new InvalidTaskMessageError(`query code ${key} does not load: ${error instanceof Error ? error.message : String(error)}`);
  }
  let pipeline;
  try {
    pipeline = pipelineFromModule(module, key);
  } catch (error) {
    throw new InvalidTaskMessageError((error as Error).message);
  }
  if (pipeline.kind !== 'stream') throw new InvalidTaskMessageError(`query code ${key} defines batch job ${pipeline.options.name}; recomputing a stream's data needs the stream's pipeline`);
  return pipeline;
}
