import type { PlanBuilder, Rdd } from '../rdd/rdd.ts';
import type { SplitRef } from '../rdd/plan.ts';
import { checkPartitions, validateOutputName } from '../rdd/rdd.ts';
import { functionHash } from '../util/hash.ts';
import { stateStream, type InitialState } from './state-stream.ts';
import { mapWithStateStream, type MapWithStateEntry, type MapWithStateSpec } from './map-with-state-stream.ts';
import { checkWindow, windowedStream } from './windowed-stream.ts';
import { reducedWindowedStream } from './reduced-windowed-stream.ts';
import type { RecordShape, Storable, Widened } from '../types.ts';

/**
 * What a stream needs while its interval's RDDs are being generated: the RDD of another stream
 * at this interval, or one persisted at an earlier interval.
 */
export interface Generation {
  readonly interval: number;
  readonly builder: PlanBuilder;
  rdd<T>(stream: DStream<T>): Rdd<T> | undefined;
  /** `stream`'s RDD at interval j (j <= this interval), as persisted; empty before interval 0. */
  stored<T>(stream: DStream<T>, j: number): Rdd<T>;
  sourceSplits(stream: DStream<unknown>): SplitRef[];
  /** The splits of store object `index` (StreamGraph.storeObjects) as pinned at interval 0; none at any other interval. */
  objectSplits(index: number): SplitRef[];
  /**
   * True where a state chain starts from its initial state rather than its RDD of the interval
   * before: at interval 0, and for an operator that an upgrade adds, at the upgrade's boundary.
   */
  startsHere(stream: DStream<unknown>): boolean;
}

export interface StreamOptions {
  /** In intervals: the stream has an RDD only at intervals k with (k + 1) % slide == 0. */
  slide: number;
  /** Materialised every interval because a later interval reads it (window inputs, state). */
  persisted?: boolean;
  /** State-like: also checkpointed to the durable tier every C intervals. */
  stateful?: boolean;
  /** Keyed streams whose stored RDDs are hash-partitioned over this many partitions. */
  keyedPartitions?: number;
  /**
   * Computed at every interval, even where a parent has no RDD (its compute then gets undefined
   * for that parent): a state chain carried across its parent's slide.
   */
  everyInterval?: boolean;
}

/** updateStateByKey's options besides the function. */
export interface StateOptions<K, S> {
  partitions?: number;
  /** The state before interval 0 (or before the upgrade that adds this operator). */
  initial?: InitialState<K, S>;
  /** The state's name across upgrades: `.name(name)`. */
  name?: string;
  /** At an upgrade, turns each state the old code kept into this code's state: for a changed state type. */
  migrate?: (old: any) => S;
}

export interface OutputOperation {
  stream: DStream<unknown>;
  name: string;
  format: 'text' | 'json' | 'collect';
  /** For collect outputs: what the driver does with the interval's records. */
  sink?: (records: unknown[], interval: number) => void | Promise<void>;
  /** Narrows the RDD before it is written (print keeps only what it shows). */
  prepare?: (rdd: Rdd<unknown>) => Rdd<unknown>;
}

/** The pipeline's graph: streams in construction order, which gives each a stable id. */
export class StreamGraph {
  readonly streams: DStream<unknown>[] = [];
  readonly sources: DStream<unknown>[] = [];
  readonly outputs: OutputOperation[] = [];
  /** Keys of the store objects the pipeline reads at interval 0 (initial states), in the order named. */
  readonly storeObjects: string[] = [];

  /** Partitions of keyed operators that are not given a number of their own. */
  constructor(readonly defaultPartitions: number) {}

  register(stream: DStream<unknown>): string {
    this.streams.push(stream);
    return `d${this.streams.length - 1}`;
  }

  addOutput(output: OutputOperation): void {
    if (output.format !== 'collect') validateOutputName(output.name);
    if (this.outputs.some((o) => o.name === output.name)) {
      throw new Error(`output name ${JSON.stringify(output.name)} is used by two outputs; each output needs its own name`);
    }
    this.outputs.push(output);
  }

  /** How many intervals back any stream reads a persisted RDD: what recovery and GC must keep. */
  lookback(): number {
    return Math.max(0, ...this.streams.map((s) => s.lookback));
  }

