import type { DStream, Generation } from '../graph/dstream.ts';
import type { Pipeline } from '../graph/pipeline.ts';
import type { SplitRef } from '../rdd/plan.ts';
import { PlanBuilder, type Rdd } from '../rdd/rdd.ts';
import { intervalScope, keys } from '../layout.ts';

/** Everything an interval's plan depends on besides the pipeline: recorded in its lineage. */
export interface IntervalInputs {
  /** Per source, in the order the pipeline created them: this interval's splits (their ranges are stored beside the record). */
  sources: SplitRef[][];
  /** Partitions of RDDs persisted at earlier intervals, by `<stream>@<interval>`; absent = no RDD. */
  persisted: Record<string, number>;
  /** Interval 0 (and an upgrade's boundary): the splits of each store object the pipeline reads (initial states), as pinned, in the order named. */
  objects?: SplitRef[][];
  /**
   * After an upgrade: the old code's RDDs this interval reads from before the boundary, by
   * `<stream>@<interval>` of the new code's streams, as checkpointed at the upgrade.
   */
  carried?: Record<string, CarriedRdd>;
  /** At an upgrade's boundary: the state streams the new code adds, which start from their initial state there. */
  starting?: string[];
}

/** An RDD of the old code checkpointed at an upgrade: where, over how many partitions, and whether placed by key. */
export interface CarriedRdd {
  location: string;
  partitions: number;
  hashPartitioned: boolean;
}

export interface GeneratedInterval {
  builder: PlanBuilder;
  /** Partitions of the RDDs this interval persists, by stream id: later intervals' inputs. */
  persistedHere: Record<string, number>;
}

/**
 * Where stream `id`'s RDD of interval j is persisted. State goes to the durable tier once in every
 * period of C intervals: at its last RDD in the period (the period's last interval for state kept
 * every interval; for windowed state sliding every s, its last slide in the period).
 */
export function persistTarget(stream: DStream<unknown>, j: number, checkpointEvery: number) {
  const tier = stream.stateful && isCheckpointed(stream, j, checkpointEvery) ? ('checkpoint' as const) : ('cache' as const);
  return { tier, location: keys.persistLocation(tier, intervalScope(j), stream.id) };
}

/** True when a stateful stream's RDD of interval j is its last in its checkpoint period. */
function isCheckpointed(stream: DStream<unknown>, j: number, checkpointEvery: number): boolean {
  return Math.floor(j / checkpointEvery) !== Math.floor((j + stream.slide) / checkpointEvery);
}

/**
 * The latest interval at or before k whose RDD of this stateful stream is checkpointed, or -1:
 * where its recovery starts.
 */
export function lastCheckpoint(stream: DStream<unknown>, k: number, checkpointEvery: number): number {
  for (let j = k - ((k + 1) % stream.slide); j >= 0; j -= stream.slide) {
    if (isCheckpointed(stream, j, checkpointEvery)) return j;
  }
  return -1;
}

/**
 * Turns the stream graph into interval k's RDD plan: the job generator. Deterministic: the driver
 * runs it to plan the interval, and every task runs it again to find its RDD and functions.
 */
export function generateInterval(pipeline: Pipeline, k: number, inputs: IntervalInputs): GeneratedInterval {
  const { graph, options } = pipeline;
  const builder = new PlanBuilder(options.partitions);
  const memo = new Map<DStream<unknown>, Rdd<unknown> | undefined>();
  const storedMemo = new Map<string, Rdd<unknown>>();
  const persistedHere: Record<string, number> = {};

  const gen: Generation = {
    interval: k,
    builder,
    rdd<T>(stream: DStream<T>): Rdd<T> | undefined {
      const s = stream as DStream<unknown>;
      if (memo.has(s)) return memo.get(s) as Rdd<T> | undefined;
      const parents = s.parents.map((p) => gen.rdd(p));
      let result: Rdd<unknown> | undefined;
      if (!parents.includes(undefined) || s.everyInterval) {
        builder.origin = `${s.id} ${s.kind}`;
        result = s.computeRdd(gen, parents as Rdd<unknown>[]);
        builder.origin = '';
        if (result && s.persisted) {
          const { tier, location } = persistTarget(s, k, options.checkpointEvery);
          builder.addPersist(result, location, tier);
          persistedHere[s.id] = result.partitions;
          // Consumers in this interval read what was persisted, so it is computed once.
          result = builder.stored(location, tier, result.partitions, !!result.node.hashPartitioned, `${s.kind} ${s.id}`);
          storedMemo.set(`${s.id}@${k}`, result);
        }
      }
      memo.set(s, result);
      return result as Rdd<T> | undefined;
    },
    stored<T>(stream: DStream<T>, j: number): Rdd<T> {
      const s = stream as DStream<unknown>;
      if (!s.persisted) throw new Error(`internal: ${s.id} ${s.kind} is read across intervals but not persisted`);
      if (j === k) {
        const here = gen.rdd(s);
        return (here ?? emptyOf(s)) as Rdd<T>;
      }
      const memoKey = `${s.id}@${j}`;
      const known = storedMemo.get(memoKey);
      if (known) return known as Rdd<T>;
      const partitions = j < 0 ? undefined : inputs.persisted[memoKey];
      const carried = inputs.carried?.[memoKey];
      let rdd: Rdd<unknown>;
      if (carried) {
        rdd = builder.stored(carried.location, 'checkpoint', carried.partitions, carried.hashPartitioned, `${s.kind} ${s.id} of interval ${j}, before the upgrade`);
        if (s.migrateCarried) rdd = rdd.mapRecords(s.migrateCarried);
        // The new code's partitions: state repartitioned at the boundary (no shuffle when unchanged).
        if (s.keyedPartitions !== undefined) rdd = (rdd as Rdd<[unknown, unknown]>).partitionBy(s.keyedPartitions);
      } else if (partitions === undefined) {
        rdd = emptyOf(s);
      } else {
        const { tier, location } = persistTarget(s, j, options.checkpointEvery);
        rdd = builder.stored(location, tier, partitions, s.keyedPartitions !== undefined, `${s.kind} ${s.id} of interval ${j}`);
      }
      storedMemo.set(memoKey, rdd);
      return rdd as Rdd<T>;
    },
    sourceSplits(stream) {
      const index = graph.sources.indexOf(stream);
      return inputs.sources[index] ?? [];
    },
    objectSplits(index) {
      const splits = inputs.objects?.[index];
      if (splits === undefined) throw new Error(`internal: store object ${graph.storeObjects[index]} is read at interval ${k} but was not pinned`);
      return splits;
    },
    startsHere(stream) {
      return k === 0 || (inputs.starting?.includes(stream.id) ?? false);
    },
  };

  const emptyOf = (s: DStream<unknown>) =>
    s.keyedPartitions !== undefined ? builder.emptyPartitioned(s.keyedPartitions) : builder.empty();

  for (const stream of graph.streams) if (stream.persisted) gen.rdd(stream);
  for (const output of graph.outputs) {
    const rdd = gen.rdd(output.stream);
    if (rdd) builder.addOutput(output.prepare ? output.prepare(rdd) : rdd, output.name, output.format);
  }
  return { builder, persistedHere };
}
