import type { PlanNode, SourceFormat, SplitRef } from './plan.ts';
import { stableHash } from '../codec/stable-hash.ts';
import { seededRandom } from '../util/seeded-random.ts';
import {
  asPair,
  filterOperator,
  flatMapOperator,
  mapOperator,
  mapPartitionsOperator,
  type Aggregator,
  type NarrowOperator,
} from './operators.ts';
import { functionHash } from '../util/hash.ts';
import type { RecordShape, Storable, Widened } from '../types.ts';
import type { Comparator } from './order.ts';
import { sortBy, sortByKey, type SortOptions } from './sort.ts';
import { take, takeOrdered, top } from './take.ts';
import { cartesian, coalesce, zipWithIndex } from './positional.ts';
import { foreachPartition, type PartitionEffect } from './effects.ts';

/**
 * Where a job's result goes: files under `output/<name>/` written by the tasks (`text`, `json`),
 * or records brought back to the driver (`collect`) for a sink, `print`, or a batch result, or
 * records handed to a function on the workers (`foreach`: foreachPartition), nothing written.
 */
export interface OutputSpec {
  /** Unique within the plan; names the stage and, for files, the output folder. */
  name: string;
  format: 'text' | 'json' | 'collect' | 'foreach';
  rdd: Rdd<unknown>;
}

/** An RDD materialised for later scopes (window inputs, state): written to `location`. */
export interface PersistSpec {
  rdd: Rdd<unknown>;
  location: string;
  tier: 'cache' | 'checkpoint';
}

/** How a node computes inside a task; kept beside the serialisable node, never serialised. */
export interface NodeBehaviour {
  operator?: NarrowOperator;
  aggregator?: Aggregator;
  /** For a narrow node with a side input: its operator, made from the side input's records. */
  withSide?: (side: unknown[]) => NarrowOperator;
  /** For a state fold (a cogroup with `fold`): a key, its prior state (undefined if none) and this batch's values, to its records. */
  fold?: (key: unknown, prior: unknown, values: unknown[]) => Iterable<unknown>;
  /** For a foreachPartition output: what the task calls with the partition's records. */
  foreach?: PartitionEffect<unknown>;
  /** The operator is applied record by record, so an empty partition gives an empty one (see knownEmptyRdds). */
  keepsEmpty?: boolean;
}

type NodeSpec = PlanNode extends infer N ? (N extends PlanNode ? Omit<N, 'id' | 'label'> & { label: string } : never) : never;

/**
 * Collects the RDDs of one scope (an interval, or a batch job). Ids are given in creation order,
 * so the same pipeline code over the same inputs builds the same DAG with the same ids, in the
 * driver and again in every task.
 */
export class PlanBuilder {
  readonly rdds = new Map<string, Rdd<unknown>>();
  readonly outputs: OutputSpec[] = [];
  readonly persists: PersistSpec[] = [];
  /** Prefix for labels: which stream operator is being expanded. */
  origin = '';
  private seq = 0;

  constructor(readonly defaultPartitions: number) {}

  addOutput(rdd: Rdd<unknown>, name: string, format: OutputSpec['format']): void {
    validateOutputName(name);
    if (this.outputs.some((o) => o.name === name)) throw new Error(`output name ${JSON.stringify(name)} is used twice`);
    this.outputs.push({ rdd, name, format });
  }

  addPersist(rdd: Rdd<unknown>, location: string, tier: PersistSpec['tier']): void {
    this.persists.push({ rdd, location, tier });
  }

  add<T>(spec: NodeSpec, behaviour: NodeBehaviour = {}): Rdd<T> {
    const id = `r${this.seq++}`;
    const label = this.origin ? `${spec.label} @${this.origin}` : spec.label;
    const rdd = new Rdd<T>(this, { ...spec, id, label } as PlanNode, behaviour);
    this.rdds.set(id, rdd as Rdd<unknown>);
    return rdd;
  }

  source<T>(format: SourceFormat, splits: SplitRef[], label: string): Rdd<T> {
    return this.add<T>({ kind: 'source', format, splits, partitions: splits.length, label });
  }

  /** Records given in the program itself, `partitions` slices of them. */
  values<T>(data: readonly T[], partitions = 1): Rdd<T> {
    const n = Math.max(1, Math.min(partitions, data.length || 1));
    const slices: T[][] = Array.from({ length: n }, (_, i) =>
      data.slice(Math.floor((i * data.length) / n), Math.floor(((i + 1) * data.length) / n)),
    );
    return this.add<T>({ kind: 'values', data: slices, partitions: n, label: 'values' });
  }