  describe(): unknown[] {
    // A state's name joins its description only when given, so unnamed pipelines keep their fingerprint.
    return this.streams.map((s) => [s.id, s.kind, s.parents.map((p) => p.id), s.params, ...(s.stateName === undefined ? [] : [s.stateName])]);
  }

  /** The streams an upgrade carries: state, and the buffers windows read across intervals. */
  carriedStreams(): DStream<unknown>[] {
    const carried = this.streams.filter((s) => s.persisted && (s.stateful || s.buffer));
    const seen = new Map<string, DStream<unknown>>();
    for (const s of carried) {
      const other = seen.get(s.stateKey);
      if (other) throw new Error(`two operators' state is named ${JSON.stringify(s.stateKey)} (${other.kind} ${other.id} and ${s.kind} ${s.id}): each state needs its own name`);
      seen.set(s.stateKey, s);
    }
    return carried;
  }
}

type Compute<T> = (gen: Generation, parents: Rdd<any>[]) => Rdd<T> | undefined;

/**
 * An operator's own partition count (Spark's numPartitions) as its identity holds it, checked when
 * the pipeline is defined rather than when an interval is planned; null for the pipeline's default.
 */
const partitionsParam = (partitions: number | undefined) => (partitions === undefined ? null : checkPartitions(partitions));

/** What a state's name may be: as a pipeline's name. */
export const STATE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

const sum = (a: number, b: number) => a + b;
const minus = (a: number, b: number) => a - b;

/**
 * A discretized stream: a sequence of RDDs, one per interval (or per slide). Transformations build
 * new streams; nothing runs until the driver generates an interval's jobs from the graph.
 * Spark: `DStream`, with durations counted in whole intervals.
 *
 * Each operator says whether it is narrow (each partition computed from one partition of its
 * parent, in the same task) or a shuffle (records move between tasks by key: a new stage). Keyed
 * operators take `partitions`, Spark's `numPartitions`; by default the pipeline's `partitions`.
 */
export class DStream<T> {
  /** @internal The stream's id in the graph (`d<n>`, in construction order), as lineage and `print` name it. */
  readonly id: string;
  /** In intervals: the stream has an RDD only at intervals k with (k + 1) % slide == 0; 1 unless it is or derives from a window. */
  readonly slide: number;
  /** @internal Materialised every interval because a later interval reads it. */
  readonly persisted: boolean;
  /** @internal State-like: checkpointed to the durable tier every `checkpointEvery` intervals. */
  readonly stateful: boolean;
  /** @internal For a persisted keyed stream: the hash partitions its stored RDDs are placed over. */
  readonly keyedPartitions?: number;
  /** @internal Computed at every interval, even between its parent's slides (a state chain). */
  readonly everyInterval: boolean;
  /** @internal How many intervals back this stream reads persisted RDDs. */
  lookback = 0;
  /**
   * @internal Read across intervals without being state: a window's buffer of its parent's RDDs. With the
   * stateful streams, what an upgrade carries from the old code to the new (see upgrade.ts).
   */
  buffer = false;
  /** @internal The name its state goes by across upgrades (`.name()`); undefined: its id, today's identity. */
  stateName?: string;
  /** @internal Applied to each record of state carried from the old code at an upgrade (the user's `migrate`). */
  migrateCarried?: (record: unknown) => unknown;
  /** @internal The streams holding this operator's state, and the suffix each one's name gets: what `.name()` names. */
  stateParts: [stream: DStream<unknown>, suffix: string][] = [];
  /** Persisted copies of this stream, by keyed partition count, shared by every reader. */
  private readonly persistedCopies = new Map<number | undefined, DStream<T>>();

  /** @internal Streams are made by a context's sources and by operators, never by users. */
  constructor(
    /** @internal The pipeline's graph, which registers the stream. */
    readonly graph: StreamGraph,
    /** @internal The operator that made the stream (`map`, `window`...), part of its identity. */
    readonly kind: string,
    /** @internal The streams it is computed from. */
    readonly parents: DStream<any>[],
    /** @internal What identifies the operator besides its kind: function hashes, sizes. */
    readonly params: unknown,
    /** @internal Builds the stream's RDD at an interval from its parents' (undefined: none there). */
    readonly computeRdd: Compute<T>,
    options: StreamOptions,
  ) {
    this.slide = options.slide;
    this.persisted = options.persisted ?? false;
    this.stateful = options.stateful ?? false;
    this.keyedPartitions = options.keyedPartitions;
    this.everyInterval = options.everyInterval ?? false;
    this.id = graph.register(this as DStream<unknown>);
  }

