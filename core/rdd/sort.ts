/**
 * sortByKey and sortBy: a total order across part files, as Spark's. Three stages:
 *   1. each partition of the parent sends a sample of its keys (range-partitioner.ts), gathered
 *      into one partition;
 *   2. each partition of the parent is computed again, reads the gathered samples, derives the
 *      same range bounds from them, and sends each pair to its range (a `direct` shuffle);
 *   3. each range is sorted: by key, then by value, in the order of order.ts.
 * The parent is computed twice (once to sample, once to place), as in Spark: cache() it if that
 * is costly. Ties between records that compare equal keep the order they arrive in (map partition,
 * then position), which the lineage fixes, so the output is the same bytes on every run.
 */
import type { Rdd } from './rdd.ts';
import { asPair, mapPartitionsOperator, type NarrowOperator } from './operators.ts';
import { compareStorable } from './order.ts';
import { KeyReservoir, rangeBounds, rangePartition, sampleSizePerPartition, type PartitionSample } from './range-partitioner.ts';
import { gather, narrowNode, narrowWithSide } from './side-input.ts';
import { checkPartitions } from './rdd.ts';

export interface SortOptions {
  /** @default true */
  ascending?: boolean;
  /** Partitions of the result, each a range of keys; @default the parent's partitions */
  partitions?: number;
}

export function sortByKey<K, V>(rdd: Rdd<readonly [K, V]>, options: SortOptions = {}): Rdd<[K, V]> {
  const ascending = options.ascending ?? true;
  if (typeof ascending !== 'boolean') throw new TypeError(`sortByKey's ascending must be true or false, got ${JSON.stringify(ascending)}`);
  const partitions = checkPartitions(options.partitions ?? Math.max(1, rdd.partitions));
  const label = `sortByKey(${ascending ? 'ascending' : 'descending'}, ${partitions})`;
  const parent = rdd as Rdd<unknown>;

  const sampleSize = sampleSizePerPartition(partitions, rdd.partitions);
  const sampling: NarrowOperator = (emit, ctx) => {
    const reservoir = new KeyReservoir(sampleSize, ctx.partition);
    return {
      push(r) {
        try {
          reservoir.add(asPair(r, label)[0]);
        } catch (error) {
          ctx.badRecord(label, r, error);
        }
      },
      end: () => emit(reservoir.sample()),
    };
  };
  const samples = gather(narrowNode(parent, `${label}.sample`, [], sampling), `${label}.samples`);

  const placing = (side: unknown[]): NarrowOperator => {
    const bounds = rangeBounds(side as PartitionSample[], partitions);
    return (emit, ctx) => ({
      push(r) {
        let q: number;
        try {
          q = rangePartition(asPair(r, label)[0], bounds, partitions, ascending);
        } catch (error) {
          return ctx.badRecord(label, r, error);
        }
        emit([q, r]);
      },
      end() {},
    });
  };
  const placed = narrowWithSide(parent, samples, `${label}.place`, [], placing, true);
  const ranges = rdd.builder.add({ kind: 'shuffle', parent: placed.id, mode: 'direct', partitions, label });

  const byKeyThenValue = (a: unknown, b: unknown) => {
    const [ka, va] = a as [unknown, unknown];
    const [kb, vb] = b as [unknown, unknown];
    return compareStorable(ka, kb) || compareStorable(va, vb);
  };
  const order = ascending ? byKeyThenValue : (a: unknown, b: unknown) => byKeyThenValue(b, a);
  return narrowNode(ranges, `${label}.sort`, [], mapPartitionsOperator(label, (records) => records.sort(order)), true);
}

export function sortBy<T, K>(rdd: Rdd<T>, f: (record: T) => K, options: SortOptions = {}): Rdd<T> {
  return sortByKey(rdd.mapRecords((record): [K, T] => [f(record), record]), options).values();
}
