import type { Rdd } from '../rdd/rdd.ts';
import { functionHash } from '../util/hash.ts';
import { DStream } from './dstream.ts';

/**
 * A key's window as the state holds it: its value; how many of the window's intervals from
 * `since` on hold a value of it (at 0 the key leaves); and `since`, the first interval its state
 * accounts for (0 unless `filter` pruned the key and it came back).
 */
type Held<V> = [value: V, held: number, since: number];

/**
 * reduceByKeyAndWindow with an inverse, as Spark's ReducedWindowedDStream: each window is the
 * previous one plus the intervals that entered and minus those that left, which costs the slide
 * rather than the length.
 *
 *   window(k - slide) ──┐
 *   reduced(j) entering ├─ cogroup by key ─► f over what entered, inverse over what left ─► filter ─► window(k)
 *   reduced(j) leaving ─┘
 *
 * `reduced` is the parent reduced per interval, persisted. The window is state: persisted, and
 * checkpointed as state is. A key whose every value has left is dropped, so without `filter` the
 * result equals the plain form's.
 *
 * `filter` is Spark's filterFunc: it is applied to the window itself, so a key it refuses is
 * pruned from the state the next window starts from. As in Spark, a pruned key that comes back
 * starts from the values that entered with that slide, and the values it held before it was
 * pruned are still taken out (by `inverse`) as they leave the window: the result can then differ
 * from the plain form's, exactly as Spark's does. (Where Spark fails, a pruned key with no
 * previous window and no new value, the key is absent.)
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
      const leavingIntervals: number[] = [];
      for (let j = Math.max(0, k - slide + 1); j <= k; j++) entering.push(gen.stored(reduced, j));
      for (let j = Math.max(0, k - length - slide + 1); j <= k - length; j++) leavingIntervals.push(j);
      const leaving = leavingIntervals.map((j) => gen.stored(reduced, j));
      const entered = entering.length;
      return (previous as Rdd<[K, unknown]>)
        .cogroup([...entering, ...leaving] as Rdd<[K, unknown]>[], partitions)
        .flatMapSameKey('reduceByKeyAndWindow', ([key, groups]: [K, unknown[][]]) => {
          const prior = groups[0]![0] as Held<V> | undefined;
          let value = prior?.[0];
          let held = prior?.[1] ?? 0;
          const since = prior?.[2] ?? Math.max(0, k - slide + 1);
          for (let g = 1; g <= entered; g++) {
            for (const v of groups[g] as V[]) {
              value = held === 0 && prior === undefined ? v : f(value as V, v);
              held++;
            }
          }
          for (let g = entered + 1; g < groups.length; g++) {
            const accounted = leavingIntervals[g - entered - 1]! >= since;
            // A value from before `since` left a pruned key's state already; Spark still takes it
            // out of a state the key has again, and ignores it when the key has none.
            if (!accounted && prior === undefined) continue;
            for (const v of groups[g] as V[]) {
              value = inverse(value as V, v);
              if (accounted) held--;
            }
          }
          if (held <= 0) return [];
          if (filter && !filter([key, value as V])) return [];
          const next: Held<V> = [value as V, held, since];
          return [[key, next]];
        });
    },
    { slide, persisted: true, stateful: true, keyedPartitions: partitions },
  );
  state.lookback = length + slide - 1;
  reduced.buffer = true;
  // The key is kept, and with it the hash placement, as mapValues keeps it.
  const windows = state.transform((rdd) => rdd.flatMapSameKey('reduceByKeyAndWindow', ([key, [value]]: [K, Held<V>]) => [[key, value]]));
  windows.stateParts = [
    [state as DStream<unknown>, ''],
    [reduced as DStream<unknown>, '.input'],
  ];
  return windows;
}