  /** A stream computed per interval from this one's RDD (and others'), sharing their slide. */
  private derive<U>(kind: string, params: unknown, others: DStream<any>[], f: (...rdds: Rdd<any>[]) => Rdd<U>): DStream<U> {
    return this.deriveWithInterval(kind, params, others, (_interval, ...rdds) => f(...rdds));
  }

  /** As derive, for functions that also take the interval. */
  private deriveWithInterval<U>(kind: string, params: unknown, others: DStream<any>[], f: (interval: number, ...rdds: Rdd<any>[]) => Rdd<U>): DStream<U> {
    for (const other of others) {
      if (other.graph !== this.graph) throw new Error(`${kind}: both streams must belong to the same pipeline`);
      if (other.slide !== this.slide) {
        throw new Error(`${kind}: streams slide every ${this.slide} and ${other.slide} intervals; they must slide together`);
      }
    }
    return new DStream<U>(this.graph, kind, [this, ...others], params, (gen, rdds) => f(gen.interval, ...(rdds as Rdd<any>[])), { slide: this.slide });
  }

  /**
   * Names this operator's state (updateStateByKey, mapWithState, a window), so that an upgrade
   * carries it to the operator of the same name in the new code wherever the new code builds it.
   * Unnamed state goes by its operator's id, which changes when operators are added before it.
   * No Spark counterpart (Spark's checkpoints are tied to the code; Flink's operator `uid` is the
   * nearest). Narrow: it names this stream and builds nothing.
   */
  name(name: string): this {
    if (!STATE_NAME.test(name) || /^d\d+$/.test(name)) {
      throw new Error(`state name must be 1-64 letters, digits, '.', '_' or '-', and not an operator id like d3, got ${JSON.stringify(name)}`);
    }
    if (this.stateParts.length === 0) {
      throw new Error(`name(${JSON.stringify(name)}): ${this.kind} ${this.id} holds no state; name the result of updateStateByKey, mapWithState or a window operator`);
    }
    for (const [stream, suffix] of this.stateParts) {
      const full = name + suffix;
      if (stream.stateName !== undefined && stream.stateName !== full) {
        throw new Error(`the state of ${stream.kind} ${stream.id} is named ${JSON.stringify(stream.stateName)} already (windows over one stream share its buffer); it cannot also be ${JSON.stringify(full)}`);
      }
      stream.stateName = full;
    }
    return this;
  }

  /** @internal The name this stream's state goes by across upgrades. */
  get stateKey(): string {
    return this.stateName ?? this.id;
  }

  /** Gives `result` the state of `from` to name: operators built from a stateful one. */
  private withStateOf<U>(result: DStream<U>, from: DStream<unknown>): DStream<U> {
    if (result.stateParts.length === 0) result.stateParts = from.stateParts;
    return result;
  }

  /**
   * Each record turned into `f(record)`. Spark: `DStream.map`. Narrow.
   * Records are what the codec stores (see Storable); an array literal returned is inferred as a tuple, so `[k, v]` is a pair.
   */
  map<U extends RecordShape>(f: (record: T) => U & Storable<U>): DStream<U> {
    return this.mapRecords(f);
  }

  /** Each record turned into the records `f` yields for it (none, one or more). Spark: `DStream.flatMap`. Narrow. */
  flatMap<U extends RecordShape>(f: (record: T) => Iterable<U & Storable<U>>): DStream<U> {
    return this.flatMapRecords(f);
  }

  /**
   * map and flatMap for the engine's own functions: their record types are type parameters, which
   * Storable cannot check, and they only rearrange records checked where the user's functions made them.
   * @internal
   */
  mapRecords<U>(f: (record: T) => U): DStream<U> {
    return this.derive('map', functionHash(f), [], (r) => r.mapRecords(f));
  }

  /** @internal flatMap for the engine's own functions, as mapRecords. */
  flatMapRecords<U>(f: (record: T) => Iterable<U>): DStream<U> {
    return this.derive('flatMap', functionHash(f), [], (r) => r.flatMapRecords(f));
  }

  /** The records for which `f` returns true. Spark: `DStream.filter`. Narrow. */
  filter(f: (record: T) => boolean): DStream<T> {
    return this.derive('filter', functionHash(f), [], (r) => r.filter(f));
  }

