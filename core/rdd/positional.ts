/**
 * Operators defined by where records are, not by what they are: zipWithIndex (a record's
 * position across partitions), coalesce (adjacent partitions merged), cartesian (every partition
 * of one side with every partition of the other).
 */
import type { Rdd } from './rdd.ts';
import type { NarrowOperator } from './operators.ts';
import { gather, narrowNode, narrowWithSide } from './side-input.ts';
import { checkPartitions } from './rdd.ts';

/**
 * Pairs `[record, index]`, indices counted from 0 in partition order, then record order (Spark's
 * zipWithIndex). Spark runs a job to count the records of each partition first; here that count
 * is a stage of its own (each partition's size, gathered into one partition), which every
 * partition reads to know where its indices start. So the parent is computed twice: cache() it
 * if that is costly.
 */
export function zipWithIndex<T>(rdd: Rdd<T>): Rdd<[T, number]> {
  const counting: NarrowOperator = (emit, ctx) => {
    let count = 0;
    return {
      push: () => void count++,
      end: () => emit([ctx.partition, count]),
    };
  };
  const counts = gather(narrowNode(rdd as Rdd<unknown>, 'zipWithIndex.count', [], counting), 'zipWithIndex.counts');
  const indexing = (side: unknown[]): NarrowOperator => (emit, ctx) => {
    let index = 0;
    for (const [p, count] of side as [number, number][]) if (p < ctx.partition) index += count;
    return {
      push: (r) => emit([r, index++]),
      end() {},
    };
  };
  return narrowWithSide(rdd as Rdd<unknown>, counts, 'zipWithIndex', [], indexing, true);
}

/**
 * At most `partitions` partitions, each a run of adjacent partitions of this one, in order (Spark's
 * coalesce without shuffle): narrow, so no data moves; records keep their order. Asking for as
 * many partitions as there are, or more, gives this dataset back (use repartition to add some).
 */
export function coalesce<T>(rdd: Rdd<T>, partitions: number): Rdd<T> {
  checkPartitions(partitions);
  if (partitions >= rdd.partitions) return rdd;
  return rdd.builder.add<T>({ kind: 'coalesce', parent: rdd.id, partitions, label: `coalesce(${partitions})` });
}

/**
 * Every pair `[a, b]` of a record of this dataset and one of `other` (Spark's cartesian): narrow,
 * one partition per pair of partitions, partition i × j holding the pairs of partition i of this
 * and j of the other, as Spark's. Each task computes one partition of each side, so each side's
 * partitions are computed once per partition of the other: cache() a side that is costly.
 */
export function cartesian<T, U>(rdd: Rdd<T>, other: Rdd<U>): Rdd<[T, U]> {
  if (other.builder !== rdd.builder) throw new Error('cartesian: both datasets must belong to the same job (or interval)');
  const partitions = rdd.partitions * other.partitions;
  if (partitions > 100_000) {
    throw new RangeError(`cartesian of ${rdd.partitions} by ${other.partitions} partitions would have ${partitions}, over 100000: coalesce a side first`);
  }
  return rdd.builder.add<[T, U]>({ kind: 'cartesian', parents: [rdd.id, other.id], partitions, label: 'cartesian' });
}
