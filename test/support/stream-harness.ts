import { StreamingDriver, type DriverConfig, type DriverHooks } from '../../core/streaming/driver.ts';
import { admitUpload } from '../../core/streaming/intake.ts';
import { systemClock } from '../../core/ports/clock.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { InProcessRunner } from '../../local/runtime/in-process-runner.ts';
import { sampleLines } from '../../local/sample/generate.ts';
import wordcount from '../../examples/wordcount.ts';
import { defaultSchedulerOptions } from '../../core/scheduler/dag-scheduler.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { EmbeddedRuntime, type EmbeddedOptions } from '../../local/runtime/embedded-runtime.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { readLineageRecord } from '../../core/streaming/lineage.ts';
import { keys } from '../../core/layout.ts';
import type { IntervalReport } from '../../core/streaming/driver.ts';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the `dstream` command as a user would, in its own process; with `openFiles`, under that
 * limit of open descriptors (set by bash's `ulimit -n`, which Node cannot set for a child).
 */
export function runCli(args: string[], env: NodeJS.ProcessEnv = {}, limits: { openFiles?: number } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const command = [process.execPath, path.resolve('bin/dstream.js'), ...args];
    const [file, argv] =
      limits.openFiles === undefined ? [command[0]!, command.slice(1)] : ['bash', ['-c', `ulimit -n ${limits.openFiles} && exec "$@"`, 'bash', ...command]];
    const child = spawn(file, argv, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

export async function tempDir(prefix = 'dstream-test-'): Promise<string> {
  return mkdtemp(path.join(tmpdir(), prefix));
}

/** Writes `files[k]` (file name -> content) as the staged uploads of interval k. */
export async function stage(dir: string, files: Record<string, string | Uint8Array>[]): Promise<string> {
  for (let k = 0; k < files.length; k++) {
    await mkdir(path.join(dir, String(k)), { recursive: true });
    for (const [name, content] of Object.entries(files[k]!)) {
      await mkdir(path.dirname(path.join(dir, String(k), name)), { recursive: true });
      await writeFile(path.join(dir, String(k), name), content);
    }
  }
  return dir;
}

export interface ReplayResult {
  root: string;
  reports: IntervalReport[];
  /** Records of output `name` at interval k, parsed from JSON lines; undefined when not committed. */
  output(name: string, k: number): Promise<unknown[] | undefined>;
  /** Raw bytes of every output file, by path under the root: for byte-for-byte comparisons. */
  files(): Promise<Map<string, string>>;
}

/** Replays staged uploads through a pipeline object, tasks run in this process. */
export async function replayInProcess(
  pipeline: Pipeline,
  files: Record<string, string | Uint8Array>[],
  options: Partial<EmbeddedOptions> = {},
): Promise<ReplayResult> {
  const base = await tempDir();
  const staged = await stage(path.join(base, 'staged'), files);
  const root = path.join(base, 'root');
  const reports = await replayInto(pipeline, root, staged, options);
  return { root, reports, output: (name, k) => readOutput(root, name, k), files: () => outputFiles(root) };
}

/**
 * Replays staged intervals into `root` with the in-process runtime, 2 workers, polling fast, no
 * speculation; intervals committed there already are kept. What restarts and upgrades run.
 */
export async function replayInto(pipeline: Pipeline, root: string, staged: string, options: Partial<EmbeddedOptions> = {}): Promise<IntervalReport[]> {
  const runtime = await EmbeddedRuntime.open({
    pipelinePath: 'in-process',
    inProcess: pipeline,
    root,
    workers: 2,
    scheduler: { pollMs: 2, speculation: { enabled: false, quantile: 0.5, multiplier: 2, minMs: 200 }, maxFetchFailures: 8 },
    ...options,
  });
  try {
    return await runtime.replay(staged);
  } finally {
    await runtime.close();
  }
}

export async function readOutput(root: string | ObjectStore, name: string, k: number): Promise<unknown[] | undefined> {
  return (await readTextOutput(root, name, k))?.map((line) => JSON.parse(line));
}

/** Lines of text output `name` at interval k, across its parts; undefined when not committed. */
export async function readTextOutput(root: string | ObjectStore, name: string, k: number): Promise<string[] | undefined> {
  if (typeof root !== 'string') return readStoredTextOutput(root, name, k);
  const dir = path.join(root, 'output', name, `interval=${String(k).padStart(6, '0')}`);
  let entries: string[];
  try {
    entries = (await readdir(dir)).sort();
  } catch {
    return undefined;
  }
  if (!entries.includes('_SUCCESS')) return undefined;
  const lines: string[] = [];
  for (const f of entries.filter((e) => e.startsWith('part-'))) {
    lines.push(...(await readFile(path.join(dir, f), 'utf8')).split('\n').filter((l) => l !== ''));
  }
  return lines;
}

/** Every line of every file below `dir` (recursively), or [] when it does not exist. */
export async function readAllLines(dir: string): Promise<string[]> {
  const lines: string[] = [];
  let entries: string[];
  try {
    entries = (await readdir(dir, { recursive: true })).map(String).sort();
  } catch {
    return [];
  }
  for (const f of entries) {
    try {
      lines.push(...(await readFile(path.join(dir, f), 'utf8')).split('\n').filter(Boolean));
    } catch {
      // a folder
    }
  }
  return lines;
}

export async function outputFiles(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (rel: string) => {
    for (const e of await readdir(path.join(root, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) await walk(r);
      else out.set(r, await readFile(path.join(root, r), 'utf8'));
    }
  };
  await walk('output');
  return new Map([...out.entries()].sort(([a], [b]) => (a < b ? -1 : 1)));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** A multiset of values as sorted canonical JSON: order-free comparison. */
export function bag(values: unknown[] | undefined): string[] | undefined {
  return values?.map((v) => JSON.stringify(v)).sort();
}

/** The same, from a store rather than a directory (the functions' tests run on a versioned bucket in memory). */
async function readStoredTextOutput(store: ObjectStore, name: string, k: number): Promise<string[] | undefined> {
  const scope = `interval=${String(k).padStart(6, '0')}`;
  if (!(await store.head(`output/${name}/${scope}/_SUCCESS`))) return undefined;
  const lines: string[] = [];
  for await (const info of store.list(`output/${name}/${scope}/part-`)) {
    const text = Buffer.from((await store.get(info.key))!).toString('utf8');
    lines.push(...text.split('\n').filter((l) => l.length > 0));
  }
  return lines;
}

/** A driver configuration for tests that run intervals directly: small splits, polls every 2 ms. */
export function testDriverConfig(overrides: Partial<DriverConfig> = {}): DriverConfig {
  return { intervalMs: 1000, inputPartitions: 2, maxSplitBytes: 1 << 20, scheduler: { ...defaultSchedulerOptions, pollMs: 2 }, retainIntervals: 1, ...overrides };
}

/**
 * Replays `files` into `root` with the in-process runtime, losing part 0 of each RDD interval
 * `lost` persisted once it has committed: the next interval finds it gone, and recovery rebuilds
 * it under interval `lost`.
 */
export async function replayLosingPersisted(pipeline: Pipeline, root: string, files: Record<string, string | Uint8Array>[], lost: number): Promise<void> {
  await replayInto(pipeline, root, await stage(path.join(root, '..', 'staged-to-lost'), files.slice(0, lost + 1)));
  const store = new FsObjectStore(root);
  for (const { location } of (await readLineageRecord(store, lost))!.persists) await store.delete(keys.persisted(location, 0));
  await replayInto(pipeline, root, await stage(path.join(root, '..', 'staged'), files));
}

/**
 * A root with WordCount uploads admitted to intervals 0 to `intervals` - 1, a queue, and tasks run
 * in this process: `driver(hooks)` makes a driver over them (as many as a spec restarts).
 */
export async function wordcountRoot(intervals: number, config: DriverConfig) {
  const root = await tempDir();
  const store = new FsObjectStore(root);
  const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 4 });
  const runner = InProcessRunner.for(wordcount, store, queue, 2);
  await runner.start();
  for (let k = 0; k < intervals; k++) {
    const key = `incoming/${k}.txt`;
    const text = sampleLines(200, 40 + k);
    await store.put(key, text);
    await admitUpload(store, { key, name: `${k}.txt`, size: Buffer.byteLength(text) }, k);
  }
  const driver = (hooks: DriverHooks = {}) => new StreamingDriver(wordcount, { store, queue, clock: systemClock }, config, hooks);
  const close = async () => {
    await runner.stop();
    await queue.close();
  };
  return { root, store, queue, driver, close };
}