  /**
   * Each partition's records at once, as an array, with the partition's index; what `f` yields
   * replaces them. Spark: `DStream.mapPartitions`. Narrow.
   */
  mapPartitions<U>(f: (records: T[], partition: number) => Iterable<U & Storable<U>>): DStream<U> {
    return this.derive('mapPartitions', functionHash(f), [], (r) => r.mapPartitions<U>(f));
  }

  /**
   * The records of this stream and of `others`, per interval; all must slide together. Spark:
   * `DStream.union` (and `StreamingContext.union`). Narrow: the result has the partitions of all.
   */
  union(...others: DStream<T>[]): DStream<T> {
    return this.derive('union', null, others, (first, ...rest) => first.union(...rest));
  }

  /** The same records spread evenly over `partitions`, round-robin and deterministically. Spark: `DStream.repartition`. A shuffle. */
  repartition(partitions: number): DStream<T> {
    checkPartitions(partitions);
    return this.derive('repartition', partitions, [], (r) => r.repartition(partitions));
  }

  /**
   * Any RDD-to-RDD function, run per interval with the interval's number; it must build its
   * result from `rdd` deterministically. Spark: `DStream.transform`. Narrow or shuffle as `f`'s operators are.
   */
  transform<U>(f: (rdd: Rdd<T>, interval: number) => Rdd<U>): DStream<U> {
    return this.deriveWithInterval('transform', functionHash(f), [], (interval, rdd) => f(rdd as Rdd<T>, interval));
  }

  /**
   * Any function of this stream's RDD and another's, per interval (Spark: `DStream.transformWith`); the two
   * must slide together, and `f` must build its result from them deterministically. Narrow or shuffle as `f`'s operators are.
   */
  transformWith<U, V>(other: DStream<U>, f: (rdd: Rdd<T>, other: Rdd<U>, interval: number) => Rdd<V>): DStream<V> {
    return this.deriveWithInterval('transformWith', functionHash(f), [other], (interval, a, b) => f(a as Rdd<T>, b as Rdd<U>, interval));
  }

  /** Each partition's records as one array record. Spark: `DStream.glom`. Narrow. */
  glom(): DStream<T[]> {
    return this.derive('glom', null, [], (r) => r.mapPartitions((records) => [records]));
  }

  /**
   * One record per interval: how many records the interval had, 0 included. Spark: `DStream.count`.
   * A small shuffle: one count per partition, gathered into one partition.
   */
  count(): DStream<number> {
    return this.derive('count', null, [], (r) => r.count());
  }

  /**
   * Per interval, `[record, count]` for each distinct record (compared by value). Spark:
   * `DStream.countByValue`. A shuffle, combined on the map side first.
   */
  countByValue(partitions?: number): DStream<[T, number]> {
    return this.derive('countByValue', partitionsParam(partitions), [], (r) => r.countByValue(partitions));
  }

  /**
   * At most one record per interval: its records folded with `f` (none for an empty interval);
   * `f` should be associative and commutative, as in Spark. Spark: `DStream.reduce`. A small
   * shuffle: each partition is folded, then the partial results in one partition.
   */
  reduce(f: (a: T, b: T) => T): DStream<T> {
    return this.derive('reduce', functionHash(f), [], (r) => r.reduce(f));
  }

  // ---- key/value pairs ----

  /** The keys of pairs. Spark: `map(_._1)` (RDD's `keys`; DStream has none). Narrow. */
  keys<K, V>(this: DStream<readonly [K, V]>): DStream<K> {
    return this.derive('keys', null, [], (r) => r.keys());
  }

  /** The values of pairs. Spark: `map(_._2)` (RDD's `values`; DStream has none). Narrow. */
  values<K, V>(this: DStream<readonly [K, V]>): DStream<V> {
    return this.derive('values', null, [], (r) => r.values());
  }

  /** Pairs `[key, f(value)]`. Spark: `DStream.mapValues`. Narrow; keeps the pairs' placement by key. */
  mapValues<K, V, U extends RecordShape>(this: DStream<readonly [K, V]>, f: (value: V) => U & Storable<U>): DStream<[K, U]> {
    return this.derive('mapValues', functionHash(f), [], (r) => r.mapValues<K, V, U>(f));
  }

