import type { PlanBuilder, Rdd } from '../rdd/rdd.ts';
import { functionHash, shortHash } from '../util/hash.ts';
import { DStream } from './dstream.ts';

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
  initial: readonly (readonly [K, S])[] | undefined,
): DStream<[K, S]> {
  const chain: DStream<[K, S]> = new DStream(
    parent.graph,
    'updateStateByKey',
    [parent],
    [functionHash(update), partitions, ...initialParam(initial)],
    (gen, [batch]) => {
      const k = gen.interval;
      const previous = k > 0 ? gen.stored(chain, k - 1) : initialState(gen.builder, initial, partitions);
      if (batch === undefined) return previous;
      return (previous as Rdd<[K, unknown]>).cogroup([batch as Rdd<[K, unknown]>], partitions).flatMapSameKey('updateStateByKey', ([key, [states, values]]: [K, unknown[][]]) => {
        const next = update(values as V[], states!.length > 0 ? (states![0] as S) : undefined);
        return next === undefined ? [] : [[key, next] as [K, S]];
      });
    },
    { slide: 1, persisted: true, stateful: true, keyedPartitions: partitions, everyInterval: true },
  );
  chain.lookback = 1;
  return atSlidesOf(chain, parent);
}

/**
 * A state chain (kept every interval) as seen at `parent`'s slides only: where the parent has an
 * RDD, as Spark's state streams slide with their parent.
 */
export function atSlidesOf<T>(chain: DStream<T>, parent: DStream<unknown>): DStream<T> {
  if (parent.slide === 1) return chain;
  const slide = parent.slide;
  return new DStream<T>(chain.graph, 'atSlides', [chain], [slide], (gen, [rdd]) => ((gen.interval + 1) % slide === 0 ? rdd : undefined), {
    slide,
    ...(chain.keyedPartitions === undefined ? {} : { keyedPartitions: chain.keyedPartitions }),
  });
}

/**
 * The state before interval 0: empty, or the `initial` pairs (Spark's initialRDD), placed by key.
 * They are part of the plan, so they travel in interval 0's lineage record: for seeds, not tables.
 */
export function initialState<K, S>(builder: PlanBuilder, initial: readonly (readonly [K, S])[] | undefined, partitions: number): Rdd<[K, S]> {
  if (initial === undefined || initial.length === 0) return builder.emptyPartitioned<[K, S]>(partitions);
  return builder.values(initial, partitions).partitionBy(partitions);
}

/** What identifies an initial state in the operator's identity (its fingerprint): a hash of the pairs. */
export function initialParam(initial: readonly unknown[] | undefined): string[] {
  if (initial === undefined) return [];
  if (!Array.isArray(initial) || !initial.every((pair) => Array.isArray(pair) && pair.length === 2)) {
    throw new TypeError('initial state must be an array of [key, state] pairs');
  }
  return [shortHash(JSON.stringify(initial))];
}
