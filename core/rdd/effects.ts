/**
 * foreachPartition: user code run for its effect, on the workers. Spark runs it once per
 * partition per successful job; here, as every task may run more than once (a retry after a
 * failure, a speculative copy beside a slow one, both at the same time), it runs at least once per
 * partition: make it idempotent (key what it writes by interval and partition). It sees the same
 * records every time, since they are a pure function of lineage. An error it throws fails the task
 * like any other (retried, then dead-lettered), not a record. The records are an output of the job
 * (or interval), so they are computed even if nothing else reads them, and the interval commits
 * only after every partition's call returned.
 */
import type { Rdd } from './rdd.ts';
import { functionHash } from '../util/hash.ts';

export type PartitionEffect<T> = (records: T[], partition: number) => void | Promise<void>;

export function foreachPartition<T>(rdd: Rdd<T>, f: PartitionEffect<T>): void {
  if (typeof f !== 'function') throw new TypeError('foreachPartition needs a function (records, partition) => void');
  const node = rdd.builder.add<T>(
    { kind: 'narrow', parent: rdd.id, fn: `foreachPartition:${functionHash(f)}`, partitions: rdd.partitions, label: 'foreachPartition' },
    // Records pass through; the task hands the partition's records to f (task.ts, output format 'foreach').
    { operator: (emit) => ({ push: emit, end() {} }), foreach: f as PartitionEffect<unknown> },
  );
  node.builder.addOutput(node as Rdd<unknown>, `foreachPartition-${node.id}`, 'foreach');
}
