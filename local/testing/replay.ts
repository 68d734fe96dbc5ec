import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { intervalScope, keys } from '../../core/layout.ts';
import type { IntervalReport } from '../../core/streaming/driver.ts';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.ts';
import { FsObjectStore } from '../store/fs-object-store.ts';

/**
 * One interval's input: the lines of a single upload, or uploads by file name (a name may hold
 * folders, `logs/a.txt`; content as text or bytes).
 */
export type IntervalInput = readonly string[] | Readonly<Record<string, string | Uint8Array>>;

/** How `replay` runs; every option has a default. */
export interface ReplayOptions {
  /**
   * Input splits per interval (the CLI's `--partitions`; the pipeline's own `partitions` are its
   * shuffle partitions).
   * @default 2
   */
  readonly splits?: number;
  /**
   * Tasks run at once, in this process.
   * @default 2
   */
  readonly concurrency?: number;
  /**
   * Keep the run in this directory (a fresh or a replayed root) instead of a temporary one that
   * is deleted afterwards: to look at its lineage, or to replay more intervals onto it later.
   * @default a temporary directory, deleted when the replay ends
   */
  readonly root?: string;
}

/** What one interval produced. */
export interface ReplayedInterval {
  /** The interval's number: its index in `replay`'s `intervals`. */
  readonly interval: number;
  /**
   * Each file output's records in part order: `saveAsJsonFiles` parsed back to values,
   * `saveAsTextFiles` as lines. A pipeline's `foreachRDD` sinks run in this process, so a test
   * can collect what they get itself.
   */
  readonly outputs: Readonly<Record<string, unknown[]>>;
  /** The interval's report, as the CLI prints it: records in and out, tasks, times. */
  readonly report: IntervalReport;
}

/** What `replay` returns: each replayed interval's outputs and report. */
export interface ReplayResult {
  /** The intervals replayed, in order: one per element of `intervals`. */
  readonly intervals: readonly ReplayedInterval[];
  /** Records of output `name` at interval `k` (a missing output name is an error, not `[]`). */
  output(name: string, k: number): unknown[];
  /** The root the run was kept in, when `options.root` was given. */
  readonly root?: string;
}

/**
 * Runs a pipeline over the given intervals in this process, as Spark's StreamingSuiteBase does:
 * interval k's uploads are `intervals[k]`, and the result holds each interval's outputs. The run
 * is the embedded runtime's own (sealing, lineage, shuffles, state, checkpoints) with its tasks
 * in this process: what it returns is what `dstream replay` would write.
 */
export async function replay(pipeline: Pipeline, intervals: readonly IntervalInput[], options: ReplayOptions = {}): Promise<ReplayResult> {
  if (pipeline?.kind !== 'stream') {
    throw new TypeError('replay: pass the pipeline itself, the default export of definePipeline(...)');
  }
  const scratch = await mkdtemp(path.join(tmpdir(), 'dstream-replay-'));
  const root = options.root === undefined ? path.join(scratch, 'root') : path.resolve(options.root);
  try {
    const staged = await stageIntervals(path.join(scratch, 'staged'), intervals);
    const runtime = await EmbeddedRuntime.open({
      pipelinePath: pipeline.options.name,
      inProcess: pipeline,
      root,
      workers: options.concurrency ?? 2,
      partitions: options.splits ?? 2,
      // Tasks in this process finish in milliseconds: poll for them as often.
      scheduler: { pollMs: 2 },
    });
    let reports: IntervalReport[];
    try {
      reports = await runtime.replay(staged);
    } finally {
      await runtime.close();
    }
    const store = new FsObjectStore(root);
    const fileOutputs = pipeline.graph.outputs.filter((o) => o.format !== 'collect');
    const replayed: ReplayedInterval[] = [];
    for (const report of reports) {
      const outputs: Record<string, unknown[]> = {};
      for (const output of fileOutputs) {
        outputs[output.name] = await readOutput(store, output.name, report.interval, output.format === 'json');
      }
      replayed.push({ interval: report.interval, outputs, report });
    }
    return {
      intervals: replayed,
      output(name, k) {
        const interval = replayed.find((r) => r.interval === k);
        if (!interval) throw new RangeError(`replay: interval ${k} was not replayed (intervals 0..${replayed.length - 1} were)`);
        const records = interval.outputs[name];
        if (!records) throw new RangeError(`replay: the pipeline has no file output '${name}' (it has: ${Object.keys(interval.outputs).join(', ') || 'none'})`);
        return records;
      },
      ...(options.root === undefined ? {} : { root }),
    };
  } finally {
    await rm(options.root === undefined ? scratch : path.join(scratch, 'staged'), { recursive: true, force: true });
  }
}

async function stageIntervals(dir: string, intervals: readonly IntervalInput[]): Promise<string> {
  for (const [k, input] of intervals.entries()) {
    const files: [string, string | Uint8Array][] = Array.isArray(input)
      ? [['input.txt', input.map((line) => `${line}\n`).join('')]]
      : Object.entries(input as Record<string, string | Uint8Array>);
    await mkdir(path.join(dir, String(k)), { recursive: true });
    for (const [name, content] of files) {
      const file = path.join(dir, String(k), name);
      if (path.relative(path.join(dir, String(k)), file).startsWith('..')) throw new RangeError(`replay: upload name '${name}' of interval ${k} leaves its interval`);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, content);
    }
  }
  return dir;
}

/** An output's records at interval k, across its parts in order; [] when the output wrote nothing then. */
async function readOutput(store: ObjectStore, name: string, k: number, json: boolean): Promise<unknown[]> {
  const scope = intervalScope(k);
  if (!(await store.head(keys.outputSuccess(name, scope)))) return [];
  const records: unknown[] = [];
  for await (const part of store.list(keys.outputPartsPrefix(name, scope))) {
    const text = Buffer.from((await store.get(part.key))!).toString('utf8');
    for (const line of text.split('\n')) if (line !== '') records.push(json ? JSON.parse(line) : line);
  }
  return records;
}
