import type { Rdd } from '../rdd/rdd.ts';
import { functionHash } from '../util/hash.ts';
import { DStream } from './dstream.ts';
import { KeyState, type State } from './state.ts';
import { atSlidesOf, initialParam, initialState, migrateParam, type InitialState } from './state-stream.ts';
import type { Storable, StorableOrNothing } from '../types.ts';

/** What mapWithState keeps per key: its state, the last interval it had a value, and what this interval emitted. */
export type MapWithStateEntry<S, U> = [hasState: 0 | 1, state: S | null, lastInterval: number, emitted: U[]];

/**
 * The state's type is inferred from `initial`, or from the type given to `update`'s `state`
 * parameter (`state: State<number>`), without type arguments; what is emitted, from what `update`
 * returns (`R`, with undefined for nothing).
 */
export interface MapWithStateSpec<K, V, S, R> {
  /**
   * Called once per new value of a key, in arrival order, with the key's state; what it returns is
   * emitted (undefined: nothing). On the timing-out call `value` is undefined. Spark: `StateSpec.function`.
   */
  update: (key: K, value: V | undefined, state: State<S>) => R & StorableOrNothing<R>;
  /**
   * Intervals without a value after which a key gets a last call with `isTimingOut()`, and is
   * removed; a whole number >= 1. Default: never. Spark: `StateSpec.timeout`, in intervals, with
   * Spark's rule: a key last updated at interval j times out at the first interval k with
   * k - j > timeout (Spark also waits for a checkpoint interval to scan; dstream does not).
   */
  timeout?: number;
  /** Partitions of the state (Spark: `StateSpec.numPartitions`). Default: the pipeline's `partitions`. */
  partitions?: number;
  /**
   * The state of keys before interval 0 (Spark's StateSpec.initialState): `[key, state]` pairs, or
   * a JSON-lines object of them in the store (`ctx.jsonFile(key)`).
   */
  initial?: InitialState<K, S & Storable<S>>;
  /** The state's name across upgrades, as `.name(name)`. */
  name?: string;
  /** At an upgrade, turns each state the old code kept into this code's: for a changed state type. */
  migrate?: (old: any) => S;
}

/**
 * mapWithState, as Spark's MapWithStateDStream: per key, `update` is called once per new value
 * (in arrival order), with the key's state, and may emit a record.
 *
 *   entry(k) = update over batch(k)'s values of the key, from entry(k - 1)   where the parent has an RDD
 *            = a last call with isTimingOut(), then removed                   more than `timeout` intervals since its last value
 *   entry(k) = entry(k - 1), nothing emitted                                 between the parent's slides
 *
 * The chain is kept every interval (state, checkpointed); users see it at the parent's slides.
 */
export function mapWithStateStream<K, V, S, R>(
  parent: DStream<readonly [K, V]>,
  spec: MapWithStateSpec<K, V, S, R>,
  partitions: number,
): DStream<[K, MapWithStateEntry<S, Exclude<R, undefined>>]> {
  type U = Exclude<R, undefined>;
  type Entry = MapWithStateEntry<S, U>;
  const { update, timeout } = spec;
  if (timeout !== undefined && (!Number.isInteger(timeout) || timeout < 1)) {
    throw new RangeError(`mapWithState timeout must be a whole number of intervals >= 1, got ${timeout}`);
  }
  const chain: DStream<[K, Entry]> = new DStream(
    parent.graph,
    'mapWithState',
    [parent],
    [functionHash(update), timeout ?? null, partitions, ...initialParam(spec.initial), ...migrateParam(spec.migrate)],
    (gen, [batch]) => {
      const k = gen.interval;
      const previous = gen.startsHere(chain) ? initialState(gen, spec.initial, partitions, (state: S): Entry => [1, state, k, []]) : gen.stored(chain, k - 1);
      if (batch === undefined) {
        return previous.flatMapSameKey('mapWithState', ([key, entry]: [K, Entry]) => {
          const carried: Entry = [1, entry[1], entry[2], []];
          return entry[0] === 1 ? [[key, carried]] : [];
        });
      }
      return (previous as Rdd<[K, Entry]>).foldState(batch as Rdd<[K, V]>, partitions, 'mapWithState', (key, before, values): [K, Entry][] => {
        const had = before !== undefined && before[0] === 1;
        const emitted: U[] = [];
        let last = before?.[2] ?? k;
        let state: KeyState<S>;
        if (values.length > 0) {
          state = new KeyState<S>(had ? { value: before![1] as S } : undefined);
          for (const v of values as V[]) {
            const out = update(key, v, state);
            if (out !== undefined) emitted.push(out as U);
          }
          last = k;
        } else if (had && timeout !== undefined && k - last > timeout) {
          state = new KeyState<S>({ value: before![1] as S }, true);
          const out = update(key, undefined, state);
          if (out !== undefined) emitted.push(out as U);
          state.remove();
        } else {
          if (!had) return [];
          const unchanged: Entry = [1, before![1], last, []];
          return [[key, unchanged]];
        }
        if (!state.exists() && emitted.length === 0) return [];
        const next: Entry = [state.exists() ? 1 : 0, state.exists() ? state.get() : null, last, emitted];
        return [[key, next]];
      });
    },
    { slide: 1, persisted: true, stateful: true, keyedPartitions: partitions, everyInterval: true },
  );
  chain.lookback = 1;
  const { migrate } = spec;
  if (migrate) chain.migrateCarried = (record) => {
    const [key, [has, state, last]] = record as [K, Entry];
    return [key, [has, has === 1 ? migrate(state) : null, last, []]];
  };
  return atSlidesOf(chain, parent);
}