  /** A pair `[key, u]` for each `u` that `f(value)` yields. Spark: `DStream.flatMapValues`. Narrow; keeps the placement by key. */
  flatMapValues<K, V, U extends RecordShape>(this: DStream<readonly [K, V]>, f: (value: V) => Iterable<U & Storable<U>>): DStream<[K, U]> {
    return this.derive('flatMapValues', functionHash(f), [], (r) => r.flatMapValues<K, V, U>(f));
  }

  /**
   * Per interval, each key's values combined with `f` (associative and commutative, as in Spark):
   * one pair per key. Spark: `DStream.reduceByKey`. A shuffle over `partitions`, combined on the
   * map side first. Values of `as const` pairs are widened (`1` to `number`) for `f`, which combines them into new values.
   */
  reduceByKey<K, V>(this: DStream<readonly [K, V]>, f: (a: Widened<V>, b: Widened<V>) => Widened<V>, partitions?: number): DStream<[K, Widened<V>]> {
    return this.derive('reduceByKey', [functionHash(f), partitionsParam(partitions)], [], (r) => r.reduceByKey(f, partitions));
  }

  /** reduceByKey over values reduceByKey has already widened: what the windowed forms reduce again. */
  private reducedByKey<K, W>(this: DStream<readonly [K, W]>, f: (a: W, b: W) => W, partitions: number): DStream<[K, W]> {
    return this.derive('reduceByKey', [functionHash(f), partitions], [], (r: Rdd<readonly [K, W]>) => r.combineByKey((v) => v, f, f, partitions));
  }

  /**
   * Per interval, `[key, values]` for each key, values in arrival order (map partition, then
   * position). Spark: `DStream.groupByKey`. A shuffle over `partitions`.
   */
  groupByKey<K, V>(this: DStream<readonly [K, V]>, partitions?: number): DStream<[K, V[]]> {
    return this.derive('groupByKey', partitionsParam(partitions), [], (r) => r.groupByKey(partitions));
  }

  /**
   * Per interval, each key's values aggregated into a combiner: `createCombiner` makes one from a
   * key's first value in a partition, `mergeValue` adds a value to it, `mergeCombiners` merges
   * two partitions' combiners. Spark: `DStream.combineByKey`. A shuffle over `partitions`,
   * combined on the map side first.
   */
  combineByKey<K, V, C extends RecordShape>(
    this: DStream<readonly [K, V]>,
    createCombiner: (value: V) => C & Storable<C>,
    mergeValue: (combiner: C, value: V) => C,
    mergeCombiners: (a: C, b: C) => C,
    partitions?: number,
  ): DStream<[K, C]> {
    const params = [createCombiner, mergeValue, mergeCombiners].map(functionHash).concat(String(partitionsParam(partitions) ?? ''));
    return this.derive('combineByKey', params, [], (r) => r.combineByKey(createCombiner, mergeValue, mergeCombiners, partitions));
  }

  /**
   * Per interval, `[key, [v, w]]` for every pair of values of a key present in both streams,
   * which must slide together. Spark: `DStream.join`. A shuffle over `partitions` (cogroup); a
   * side already placed by key over as many partitions (state) is not moved.
   */
  join<K, V, W>(this: DStream<readonly [K, V]>, other: DStream<readonly [K, W]>, partitions?: number): DStream<[K, [V, W]]> {
    return this.derive('join', partitionsParam(partitions), [other], (a, b) => a.join(b, partitions));
  }

  /** As join, also keeping this stream's keys absent from `other`, with `null` for `w`. Spark: `DStream.leftOuterJoin`. A shuffle, as join. */
  leftOuterJoin<K, V, W>(this: DStream<readonly [K, V]>, other: DStream<readonly [K, W]>, partitions?: number): DStream<[K, [V, W | null]]> {
    return this.derive('leftOuterJoin', partitionsParam(partitions), [other], (a, b) => a.leftOuterJoin(b, partitions));
  }

  /** As join, also keeping `other`'s keys absent from this stream, with `null` for `v`. Spark: `DStream.rightOuterJoin`. A shuffle, as join. */
  rightOuterJoin<K, V, W>(this: DStream<readonly [K, V]>, other: DStream<readonly [K, W]>, partitions?: number): DStream<[K, [V | null, W]]> {
    return this.derive('rightOuterJoin', partitionsParam(partitions), [other], (a, b) => a.rightOuterJoin(b, partitions));
  }

