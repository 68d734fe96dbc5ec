/**
 * take, first, top and takeOrdered. In Spark these are actions that bring records to the driver.
 * Here, as `count` and `reduce` are, they are transformations giving a small RDD of one partition:
 * inside a stream it is the interval's result (save it, or `foreachRDD` it), and in a batch job
 * `collect(name)` brings it back. Each partition keeps its own candidates first, and one task
 * picks among them, so at most n records per partition cross the shuffle.
 */
import type { Rdd } from './rdd.ts';
import { mapPartitionsOperator, type NarrowOperator } from './operators.ts';
import { compareStorable, descending, type Comparator } from './order.ts';
import { checkCount, gather, narrowNode } from './side-input.ts';

/** The first n records: of partition 0 first, then 1, and so on, each in its order (Spark's take). */
export function take<T>(rdd: Rdd<T>, n: number): Rdd<T> {
  checkCount(n, 'take');
  const label = `take(${n})`;
  const firstN: NarrowOperator = (emit) => {
    let taken = 0;
    return {
      push(r) {
        if (taken < n) {
          taken++;
          emit(r);
        }
      },
      end() {},
    };
  };
  const candidates = narrowNode<T>(rdd as Rdd<unknown>, label, [], firstN, true);
  // The gather reads map outputs in partition order, so the first n of it are the first n overall.
  return narrowNode<T>(gather(candidates, label) as Rdd<unknown>, label, [], firstN, true);
}

/**
 * The n smallest records in `compare`'s order, smallest first (Spark's takeOrdered). Records that
 * compare equal keep partition order, then their order in the partition.
 */
export function takeOrdered<T>(rdd: Rdd<T>, n: number, compare: Comparator<T> = compareStorable): Rdd<T> {
  return smallest(rdd, n, checkComparator(compare, `takeOrdered(${n})`), compare, `takeOrdered(${n})`);
}

/** The n largest records in `compare`'s order, largest first (Spark's top); equal ones as in takeOrdered. */
export function top<T>(rdd: Rdd<T>, n: number, compare: Comparator<T> = compareStorable): Rdd<T> {
  return smallest(rdd, n, descending(checkComparator(compare, `top(${n})`)), compare, `top(${n})`);
}

/** `userCompare` is what the user wrote: it identifies the operator in the plan. */
function smallest<T>(rdd: Rdd<T>, n: number, order: Comparator<T>, userCompare: Comparator<T>, label: string): Rdd<T> {
  checkCount(n, label);
  // Array.prototype.sort is stable: equal records stay in the order they came.
  const keep = mapPartitionsOperator(label, (records) => (records as T[]).sort(order).slice(0, n));
  const candidates = narrowNode<T>(rdd as Rdd<unknown>, label, [userCompare], keep, true);
  return narrowNode<T>(gather(candidates, label) as Rdd<unknown>, label, [userCompare], keep, true);
}

function checkComparator<T>(compare: Comparator<T>, label: string): Comparator<T> {
  if (typeof compare !== 'function') throw new TypeError(`${label}'s compare must be a function (a, b) => number`);
  return compare;
}
