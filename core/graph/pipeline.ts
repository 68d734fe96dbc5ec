import { DStream, StreamGraph } from './dstream.ts';
import { StoreObject } from './state-stream.ts';
import { validateKey } from '../ports/object-store.ts';
import type { SourceFormat } from '../rdd/plan.ts';
import { checkPartitions, PlanBuilder, type Rdd } from '../rdd/rdd.ts';
import type { BadRecordPolicy } from '../exec/task.ts';
import { shortHash } from '../util/hash.ts';
import type { SplitRef } from '../rdd/plan.ts';
import { checkSlice, type SliceSpec } from '../batch/slice.ts';

/** What `definePipeline` and `defineBatch` take besides the build function. Spark: the `SparkConf` settings that matter here. */
export interface PipelineOptions {
  /** Names the pipeline in lineage, logs and metrics: 1-64 letters, digits, '.', '_' or '-'. */
  name: string;
  /**
   * Partitions of keyed operators (shuffles, state, windows) unless an operator says otherwise:
   * Spark's `spark.default.parallelism`. A whole number from 1 to 100000. Default 4.
   * Not the input splits, which the runtime chooses (the CLI's `--partitions`).
   */
  partitions?: number;
  /**
   * State RDDs go to the durable tier every this many intervals, which bounds recovery. Default 10.
   * Spark: `DStream.checkpoint(interval)`, for every state stream at once.
   */
  checkpointEvery?: number;
  /**
   * What a record that makes a user function throw (or a line that is not JSON, or too long) does:
   * fail the interval (`'fail'`, the default) or be kept under `errors/` while the interval goes on
   * (`'quarantine'`). No Spark counterpart.
   */
  badRecords?: BadRecordPolicy;
  /** Longest input line accepted, in bytes; longer ones are bad records. Default 8 MiB. */
  maxLineBytes?: number;
}

export type ResolvedOptions = Required<PipelineOptions>;

/** Where a source reads: uploads under `incoming/<prefix>`. */
export interface SourceOptions {
  /**
   * Reads the uploads whose name below `incoming/` starts with this string (a plain prefix: end
   * it with `/` for a folder); relative, without `..`. Default `''`: every upload.
   */
  prefix?: string;
}

export interface SourceSpec {
  format: SourceFormat;
  prefix: string;
}

/** What a batch job reads: every object under a prefix, or the committed intervals of a stream's output. */
export type BatchSourceSpec = { format: SourceFormat } & ({ prefix: string } | { slice: SliceSpec });

/** Builds a pipeline's graph: the sources it reads. Spark: `StreamingContext`, handed to the build function. */
export class StreamingContext {
  /** @internal Where each source stream reads. */
  readonly sourceSpecs = new Map<DStream<unknown>, SourceSpec>();

  /** @internal Made by `definePipeline`. */
  constructor(
    /** @internal The graph the streams are added to. */
    readonly graph: StreamGraph,
  ) {}

  /**
   * Lines of text uploaded under `incoming/` (or `incoming/<prefix>`), one record per line. Spark:
   * `StreamingContext.textFileStream`, fed by uploads that each interval seals.
   */
  textStream(options: SourceOptions = {}): DStream<string> {
    return this.source<string>('text', options);
  }

  /**
   * JSON values, one per line (blank lines skipped), uploaded as for textStream; a line that does
   * not parse is a bad record (see `badRecords`). No Spark counterpart (Spark: textFileStream, then parse).
   */
  jsonStream<T = unknown>(options: SourceOptions = {}): DStream<T> {
    return this.source<T>('jsonl', options);
  }

  /**
   * A JSON-lines object in the store, for an initial state (`updateStateByKey(f, { initial })`,
   * `mapWithState({ initial })`) as Spark's initialRDD: each line a `[key, state]` pair. It is
   * read, and its bytes pinned, when interval 0 is planned; a missing object stops the stream
   * there, before interval 0 runs. Later changes to the object change nothing.
   * `key` is the object's key in the store (not a folder).
   */
  jsonFile<T = unknown>(key: string): StoreObject<T> {
    validateKey(key);
    if (key.endsWith('/')) throw new Error(`jsonFile(${JSON.stringify(key)}): name one object, not a folder`);
    return new StoreObject<T>(key, this.graph.storeObjects.push(key) - 1);
  }

