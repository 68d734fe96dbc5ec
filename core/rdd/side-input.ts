/**
 * The building blocks of operators that need something of the whole dataset before they can
 * compute a partition (Spark runs a job on the driver for it: the sample of sortByKey, the
 * partition sizes of zipWithIndex). Here that is a stage of its own: what is needed is gathered
 * by a shuffle into one partition, and the operator's tasks read that partition whole, as a side
 * input, before their own. It stays lineage: the gathered records are a pure function of the
 * parent, so every run and every recomputation sees the same ones, and lost blocks are
 * recomputed like any shuffle's.
 */
import type { Rdd } from './rdd.ts';
import type { NarrowOperator } from './operators.ts';
import { functionHash } from '../util/hash.ts';

/** All records of `rdd` in one partition, in partition order then record order (a shuffle into one partition). */
export function gather<T>(rdd: Rdd<T>, label: string): Rdd<T> {
  return rdd.builder.add<T>({ kind: 'shuffle', parent: rdd.id, mode: 'round-robin', partitions: 1, label });
}

/** The plan's name for a narrow operator: its label and the source hashes of the user functions in it. */
function fnName(label: string, fns: Function[]): string {
  return fns.length === 0 ? label : `${label}:${fns.map(functionHash).join(',')}`;
}

/**
 * A narrow node over `rdd` computed by `operator`; `fns` are the user functions it runs, which identify it.
 * `keepsEmpty`: the operator makes nothing from an empty partition (see NodeBehaviour.keepsEmpty).
 */
export function narrowNode<U>(rdd: Rdd<unknown>, label: string, fns: Function[], operator: NarrowOperator, keepsEmpty = false): Rdd<U> {
  return rdd.builder.add<U>({ kind: 'narrow', parent: rdd.id, fn: fnName(label, fns), partitions: rdd.partitions, label }, { operator, keepsEmpty });
}

/**
 * A narrow node over `rdd` whose operator is made, in each task, from the records of `side` (a
 * one-partition RDD from `gather`, read whole first).
 */
export function narrowWithSide<U>(
  rdd: Rdd<unknown>,
  side: Rdd<unknown>,
  label: string,
  fns: Function[],
  withSide: (side: unknown[]) => NarrowOperator,
  keepsEmpty = false,
): Rdd<U> {
  if (side.node.kind !== 'shuffle' || side.partitions !== 1) throw new Error(`internal: the side input of ${label} must be gathered into one partition`);
  return rdd.builder.add<U>(
    { kind: 'narrow', parent: rdd.id, side: side.id, fn: fnName(label, fns), partitions: rdd.partitions, label },
    { withSide, keepsEmpty },
  );
}

export function checkCount(n: number, operator: string): number {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`${operator} needs a whole number of records, 0 or more, got ${n}`);
  return n;
}