  stored<T>(location: string, tier: 'cache' | 'checkpoint', partitions: number, hashPartitioned: boolean, label: string): Rdd<T> {
    return this.add<T>({ kind: 'stored', location, tier, partitions, hashPartitioned, label });
  }

  empty<T>(): Rdd<T> {
    return this.add<T>({ kind: 'values', data: [], partitions: 0, label: 'empty' });
  }

  /** No records, but placed as if by the hash partitioner: joins with keyed data without a shuffle. */
  emptyPartitioned<T>(partitions: number): Rdd<T> {
    const data = Array.from({ length: partitions }, () => []);
    return this.add<T>({ kind: 'values', data, partitions, hashPartitioned: true, label: 'empty' });
  }

  get(id: string): Rdd<unknown> {
    const rdd = this.rdds.get(id);
    if (!rdd) throw new Error(`no RDD ${id} in this plan`);
    return rdd;
  }

  plan(): PlanNode[] {
    return [...this.rdds.values()].map((r) => r.node);
  }
}

const sum = (a: number, b: number) => a + b;

/**
 * A partitioned, immutable dataset, described lazily: transformations add nodes to the plan and
 * nothing runs until a job computes it. Pairs are two-element arrays `[key, value]`.
 * User functions must be deterministic: the same input gives the same output, with no clock,
 * randomness or outside state, because any partition may be computed more than once.
 * Spark: `RDD` (and `PairRDDFunctions`); Spark's actions are outputs here (`collect`, `saveAs*File`)
 * or transformations giving a small RDD (`count`, `take`...).
 *
 * Each operator says whether it is narrow (each partition computed from one partition of its
 * parent, in the same task) or a shuffle (records move between tasks by key: a new stage). Keyed
 * operators take `partitions`, Spark's `numPartitions`; by default the pipeline's `partitions`.
 */
export class Rdd<T> {
  /** @internal RDDs are made by sources and operators, which add them to the plan being built. */
  constructor(
    /** @internal The plan the RDD belongs to. */
    readonly builder: PlanBuilder,
    /** @internal Its serialisable node in the plan. */
    readonly node: PlanNode,
    /** @internal How a task computes it: its operator or aggregator, never serialised. */
    readonly behaviour: NodeBehaviour,
  ) {}

  /** @internal Its id in the plan (`r<n>`, in creation order). */
  get id(): string {
    return this.node.id;
  }

  /** How many partitions it has: how many tasks compute it. Spark: `RDD.getNumPartitions`. */
  get partitions(): number {
    return this.node.partitions;
  }

  /** `operator` is one of the record-by-record ones (map, flatMap, filter) or a partition function (mapPartitions). */
  private narrow<U>(label: string, fn: Function, operator: NarrowOperator, keepsPartitioning = false, recordByRecord = true): Rdd<U> {
    return this.builder.add<U>(
      {
        kind: 'narrow',
        parent: this.id,
        fn: `${label}:${functionHash(fn)}`,
        partitions: this.partitions,
        hashPartitioned: keepsPartitioning && this.node.hashPartitioned,
        label,
      },
      { operator, keepsEmpty: recordByRecord },
    );
  }

  /**
   * Each record turned into `f(record)`. Spark: `RDD.map`. Narrow.
   * Records are what the codec stores (see Storable); an array literal returned is inferred as a tuple, so `[k, v]` is a pair.
   */
  map<U extends RecordShape>(f: (record: T) => U & Storable<U>): Rdd<U> {
    return this.mapRecords(f);
  }

  /** Each record turned into the records `f` yields for it (none, one or more). Spark: `RDD.flatMap`. Narrow. */
  flatMap<U extends RecordShape>(f: (record: T) => Iterable<U & Storable<U>>): Rdd<U> {
    return this.flatMapRecords(f);
  }

  /**
   * map and flatMap for the engine's own functions: their record types are type parameters, which
   * Storable cannot check, and they only rearrange records checked where a user's function made them.
   * @internal
   */
  mapRecords<U>(f: (record: T) => U): Rdd<U> {
    return this.narrow('map', f, mapOperator('map', f as (r: unknown) => unknown));
  }