  /** As join, also keeping the keys of either side absent from the other, with `null` for the missing value. Spark: `DStream.fullOuterJoin`. A shuffle, as join. */
  fullOuterJoin<K, V, W>(this: DStream<readonly [K, V]>, other: DStream<readonly [K, W]>, partitions?: number): DStream<[K, [V | null, W | null]]> {
    return this.derive('fullOuterJoin', partitionsParam(partitions), [other], (a, b) => a.fullOuterJoin(b, partitions));
  }

  /**
   * Per interval, `[key, [valuesOfThis, valuesOfOthers0, ...]]` for each key in any of the
   * streams, which must slide together. Spark: `DStream.cogroup` (with one other stream; here any
   * number). A shuffle over `partitions`; a side already placed by key over as many partitions
   * (state) is not moved.
   */
  cogroup<K>(this: DStream<readonly [K, unknown]>, others: DStream<readonly [K, unknown]>[], partitions?: number): DStream<[K, unknown[][]]> {
    return this.derive('cogroup', partitionsParam(partitions), others, (first, ...rest) => first.cogroup(rest, partitions));
  }

  // ---- windows, measured in whole intervals ----

  /**
   * Every `slide` intervals, the records of the last `length` intervals (fewer at the start).
   * The window ending at interval k exists when (k + 1) % slide == 0; `length` and `slide` must be
   * multiples of this stream's slide. Spark: `DStream.window(windowDuration, slideDuration)`, in
   * intervals; `slide` defaults to 1 interval where Spark's defaults to the parent's slide.
   * Narrow: the union of this stream's RDDs of those intervals, each computed once and stored.
   */
  window(length: number, slide = 1): DStream<T> {
    checkWindow(length, slide, this.slide);
    return windowedStream(this.persist(), length, slide);
  }

  /**
   * One record per window (as `window`): how many records it holds, 0 included. Spark:
   * `DStream.countByWindow`, computed without an inverse. A small shuffle, as count.
   */
  countByWindow(length: number, slide = 1): DStream<number> {
    const windowed = this.window(length, slide);
    return this.withStateOf(windowed.count(), windowed);
  }

  /**
   * At most one record per window (as `window`): its records folded with `f` (none for an empty
   * window), each interval reduced once, then the window's results. Spark: `DStream.reduceByWindow`
   * without an inverse. Small shuffles, as reduce.
   */
  reduceByWindow(f: (a: T, b: T) => T, length: number, slide = 1): DStream<T> {
    const windowed = this.reduce(f).window(length, slide);
    return this.withStateOf(windowed.reduce(f), windowed);
  }

  /**
   * Per-key reduction over a sliding window (Spark's reduceByKeyAndWindow). With `inverse`, each
   * window is computed from the previous one by adding the intervals that entered and removing
   * those that left, which costs the slide rather than the length; it gives the same result as
   * without, provided `inverse` undoes `f`. A key whose every value has left the window is dropped.
   * `filter` keeps only the pairs it accepts. With `inverse` it is Spark's `filterFunc`: a key it
   * refuses is also pruned from the window's state, so later windows are computed without it and
   * may differ from the plain form's, exactly as Spark's do (see reduced-windowed-stream.ts).
   * `partitions` is Spark's `numPartitions`. Windows are as `window`'s; `slide` defaults to 1 interval.
   * A shuffle: each interval is reduced by key once; without `inverse` the window's results are
   * reduced again each slide (a second shuffle), with it the previous window and the intervals
   * entering and leaving are already placed by key, and the window is state, checkpointed as state is.
   */
  reduceByKeyAndWindow<K, V>(
    this: DStream<readonly [K, V]>,
    f: (a: Widened<V>, b: Widened<V>) => Widened<V>,
    length: number,
    slide = 1,
    options: { inverse?: (a: Widened<V>, b: Widened<V>) => Widened<V>; partitions?: number; filter?: (pair: [K, Widened<V>]) => boolean } = {},
  ): DStream<[K, Widened<V>]> {
    checkWindow(length, slide, this.slide);
    const partitions = checkPartitions(options.partitions ?? this.graph.defaultPartitions);
    const { inverse, filter } = options;
    const perInterval = this.reduceByKey(f, partitions);
    if (!inverse) {
      const window = perInterval.window(length, slide);
      const windowed = this.withStateOf(window.reducedByKey(f, partitions), window);
      return filter ? this.withStateOf(windowed.filter(filter), window) : windowed;
    }
    return reducedWindowedStream(perInterval.persist(partitions), f, inverse, length, slide, partitions, filter);
  }