  private source<T>(format: SourceFormat, options: SourceOptions): DStream<T> {
    const prefix = normalisePrefix(options.prefix ?? '');
    let stream: DStream<T>;
    stream = new DStream<T>(
      this.graph,
      format === 'text' ? 'textStream' : 'jsonStream',
      [],
      prefix,
      (gen) => gen.builder.source<T>(format, gen.sourceSplits(stream as DStream<unknown>), stream.kind),
      { slide: 1 },
    );
    this.graph.sources.push(stream as DStream<unknown>);
    this.sourceSpecs.set(stream as DStream<unknown>, { format, prefix });
    return stream;
  }
}

/** A streaming pipeline: the module's default export, loaded alike by the driver and every task. */
export class Pipeline {
  /** Tells a streaming pipeline from a batch job (`'batch'`) where a module may export either. */
  readonly kind = 'stream';
  /** The options given, with their defaults filled in. */
  readonly options: ResolvedOptions;
  /** @internal The streams and outputs the build function made. */
  readonly graph: StreamGraph;
  /** @internal Where each source stream reads, in the order of the graph's sources. */
  readonly sources: SourceSpec[];
  /** Changes whenever the graph or any function in it changes. */
  readonly fingerprint: string;

  /** As `definePipeline(options, build)`: calls `build` once, and checks the graph has a source and an output. */
  constructor(options: PipelineOptions, build: (ctx: StreamingContext) => void) {
    this.options = resolveOptions(options);
    this.graph = new StreamGraph(this.options.partitions);
    const ctx = new StreamingContext(this.graph);
    build(ctx);
    if (this.graph.sources.length === 0) throw new Error(`pipeline ${this.options.name} reads no stream: call ctx.textStream() or ctx.jsonStream()`);
    if (this.graph.outputs.length === 0) {
      throw new Error(`pipeline ${this.options.name} has no output: add saveAsTextFiles, saveAsJsonFiles, foreachRDD or print`);
    }
    this.sources = this.graph.sources.map((s) => ctx.sourceSpecs.get(s)!);
    this.graph.carriedStreams(); // refuses two states of one name
    this.fingerprint = shortHash(JSON.stringify([this.options, this.graph.describe(), this.graph.outputs.map((o) => [o.name, o.format, o.stream.id])]));
  }
}

/**
 * A streaming pipeline, to be the module's default export: `build` declares its sources on the
 * context and its operators and outputs on the streams; it runs once per process, when the module
 * loads, and must build the same graph every time. Spark: creating a `StreamingContext` and its
 * DStreams; there is no `start()`, the runtime (CLI, test kit or Lambda) runs the module.
 */
export function definePipeline(options: PipelineOptions, build: (ctx: StreamingContext) => void): Pipeline {
  return new Pipeline(options, build);
}

/** Builds a batch job's RDDs over objects already in the store. Spark: `SparkContext`, handed to the build function. */
export class BatchContext {
  /** @internal What each source reads, in the order the build function named them. */
  readonly sourceSpecs: BatchSourceSpec[] = [];

  /** @internal Made by the runtime for each run of a batch job. */
  constructor(
    /** @internal The plan the job's RDDs are added to. */
    readonly builder: PlanBuilder,
    private readonly splits: (spec: BatchSourceSpec, index: number) => SplitRef[],
  ) {}

  /**
   * Lines of every object whose key starts with `prefix` (any prefix in the store); a prefix that
   * holds nothing is an error when the run starts, as in Spark. Spark: `SparkContext.textFile`.
   */
  textFile(prefix: string): Rdd<string> {
    return this.source<string>('text', prefix);
  }

  /**
   * JSON values, one per line (blank lines skipped), of every object whose key starts with
   * `prefix` (as textFile); a line that does not parse is a bad record. No Spark counterpart (Spark: textFile, then parse).
   */
  jsonFile<T = unknown>(prefix: string): Rdd<T> {
    return this.source<T>('jsonl', prefix);
  }

  /**
   * `values` given in the program, cut into `partitions` slices (at most one per value). Spark:
   * `SparkContext.parallelize`. The values travel in the job's plan: for small data.
   */
  parallelize<T>(values: T[], partitions = 1): Rdd<T> {
    return this.builder.values(values, checkPartitions(partitions));
  }

