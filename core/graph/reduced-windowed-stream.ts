import type { Rdd } from '../rdd/rdd.ts';
import { functionHash } from '../util/hash.ts';
import { DStream } from './dstream.ts';

/** A key's value over the window, and how many of the window's values it holds: at 0 the key leaves. */
type Held<V> = [value: V, held: number];

/**
 * reduceByKeyAndWindow with an inverse, as Spark's ReducedWindowedDStream: each window is the
 * previous one plus the intervals that entered and minus those that left, which costs the slide
 * rather than the length.
 *
 *   window(k - slide) ──┐
 *   reduced(j) entering ├─ cogroup by key ─► f over what entered, inverse over what left ─► window(k)
 *   reduced(j) leaving ─┘
 *
 * `reduced` is the parent reduced per interval, persisted. The window is state: persisted, and
 * checkpointed as state is. A key whose every value has left is dropped, so the result equals
 * the plain form's.
 */
export function reducedWindowedStream<K, V>(
  reduced: DStream<[K, V]>,
  f: (a: V, b: V) => V,
  inverse: (a: V, b: V) => V,
  length: number,
  slide: number,
  partitions: number,
  filter: ((pair: [K, V]) => boolean) | undefined,
): DStream<[K, V]> {
  const state: DStream<[K, Held<V>]> = new DStream(
    reduced.graph,
    'reduceByKeyAndWindow',
    [reduced],
    [functionHash(f), functionHash(inverse), filter ? functionHash(filter) : null, length, slide, partitions],
    (gen) => {
      const k = gen.interval;
      if ((k + 1) % slide !== 0) return undefined;
      const previous = k - slide >= 0 ? gen.stored(state, k - slide) : gen.builder.emptyPartitioned<[K, Held<V>]>(partitions);
      const entering: Rdd<[K, V]>[] = [];
      const leaving: Rdd<[K, V]>[] = [];
      for (let j = Math.max(0, k - slide + 1); j <= k; j++) entering.push(gen.stored(reduced, j));
      for (let j = Math.max(0, k - length - slide + 1); j <= k - length; j++) leaving.push(gen.stored(reduced, j));
      const entered = entering.length;
      return (previous as Rdd<[K, unknown]>)
        .cogroup([...entering, ...leaving] as Rdd<[K, unknown]>[], partitions)
        .flatMapSameKey('reduceByKeyAndWindow', ([key, groups]: [K, unknown[][]]) => {
          const prior = groups[0]![0] as Held<V> | undefined;
          let value = prior?.[0];
          let held = prior?.[1] ?? 0;
          for (let g = 1; g <= entered; g++) {
            for (const v of groups[g] as V[]) {
              value = held === 0 ? v : f(value as V, v);
              held++;
            }
          }
          for (let g = entered + 1; g < groups.length; g++) {
            for (const v of groups[g] as V[]) {
              value = inverse(value as V, v);
              held--;
            }
          }
          if (held <= 0) return [];
          const next: Held<V> = [value as V, held];
          return [[key, next]];
        });
    },
    { slide, persisted: true, stateful: true, keyedPartitions: partitions },
  );
  state.lookback = length + slide - 1;
  // The key is kept, and with it the hash placement, as mapValues keeps it.
  return state.transform((rdd) => rdd.flatMapSameKey('reduceByKeyAndWindow', ([key, [value]]: [K, Held<V>]) => [[key, value]]));
}
