/**
 * Spark's RangePartitioner, deterministically: keys are placed in partitions by bounds drawn from
 * a sample of the keys, so that partition i holds only keys ordered before those of partition
 * i + 1 (the order of order.ts). The sample is a reservoir of each partition's keys, drawn with a
 * generator seeded by the partition's index: the same records give the same sample, and so the
 * same bounds, on every run and recomputation.
 */
import { stableHash } from '../codec/stable-hash.ts';
import { seededRandom } from '../util/seeded-random.ts';
import { compareStorable } from './order.ts';

/** One partition's sample: how many keys it has, and a uniform sample of them. */
export type PartitionSample = [count: number, keys: unknown[]];

/** Keys sampled per parent partition, as Spark sizes it: 3 × 20 per output partition, spread over the parent's. */
export function sampleSizePerPartition(partitions: number, parentPartitions: number): number {
  const total = Math.min(20 * partitions, 1e6);
  return Math.ceil((3 * total) / Math.max(1, parentPartitions));
}

/** Reservoir sampling, keyed by the partition index: deterministic, one pass, `size` keys held. */
export class KeyReservoir {
  private readonly random: () => number;
  readonly keys: unknown[] = [];
  count = 0;

  constructor(
    private readonly size: number,
    partition: number,
  ) {
    this.random = seededRandom(stableHash(['range-sample', partition]));
  }

  add(key: unknown): void {
    const i = this.count++;
    if (i < this.size) {
      this.keys.push(key);
      return;
    }
    const j = Math.floor(this.random() * (i + 1));
    if (j < this.size) this.keys[j] = key;
  }

  sample(): PartitionSample {
    return [this.count, this.keys];
  }
}

/**
 * At most `partitions - 1` strictly increasing bounds splitting the sampled keys into ranges of
 * about equal weight, each key weighing for the keys its partition's sample stands for (Spark's
 * determineBounds). Fewer when there are fewer distinct keys: some partitions then stay empty.
 */
export function rangeBounds(samples: PartitionSample[], partitions: number): unknown[] {
  const weighted: [unknown, number][] = [];
  for (const [count, keys] of samples) {
    if (keys.length === 0) continue;
    const weight = count / keys.length;
    for (const key of keys) weighted.push([key, weight]);
  }
  // Stable over the gathered order (partition order), so equal keys sum their weights the same way every time.
  weighted.sort((a, b) => compareStorable(a[0], b[0]));
  const total = weighted.reduce((sum, [, w]) => sum + w, 0);
  const step = total / partitions;
  const bounds: unknown[] = [];
  let cumulative = 0;
  let target = step;
  for (const [key, weight] of weighted) {
    if (bounds.length >= partitions - 1) break;
    cumulative += weight;
    if (cumulative >= target) {
      if (bounds.length === 0 || compareStorable(key, bounds[bounds.length - 1]) > 0) {
        bounds.push(key);
        target += step;
      }
    }
  }
  return bounds;
}

/**
 * The partition of `key`: the first range whose upper bound is not below it (the last range
 * takes what is above every bound); counted from the other end when descending.
 */
export function rangePartition(key: unknown, bounds: unknown[], partitions: number, ascending: boolean): number {
  let lo = 0;
  let hi = bounds.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareStorable(bounds[mid], key) < 0) lo = mid + 1;
    else hi = mid;
  }
  return ascending ? lo : partitions - 1 - lo;
}
