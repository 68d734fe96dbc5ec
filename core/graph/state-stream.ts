import type { Rdd } from '../rdd/rdd.ts';
import { functionHash, shortHash } from '../util/hash.ts';
import { DStream, type Generation } from './dstream.ts';

/**
 * A JSON-lines object in the store, named in the pipeline (`ctx.jsonFile(key)`) and read as an
 * RDD of interval 0: an initial state read from the store, as Spark's initialRDD. Its bytes are
 * pinned when interval 0 is planned (copied into that interval's lineage), so every computation
 * of the state reads the same records whatever later happens to the object.
 */
export class StoreObject<T> {
  /** Phantom: the records' type. */
  declare readonly records?: T;
  /** @internal Made by `StreamingContext.jsonFile`. */
  constructor(
    /** The object's key in the store. */
    readonly key: string,
    /** @internal Its place among the pipeline's store objects: which of interval 0's pinned copies it is. */
    readonly index: number,
  ) {}
}

/** The state before interval 0: `[key, state]` pairs given inline, or read from a store object. */
export type InitialState<K, S> = readonly (readonly [K, S])[] | StoreObject<readonly [K, S]>;

/**
 * updateStateByKey, as Spark's StateDStream:
 *
 *   state(k) = update(batch(k) by key, state(k - 1))   where the parent has an RDD at k
 *   state(k) = state(k - 1)                            between its slides: no call
 *
 * The chain is kept at every interval, so it is checkpointed and recovered as any state is; the
 * stream users see has an RDD only where the parent has one (it slides with the parent).
 */
export function stateStream<K, V, S>(
  parent: DStream<readonly [K, V]>,
  update: (values: V[], state: S | undefined) => S | undefined,
  partitions: number,
  initial: InitialState<K, S> | undefined,
  migrate?: (old: unknown) => S,
): DStream<[K, S]> {
  const chain: DStream<[K, S]> = new DStream(
    parent.graph,
    'updateStateByKey',
    [parent],
    [functionHash(update), partitions, ...initialParam(initial), ...migrateParam(migrate)],
    (gen, [batch]) => {
      const k = gen.interval;
      const previous = gen.startsHere(chain) ? initialState(gen, initial, partitions, (state: S) => state) : gen.stored(chain, k - 1);
      if (batch === undefined) return previous;
      return (previous as Rdd<[K, S]>).foldState(batch as Rdd<[K, V]>, partitions, 'updateStateByKey', (key, state, values) => {
        const next = update(values as V[], state);
        return next === undefined ? [] : [[key, next] as [K, S]];
      });
    },
    { slide: 1, persisted: true, stateful: true, keyedPartitions: partitions, everyInterval: true },
  );
  chain.lookback = 1;
  if (migrate) chain.migrateCarried = (record) => [(record as [K, unknown])[0], migrate((record as [K, unknown])[1])];
  return atSlidesOf(chain, parent);
}

/**
 * A state chain (kept every interval) as seen at `parent`'s slides only: where the parent has an
 * RDD, as Spark's state streams slide with their parent.
 */
export function atSlidesOf<T>(chain: DStream<T>, parent: DStream<unknown>): DStream<T> {
  chain.stateParts = [[chain as DStream<unknown>, '']];
  if (parent.slide === 1) return chain;
  const slide = parent.slide;
  const seen = new DStream<T>(chain.graph, 'atSlides', [chain], [slide], (gen, [rdd]) => ((gen.interval + 1) % slide === 0 ? rdd : undefined), {
    slide,
    ...(chain.keyedPartitions === undefined ? {} : { keyedPartitions: chain.keyedPartitions }),
  });
  seen.stateParts = chain.stateParts;
  return seen;
}

/** A `migrate` function in the operator's identity; none adds nothing, so unchanged pipelines keep their fingerprint. */
export function migrateParam(migrate: Function | undefined): string[] {
  return migrate === undefined ? [] : [`migrate:${functionHash(migrate)}`];
}

/**
 * The state before interval 0, placed by key: empty; the `initial` pairs (Spark's initialRDD),
 * which are part of the plan and so travel in interval 0's lineage record (for seeds, not
 * tables); or the records of a store object, pinned in interval 0's lineage, each of which must
 * be a `[key, state]` pair. `entry` turns a state into what the operator keeps per key.
 */
export function initialState<K, S, E>(gen: Generation, initial: InitialState<K, S> | undefined, partitions: number, entry: (state: S) => E): Rdd<[K, E]> {
  if (initial instanceof StoreObject) {
    const { key } = initial;
    return gen.builder
      .source<unknown>('jsonl', gen.objectSplits(initial.index), `initial state ${key}`)
      .mapRecords((record): [K, E] => {
        if (!Array.isArray(record) || record.length !== 2) {
          throw new TypeError(`initial state ${key}: each line must be a [key, state] pair, got ${JSON.stringify(record)?.slice(0, 200)}`);
        }
        return [record[0] as K, entry(record[1] as S)];
      })
      .partitionBy(partitions);
  }
  if (initial === undefined || initial.length === 0) return gen.builder.emptyPartitioned<[K, E]>(partitions);
  return gen.builder.values(initial.map(([key, state]): [K, E] => [key, entry(state)]), partitions).partitionBy(partitions);
}

/** What identifies an initial state in the operator's identity (its fingerprint): a hash of the pairs, or the object's key. */
export function initialParam(initial: unknown): string[] {
  if (initial === undefined) return [];
  if (initial instanceof StoreObject) return [`object:${initial.key}`];
  if (!Array.isArray(initial) || !initial.every((pair) => Array.isArray(pair) && pair.length === 2)) {
    throw new TypeError('initial state must be an array of [key, state] pairs, or a store object (ctx.jsonFile)');
  }
  return [shortHash(JSON.stringify(initial))];
}