  /** @internal flatMap for the engine's own functions, as mapRecords. */
  flatMapRecords<U>(f: (record: T) => Iterable<U>): Rdd<U> {
    return this.narrow('flatMap', f, flatMapOperator('flatMap', f as (r: unknown) => Iterable<unknown>));
  }

  /** The records for which `f` returns true. Spark: `RDD.filter`. Narrow; keeps the placement by key. */
  filter(f: (record: T) => boolean): Rdd<T> {
    return this.narrow('filter', f, filterOperator('filter', f as (r: unknown) => boolean), true);
  }

  /** The whole partition at once, as an array, with its index; what `f` yields replaces it. Spark: `RDD.mapPartitionsWithIndex`. Narrow. */
  mapPartitions<U>(f: (records: T[], partition: number) => Iterable<U & Storable<U>>): Rdd<U> {
    return this.narrow(
      'mapPartitions',
      f,
      mapPartitionsOperator('mapPartitions', f as (r: unknown[], p: number) => Iterable<unknown>),
      false,
      false,
    );
  }

  /** The records of this dataset and of `others`. Spark: `RDD.union`. Narrow: the result has the partitions of all, in order. */
  union(...others: Rdd<T>[]): Rdd<T> {
    const parents = [this, ...others];
    return this.builder.add<T>({
      kind: 'union',
      parents: parents.map((p) => p.id),
      partitions: parents.reduce((n, p) => n + p.partitions, 0),
      label: 'union',
    });
  }

  /** Spreads records evenly over `partitions`, in a deterministic round-robin. Spark: `RDD.repartition`. A shuffle. */
  repartition(partitions: number): Rdd<T> {
    return this.builder.add<T>({
      kind: 'shuffle',
      parent: this.id,
      mode: 'round-robin',
      partitions: checkPartitions(partitions),
      label: 'repartition',
    });
  }

  /**
   * One record: how many records there are (0 for an empty dataset). Spark: `RDD.count`, an
   * action there. A small shuffle: one count per partition, gathered into one partition.
   */
  count(): Rdd<number> {
    const perPartition = this.mapPartitions((records) => [[0, records.length] as [number, number]]);
    return perPartition
      .union(this.builder.values<[number, number]>([[0, 0]]))
      .reduceByKey(sum, 1)
      .map(([, n]) => n);
  }

  /**
   * At most one record: all records folded with `f` (none for an empty dataset); `f` should be
   * associative and commutative, as in Spark. Spark: `RDD.reduce`, an action there (which throws
   * on an empty dataset). A small shuffle: each partition is folded, then the partial results in one.
   */
  reduce(f: (a: T, b: T) => T): Rdd<T> {
    const fold = (records: T[]): [number, T][] => (records.length === 0 ? [] : [[0, records.reduce((a, b) => f(a, b))]]);
    const partial = this.narrow<[number, T]>('mapPartitions', fold, mapPartitionsOperator('mapPartitions', fold as (r: unknown[]) => unknown[]), false, false);
    return partial.combineByKey((v) => v, f, f, 1).values();
  }

  /**
   * `[record, count]` for each distinct record (compared by value). Spark: `RDD.countByValue`, an
   * action returning a map there. A shuffle, combined on the map side first.
   */
  countByValue(partitions?: number): Rdd<[T, number]> {
    return this.mapRecords((x): [T, number] => [x, 1]).reduceByKey(sum, partitions);
  }

  /**
   * The records ordered by `f(record)`, then by the record, across partitions: part 0 holds the
   * smallest (Spark's sortBy). A shuffle: range-partitioned by bounds sampled from this dataset
   * (see sortByKey).
   */
  sortBy<K>(f: (record: T) => K, options?: SortOptions): Rdd<T> {
    return sortBy(this, f, options);
  }

  /**
   * The first n records, in partition order then record order, in one partition (Spark's take,
   * an action there; here a transformation, like count: `collect` it in a batch job). A shuffle
   * of at most n records per partition into one.
   */
  take(n: number): Rdd<T> {
    return take(this, n);
  }

  /** The first record, as an RDD of at most one (none for an empty dataset; Spark's first throws). A shuffle, as take. */
  first(): Rdd<T> {
    return take(this, 1);
  }