  /**
   * Every `slide` intervals, each key's values over the last `length` intervals (windows as
   * `window`'s). Spark: `DStream.groupByKeyAndWindow`, `partitions` its numPartitions. A shuffle
   * of the whole window at each slide.
   */
  groupByKeyAndWindow<K, V>(this: DStream<readonly [K, V]>, length: number, slide = 1, partitions?: number): DStream<[K, V[]]> {
    const windowed = this.window(length, slide);
    return this.withStateOf(windowed.groupByKey(partitions), windowed);
  }

  /**
   * Every `slide` intervals, `[record, count]` for each record occurring over the last `length`
   * intervals (windows as `window`'s). Spark: `DStream.countByValueAndWindow`, `partitions` its
   * numPartitions. A shuffle; computed with an inverse, as reduceByKeyAndWindow, so its cost is the slide's.
   */
  countByValueAndWindow(length: number, slide = 1, partitions?: number): DStream<[T, number]> {
    return this.mapRecords((x): [T, number] => [x, 1]).reduceByKeyAndWindow(sum, length, slide, { inverse: minus, partitions });
  }

  // ---- state ----

  /**
   * Running state per key: `update(newValues, previousState)` is called at every RDD of this
   * stream (every interval, or every slide of a window) for every key that has state or new
   * values; returning undefined removes the key. `options` is the number of partitions (Spark's
   * numPartitions), or `{ partitions, initial }` with `initial` the state before interval 0
   * (Spark's initialRDD): `[key, state]` pairs, or a JSON-lines object of them in the store
   * (`ctx.jsonFile(key)`); `name` names the state across upgrades (as `.name()`), and `migrate`
   * turns a state the old code kept into this code's at an upgrade. `update` gets `[]` for a key
   * with state and no new values, and `undefined` for a key without state. Between the slides of
   * a windowed stream the state is carried unchanged, with no call. See state-stream.ts.
   * Spark: `DStream.updateStateByKey` (undefined is Spark's `None`). A shuffle of each RDD's pairs
   * to the state's partitions; the state stays in place, and is checkpointed every
   * `checkpointEvery` intervals.
   */
  updateStateByKey<K, V, S extends RecordShape>(
    this: DStream<readonly [K, V]>,
    update: (values: V[], state: S | undefined) => (S & Storable<S>) | undefined,
    options?: number | StateOptions<K, S>,
  ): DStream<[K, S]> {
    const { partitions, initial, name, migrate }: StateOptions<K, S> = typeof options === 'number' || options === undefined ? { partitions: options } : options;
    const state = stateStream(this, update, checkPartitions(partitions ?? this.graph.defaultPartitions), initial, migrate);
    return name === undefined ? state : state.name(name);
  }

  /**
   * Per-key state with a function called once per new value (in arrival order) that may emit a
   * record; a key with no value for `timeout` intervals gets one last call with `isTimingOut()`
   * and is removed. `.stateSnapshots()` on the result gives the state itself. See map-with-state-stream.ts.
   * Spark: `DStream.mapWithState(StateSpec)`, except that `timeout` counts intervals, not a
   * duration, and a call returning undefined emits nothing (Spark emits every return value).
   * A shuffle of each RDD's pairs to the state's partitions; the state stays in place, and is
   * checkpointed every `checkpointEvery` intervals.
   */
  mapWithState<K, V, S extends RecordShape, R extends RecordShape | undefined>(
    this: DStream<readonly [K, V]>,
    spec: MapWithStateSpec<K, V, S, R>,
  ): MapWithStateStream<K, S, Exclude<R, undefined>> {
    const stream = new MapWithStateStream(mapWithStateStream(this, spec, checkPartitions(spec.partitions ?? this.graph.defaultPartitions)));
    return spec.name === undefined ? stream : stream.name(spec.name);
  }

  /**
   * Materialises each interval's RDD once (in the cache tier) for every consumer, instead of
   * recomputing it from its sources for each: worth it when two outputs share a costly stream.
   * Spark: `DStream.cache` / `persist`. Not a shuffle.
   */
  cache(): DStream<T> {
    return this.persist();
  }

  // ---- outputs: records typed as what cannot be stored (a Map) fail to compile ----