  /**
   * The records a stream wrote to output `output` (saveAsJsonFiles) at intervals `from` to `to`,
   * both included, as one RDD: Spark's DStream.slice(fromTime, toTime), with the stream named by
   * its output. Only committed intervals are read; a range reaching one not yet committed is an
   * error when the run starts, as is an output never written. An interval at which the stream
   * had no RDD (between a window's slides) adds nothing.
   */
  slice<T = unknown>(output: string, from: number, to: number): Rdd<T> {
    return this.source<T>('jsonl', { slice: checkSlice({ output, from, to }) });
  }

  /** As `slice`, for an output written by saveAsTextFiles: one record per line. */
  sliceText(output: string, from: number, to: number): Rdd<string> {
    return this.source<string>('text', { slice: checkSlice({ output, from, to }) });
  }

  private source<T>(format: SourceFormat, where: string | { slice: SliceSpec }): Rdd<T> {
    const spec: BatchSourceSpec = typeof where === 'string' ? { format, prefix: where } : { format, ...where };
    const index = this.sourceSpecs.push(spec) - 1;
    const label = 'slice' in spec ? `slice ${spec.slice.output} ${spec.slice.from}..${spec.slice.to}` : format === 'text' ? 'textFile' : 'jsonFile';
    return this.builder.source<T>(format, this.splits(spec, index), label);
  }
}

/**
 * A batch job: the same RDDs and operators as a stream's interval, over existing objects; its
 * outputs are the `saveAs*File` and `collect` calls the build function makes.
 */
export class BatchJob {
  /** Tells a batch job from a streaming pipeline (`'stream'`) where a module may export either. */
  readonly kind = 'batch';
  /** The options given, with their defaults filled in. */
  readonly options: ResolvedOptions;
  /** Changes whenever the options or the build function's source change. */
  readonly fingerprint: string;

  /** As `defineBatch(options, build)`. */
  constructor(
    options: PipelineOptions,
    /** @internal The build function, which the runtime calls with a fresh context wherever it builds the plan. */
    readonly build: (sc: BatchContext) => void,
  ) {
    this.options = resolveOptions(options);
    this.fingerprint = shortHash(JSON.stringify([this.options, build.toString()]));
  }
}

/**
 * A batch job, to be the module's default export: `build` reads objects in the store (or a
 * stream's committed outputs, `slice`) and declares the job's outputs; it is called wherever the
 * job's plan is built (the driver and each task) and must build the same RDDs every time.
 * Spark: a batch application on a `SparkContext`. Of the options, `partitions`, `badRecords` and
 * `maxLineBytes` apply; there is no state to checkpoint.
 */
export function defineBatch(options: PipelineOptions, build: (sc: BatchContext) => void): BatchJob {
  return new BatchJob(options, build);
}

function resolveOptions(options: PipelineOptions): ResolvedOptions {
  if (!options || typeof options.name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(options.name)) {
    throw new Error(`pipeline name must be 1-64 letters, digits, '.', '_' or '-', got ${JSON.stringify(options?.name)}`);
  }
  const checkpointEvery = options.checkpointEvery ?? 10;
  if (!Number.isInteger(checkpointEvery) || checkpointEvery < 1) throw new RangeError(`checkpointEvery must be a whole number >= 1, got ${checkpointEvery}`);
  const badRecords = options.badRecords ?? 'fail';
  if (badRecords !== 'fail' && badRecords !== 'quarantine') throw new Error(`badRecords must be 'fail' or 'quarantine', got ${JSON.stringify(badRecords)}`);
  const maxLineBytes = options.maxLineBytes ?? 8 * 1024 * 1024;
  if (!Number.isInteger(maxLineBytes) || maxLineBytes < 1) throw new RangeError(`maxLineBytes must be a whole number >= 1, got ${maxLineBytes}`);
  return { name: options.name, partitions: checkPartitions(options.partitions ?? 4), checkpointEvery, badRecords, maxLineBytes };
}

function normalisePrefix(prefix: string): string {
  if (prefix.includes('..') || prefix.startsWith('/')) throw new Error(`source prefix ${JSON.stringify(prefix)} must be a relative path under incoming/`);
  return prefix;
}