  /**
   * The n largest records, largest first, in one partition (Spark's top). `compare` defaults to
   * the total order of storable values (core/rdd/order.ts). A shuffle of at most n per partition.
   */
  top(n: number, compare?: Comparator<T>): Rdd<T> {
    return top(this, n, compare);
  }

  /** The n smallest records, smallest first, in one partition (Spark's takeOrdered); as top, a shuffle of at most n per partition. */
  takeOrdered(n: number, compare?: Comparator<T>): Rdd<T> {
    return takeOrdered(this, n, compare);
  }

  /** Pairs `[record, index]`, indexed in partition order then record order (Spark's zipWithIndex). Narrow, after a stage counting each partition. */
  zipWithIndex(): Rdd<[T, number]> {
    return zipWithIndex(this);
  }

  /** Adjacent partitions merged into at most `partitions` (Spark's coalesce without shuffle). Narrow. */
  coalesce(partitions: number): Rdd<T> {
    return coalesce(this, partitions);
  }

  /** Every pair `[a, b]` of a record of this and one of `other`, one partition per pair of partitions (Spark's cartesian). Narrow. */
  cartesian<U>(other: Rdd<U>): Rdd<[T, U]> {
    return cartesian(this, other);
  }

  /**
   * Calls `f` on the workers with each partition's records, for its effect (Spark's
   * foreachPartition): at least once per partition, possibly more (retries, speculative copies),
   * so make it idempotent. An output of the job: it runs when the job (or interval) runs.
   */
  foreachPartition(f: (records: T[], partition: number) => void | Promise<void>): void {
    foreachPartition(this, f);
  }

  // ---- key/value pairs ----

  /**
   * Pairs ordered by key, then by value, across partitions: part 0 holds the smallest keys
   * (Spark's sortByKey). A shuffle, range-partitioned by bounds drawn from a deterministic
   * sample of the keys (the same on every run); keys and values are ordered by the total order
   * of storable values in core/rdd/order.ts. `partitions` defaults to this dataset's.
   */
  sortByKey<K, V>(this: Rdd<readonly [K, V]>, options?: SortOptions): Rdd<[K, V]> {
    return sortByKey(this, options);
  }

  /** Pairs `[key, f(value)]`. Spark: `RDD.mapValues`. Narrow; keeps the placement by key. */
  mapValues<K, V, U extends RecordShape>(this: Rdd<readonly [K, V]>, f: (value: V) => U & Storable<U>): Rdd<[K, U]> {
    return this.narrow(
      'mapValues',
      f,
      mapOperator('mapValues', (r) => {
        const [k, v] = asPair(r, 'mapValues');
        return [k, f(v as V)];
      }),
      true,
    );
  }

  /** A pair `[key, u]` for each `u` that `f(value)` yields. Spark: `RDD.flatMapValues`. Narrow; keeps the placement by key. */
  flatMapValues<K, V, U extends RecordShape>(this: Rdd<readonly [K, V]>, f: (value: V) => Iterable<U & Storable<U>>): Rdd<[K, U]> {
    return this.narrow(
      'flatMapValues',
      f,
      flatMapOperator('flatMapValues', (r) => {
        const [k, v] = asPair(r, 'flatMapValues');
        return Array.from(f(v as V), (u) => [k, u]);
      }),
      true,
    );
  }

  /**
   * flatMap whose output keeps each record's key, so hash placement survives; for the engine's
   * own keyed operators (state, windows), where that is known to hold.
   * @internal
   */
  flatMapSameKey<K, U>(this: Rdd<readonly [K, unknown]>, label: string, f: (record: [K, any]) => Iterable<[K, U]>): Rdd<[K, U]> {
    return this.narrow(label, f, flatMapOperator(label, f as (r: unknown) => Iterable<unknown>), true);
  }

  /** The keys of pairs. Spark: `RDD.keys`. Narrow. */
  keys<K, V>(this: Rdd<readonly [K, V]>): Rdd<K> {
    return this.mapRecords((r) => r[0]);
  }

  /** The values of pairs. Spark: `RDD.values`. Narrow. */
  values<K, V>(this: Rdd<readonly [K, V]>): Rdd<V> {
    return this.mapRecords((r) => r[1]);
  }

  /** Pairs of `[f(record), record]`. Spark: `RDD.keyBy`. Narrow. */
  keyBy<K extends RecordShape>(f: (record: T) => K & Storable<K>): Rdd<[K, T]> {
    return this.mapRecords((r): [K, T] => [f(r), r]);
  }