  /**
   * Each interval's records as text lines under `output/<name>/interval=<k>/`: strings as they
   * are, anything else as JSON; committed with the interval, and nothing at an interval where the
   * stream has no RDD. Spark: `DStream.saveAsTextFiles`, with an output name (1-128 letters,
   * digits, '.', '_' or '-', one per output) rather than a path prefix.
   */
  saveAsTextFiles<R extends T>(this: DStream<R & Storable<R>>, name: string): void {
    this.graph.addOutput({ stream: this as DStream<unknown>, name, format: 'text' });
  }

  /**
   * Each interval's records as JSON lines under `output/<name>/interval=<k>/`, as saveAsTextFiles
   * otherwise; what `BatchContext.slice` reads back. No Spark counterpart (Spark has `saveAsObjectFiles`).
   */
  saveAsJsonFiles<R extends T>(this: DStream<R & Storable<R>>, name: string): void {
    this.graph.addOutput({ stream: this as DStream<unknown>, name, format: 'json' });
  }

  /**
   * A user sink, called in the driver with each interval's records (in partition order) once the
   * interval's tasks are done. At least once: after a driver crash it may be called again for the
   * same interval, so make it idempotent (key writes by interval).
   * Spark: `DStream.foreachRDD`, but `sink` gets the records collected to the driver, not an RDD.
   */
  foreachRDD<R extends T>(this: DStream<R & Storable<R>>, sink: (records: T[], interval: number) => void | Promise<void>): void {
    this.graph.addOutput({
      stream: this as DStream<unknown>,
      name: `sink-${this.id}-${this.graph.outputs.length}`,
      format: 'collect',
      sink: sink as OutputOperation['sink'],
    });
  }

  /** Prints the first `count` records of each interval on the driver's console. Spark: `DStream.print`. */
  print(count = 10): void {
    this.graph.addOutput({
      stream: this as DStream<unknown>,
      name: `print-${this.id}-${this.graph.outputs.length}`,
      format: 'collect',
      prepare: (rdd) => rdd.mapPartitions((records) => records.slice(0, count)),
      sink: (records, interval) => {
        const lines = records.slice(0, count).map((r) => (typeof r === 'string' ? r : JSON.stringify(r)));
        console.log(`--- interval ${interval} (${this.kind} ${this.id}) ---\n${lines.join('\n')}${records.length > count ? '\n...' : ''}`);
      },
    });
  }

  /**
   * The same records, materialised every interval so later intervals can read them; keyed
   * streams are first placed by the hash partitioner so state and windows join without a shuffle.
   */
  private persist(keyedPartitions?: number): DStream<T> {
    const known = this.persistedCopies.get(keyedPartitions);
    if (known) return known;
    const placed =
      keyedPartitions === undefined
        ? this
        : (this as unknown as DStream<[unknown, unknown]>).derive('partitionBy', keyedPartitions, [], (r) => r.partitionBy(keyedPartitions));
    const copy = new DStream<T>(this.graph, 'persist', [placed], null, (_gen, [rdd]) => rdd as Rdd<T>, {
      slide: this.slide,
      persisted: true,
      keyedPartitions,
    });
    this.persistedCopies.set(keyedPartitions, copy);
    return copy;
  }
}

/**
 * What mapWithState's function emitted, with the state itself a call away (`stateSnapshots`).
 * Spark: `MapWithStateDStream`.
 */
export class MapWithStateStream<K, S, U> extends DStream<U> {
  /** @internal Made by `DStream.mapWithState`. */
  constructor(private readonly records: DStream<[K, MapWithStateEntry<S, U>]>) {
    super(records.graph, 'mappedValues', [records], null, (_gen, [rdd]) => (rdd as Rdd<[K, MapWithStateEntry<S, U>]>).flatMapRecords(([, [, , , emitted]]) => emitted), {
      slide: records.slide,
    });
    this.stateParts = records.stateParts;
  }

  /** Every key's current state as `[key, state]`, at each of the stream's slides. Spark: `MapWithStateDStream.stateSnapshots`. Narrow. */
  stateSnapshots(): DStream<[K, S]> {
    const snapshots = this.records.flatMapRecords(([key, [hasState, state]]) => (hasState === 1 ? [[key, state as S] as [K, S]] : []));
    snapshots.stateParts = this.stateParts;
    return snapshots;
  }
}