  /** Each distinct record once, records compared by value as keys are. Spark: `RDD.distinct`. A shuffle. */
  distinct(partitions?: number): Rdd<T> {
    return this.mapRecords((r): [T, null] => [r, null]).reduceByKey((a) => a, partitions).keys();
  }

  /** Records of this dataset with no equal record in `other`; duplicates of this one are kept, as in Spark. Spark: `RDD.subtract`. A shuffle of both. */
  subtract(other: Rdd<T>, partitions?: number): Rdd<T> {
    return this.mapRecords((r): [T, null] => [r, null]).subtractByKey(other.mapRecords((r): [T, null] => [r, null]), partitions).keys();
  }

  /** Records in both datasets, each once. Spark: `RDD.intersection`. A shuffle of both. */
  intersection(other: Rdd<T>, partitions?: number): Rdd<T> {
    const tagged = (rdd: Rdd<T>) => rdd.mapRecords((r): [T, null] => [r, null]);
    return tagged(this)
      .cogroup([tagged(other)], partitions)
      .flatMapRecords(([r, [mine, theirs]]) => (mine!.length > 0 && theirs!.length > 0 ? [r] : []));
  }

  /**
   * A sample of about `fraction` of the records, without replacement. Deterministic: which records
   * are kept depends only on the seed, the partition and the records' order in it.
   * Spark: `RDD.sample(false, fraction, seed)`; no sampling with replacement. Narrow.
   */
  sample(fraction: number, seed: number): Rdd<T> {
    if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`sample fraction must be between 0 and 1, got ${fraction}`);
    if (!Number.isSafeInteger(seed)) throw new RangeError(`sample seed must be an integer, got ${seed}`);
    const f = (records: unknown[], partition: number) => {
      const random = seededRandom(stableHash([seed, partition]));
      return records.filter(() => random() < fraction);
    };
    // The fraction and seed are in the label: the plan, and so the fingerprint, tells samples apart.
    const label = `sample(${fraction}, ${seed})`;
    return this.narrow(label, f, mapPartitionsOperator(label, f), true, false);
  }

  /** Pairs of this dataset whose key is not in `other`. Spark: `RDD.subtractByKey`. A shuffle of both (cogroup). */
  subtractByKey<K, V, W>(this: Rdd<readonly [K, V]>, other: Rdd<readonly [K, W]>, partitions?: number): Rdd<[K, V]> {
    return this.cogroup([other], partitions).flatMapRecords(([k, [vs, ws]]) => (ws!.length > 0 ? [] : vs!.map((v): [K, V] => [k, v as V])));
  }

  /**
   * Per key, values folded into a copy of `zero` with `seqOp`, then partial results merged with
   * `combOp` (Spark: `RDD.aggregateByKey`). `zero` is copied for each key, so it may be mutated.
   * A shuffle, combined on the map side first.
   */
  aggregateByKey<K, V, U>(this: Rdd<readonly [K, V]>, zero: U, seqOp: (acc: U, value: V) => U, combOp: (a: U, b: U) => U, partitions?: number): Rdd<[K, U]> {
    return this.combineByKey((v: V) => seqOp(structuredClone(zero), v), seqOp, combOp, partitions);
  }

  /** Per key, values folded with `f` from a copy of `zero`. Spark: `RDD.foldByKey`. A shuffle, combined on the map side first. */
  foldByKey<K, V>(this: Rdd<readonly [K, V]>, zero: Widened<V>, f: (a: Widened<V>, b: Widened<V>) => Widened<V>, partitions?: number): Rdd<[K, Widened<V>]> {
    return this.widened().aggregateByKey(zero, f, f, partitions);
  }

  /** How many records each key has (an RDD of `[key, count]`). Spark: `RDD.countByKey`, an action returning a map there. A shuffle. */
  countByKey<K, V>(this: Rdd<readonly [K, V]>, partitions?: number): Rdd<[K, number]> {
    return this.mapRecords(([k]): [K, number] => [k, 1]).reduceByKey((a, b) => a + b, partitions);
  }

  /**
   * The general per-key aggregation, combined on the map side before the shuffle: `createCombiner`
   * makes a combiner from a key's first value in a partition, `mergeValue` adds a value to it,
   * `mergeCombiners` merges two partitions' combiners. Spark: `RDD.combineByKey`. A shuffle.
   */
  combineByKey<K, V, C>(
    this: Rdd<readonly [K, V]>,
    createCombiner: (value: V) => C,
    mergeValue: (combiner: C, value: V) => C,
    mergeCombiners: (a: C, b: C) => C,
    partitions?: number,
  ): Rdd<[K, C]> {
    const aggregator = { createCombiner, mergeValue, mergeCombiners } as Aggregator;
    return this.builder.add<[K, C]>(
      {
        kind: 'shuffle',
        parent: this.id,
        mode: 'hash',
        combine: [createCombiner, mergeValue, mergeCombiners].map(functionHash).join(','),
        partitions: checkPartitions(partitions ?? this.builder.defaultPartitions),
        hashPartitioned: true,
        label: 'combineByKey',
      },
      { aggregator },
    );
  }

  /**
   * Each key's values combined with `f` (associative and commutative, as in Spark): one pair per
   * key. Spark: `RDD.reduceByKey`. A shuffle, combined on the map side first. Values of `as const`
   * pairs are widened (`1` to `number`) for `f`, which combines them into new values.
   */
  reduceByKey<K, V>(this: Rdd<readonly [K, V]>, f: (a: Widened<V>, b: Widened<V>) => Widened<V>, partitions?: number): Rdd<[K, Widened<V>]> {
    return this.widened().combineByKey((v) => v, f, f, partitions);
  }

  /** The same pairs, typed with their values' literal types widened, which TypeScript cannot see a type parameter allows. */
  private widened<K, V>(this: Rdd<readonly [K, V]>): Rdd<readonly [K, Widened<V>]> {
    return this as Rdd<readonly [K, unknown]> as Rdd<readonly [K, Widened<V>]>;
  }

  /** `[key, values]` for each key, values in the order they arrive: by map partition, then by position in it. Spark: `RDD.groupByKey`. A shuffle. */
  groupByKey<K, V>(this: Rdd<readonly [K, V]>, partitions?: number): Rdd<[K, V[]]> {
    return this.combineByKey<K, V, V[]>(
      (v) => [v],
      (c, v) => (c.push(v), c),
      (a, b) => (a.push(...b), a),
      partitions,
    );
  }

  /**
   * Places pairs by the hash partitioner over `partitions`, unless they are already placed so.
   * Spark: `RDD.partitionBy(new HashPartitioner(partitions))`. A shuffle, or nothing if already placed.
   */
  partitionBy<K, V>(this: Rdd<readonly [K, V]>, partitions: number): Rdd<[K, V]> {
    // Readonly only in its type: the pairs are the same records.
    if (this.node.hashPartitioned && this.partitions === partitions) return this as Rdd<[K, V]>;
    return this.builder.add<[K, V]>({
      kind: 'shuffle',
      parent: this.id,
      mode: 'hash',
      partitions: checkPartitions(partitions),
      hashPartitioned: true,
      label: 'partitionBy',
    });
  }

  /**
   * For each key, the values from each dataset: `[key, [valuesOfThis, valuesOfOther, ...]]`.
   * Spark: `RDD.cogroup`. A shuffle of each dataset not already placed by key over `partitions`.
   */
  cogroup<K>(this: Rdd<readonly [K, unknown]>, others: Rdd<readonly [K, unknown]>[], partitions?: number): Rdd<[K, unknown[][]]> {
    const n = checkPartitions(partitions ?? this.builder.defaultPartitions);
    const parents = [this, ...others].map((p) => p.partitionBy(n));
    return this.builder.add<[K, unknown[][]]>({
      kind: 'cogroup',
      parents: parents.map((p) => p.id),
      partitions: n,
      hashPartitioned: true,
      label: 'cogroup',
    });
  }

  /**
   * updateStateByKey's and mapWithState's step: this dataset is the state (one record per key),
   * and `step` gets each key of it or of `batch` with its prior state (undefined if none) and the
   * batch's values for it (a fresh array), in a cogroup's key order. A hash-merge of the two, not
   * a cogroup: no group per key.
   * @internal
   */
  foldState<K, S, V, U>(
    this: Rdd<readonly [K, S]>,
    batch: Rdd<readonly [K, V]>,
    partitions: number,
    label: string,
    step: (key: K, prior: S | undefined, values: readonly V[]) => Iterable<U>,
  ): Rdd<U> {
    const n = checkPartitions(partitions);
    const parents = [this.partitionBy(n), batch.partitionBy(n)];
    return this.builder.add<U>(
      { kind: 'cogroup', parents: parents.map((p) => p.id), fold: `${label}:${functionHash(step)}`, partitions: n, hashPartitioned: true, label },
      { fold: step as (key: unknown, prior: unknown, values: unknown[]) => Iterable<unknown> },
    );
  }

  /**
   * `[key, [v, w]]` for every pair of values of a key present in both datasets. Spark: `RDD.join`.
   * A shuffle (cogroup) of each side not already placed by key over `partitions`.
   */
  join<K, V, W>(this: Rdd<readonly [K, V]>, other: Rdd<readonly [K, W]>, partitions?: number): Rdd<[K, [V, W]]> {
    return joined(this, other, false, false, partitions);
  }

  /** As join, also keeping this dataset's keys absent from `other`, with `null` for `w`. Spark: `RDD.leftOuterJoin`. A shuffle, as join. */
  leftOuterJoin<K, V, W>(this: Rdd<readonly [K, V]>, other: Rdd<readonly [K, W]>, partitions?: number): Rdd<[K, [V, W | null]]> {
    return joined(this, other, true, false, partitions);
  }

  /** As join, also keeping `other`'s keys absent from this dataset, with `null` for `v`. Spark: `RDD.rightOuterJoin`. A shuffle, as join. */
  rightOuterJoin<K, V, W>(this: Rdd<readonly [K, V]>, other: Rdd<readonly [K, W]>, partitions?: number): Rdd<[K, [V | null, W]]> {
    return joined(this, other, false, true, partitions);
  }

  /** As join, also keeping the keys of either side absent from the other, with `null` for the missing value. Spark: `RDD.fullOuterJoin`. A shuffle, as join. */
  fullOuterJoin<K, V, W>(this: Rdd<readonly [K, V]>, other: Rdd<readonly [K, W]>, partitions?: number): Rdd<[K, [V | null, W | null]]> {
    return joined(this, other, true, true, partitions);
  }

  // ---- outputs: the job writes these when it runs ----

  /**
   * An output of the job: one line per record under `output/<name>/`, strings as they are,
   * anything else as JSON. Spark: `RDD.saveAsTextFile`, with an output name (1-128 letters,
   * digits, '.', '_' or '-', one per output) rather than a path.
   */
  saveAsTextFile<R extends T>(this: Rdd<R & Storable<R>>, name: string): void {
    this.builder.addOutput(this as Rdd<unknown>, name, 'text');
  }

  /** An output of the job, as saveAsTextFile but one JSON value per line; a pair is a two-element array. No Spark counterpart. */
  saveAsJsonFile<R extends T>(this: Rdd<R & Storable<R>>, name: string): void {
    this.builder.addOutput(this as Rdd<unknown>, name, 'json');
  }

  /**
   * Brings the records back to the driver, in partition order, under `name` in the job's result.
   * Spark: `RDD.collect`, but an output of the job rather than a call returning the records.
   */
  collect<R extends T>(this: Rdd<R & Storable<R>>, name: string): void {
    this.builder.addOutput(this as Rdd<unknown>, name, 'collect');
  }
}

function joined<K>(
  left: Rdd<readonly [K, unknown]>,
  right: Rdd<readonly [K, unknown]>,
  keepLeft: boolean,
  keepRight: boolean,
  partitions: number | undefined,
): Rdd<any> {
  const grouped = left.cogroup([right], partitions);
  // The product is emitted in value order, so the output is deterministic.
  return grouped.flatMapRecords(([k, [vs, ws]]) => {
    const out: unknown[] = [];
    const lefts = vs!.length > 0 ? vs! : keepRight ? [null] : [];
    const rights = ws!.length > 0 ? ws! : keepLeft ? [null] : [];
    for (const v of lefts) for (const w of rights) out.push([k, [v, w]]);
    return out;
  });
}

/** An output name becomes a folder under `output/`: one plain segment, nothing that could escape. */
export function validateOutputName(name: string): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) {
    throw new Error(
      `invalid output name ${JSON.stringify(name)}: use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit (it becomes the folder output/<name>/)`,
    );
  }
  return name;
}

export function checkPartitions(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 100_000) {
    throw new RangeError(`partitions must be a whole number from 1 to 100000, got ${n}`);
  }
  return n;
}
