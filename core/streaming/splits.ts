import type { Split, SplitRef } from '../rdd/plan.ts';
import { putContentAddressed, type ObjectStore } from '../ports/object-store.ts';
import { keys, type Scope } from '../layout.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../util/map-concurrently.ts';

export interface Upload {
  /** Where the bytes are in the store. */
  key: string;
  /**
   * The version of the object at `key` that was admitted (S3's version id): every read of the
   * upload reads exactly it. Absent where the key itself is immutable (the embedded runtime's pin).
   */
  version?: string;
  /** What sources match their prefix against: the key below `incoming/`. */
  name: string;
  size: number;
}

/**
 * Cuts uploads into about `partitions` splits of similar size (never larger than
 * `maxSplitBytes`): large uploads are cut at arbitrary bytes (the reader finds line starts),
 * small ones are packed together. Deterministic: uploads are taken in key order.
 */
export function planSplits(uploads: Upload[], partitions: number, maxSplitBytes: number): Split[] {
  const sorted = uploads.filter((u) => u.size > 0).sort(byKeyAndVersion);
  const total = sorted.reduce((n, u) => n + u.size, 0);
  if (total === 0) return [];
  const target = Math.max(1, Math.min(maxSplitBytes, Math.ceil(total / Math.max(1, partitions))));
  const splits: Split[] = [];
  let current: Split = { ranges: [] };
  let room = target;
  for (const upload of sorted) {
    let start = 0;
    while (start < upload.size) {
      const end = Math.min(upload.size, start + room);
      current.ranges.push({ key: upload.key, version: upload.version, start, end });
      room -= end - start;
      start = end;
      if (room === 0) {
        splits.push(current);
        current = { ranges: [] };
        room = target;
      }
    }
  }
  if (current.ranges.length > 0) splits.push(current);
  return splits;
}

/** Two uploads of one key (two versions) keep the order of their version ids: deterministic either way. */
export function byKeyAndVersion(a: Upload, b: Upload): number {
  if (a.key !== b.key) return a.key < b.key ? -1 : 1;
  const [va, vb] = [a.version ?? '', b.version ?? ''];
  return va < vb ? -1 : va > vb ? 1 : 0;
}

/** Stores each split in its own object of the scope's lineage (before the record that names them) and returns the plan's references. */
export function spillSplits(store: ObjectStore, scope: Scope, splits: Split[]): Promise<SplitRef[]> {
  return mapConcurrently(splits, STORE_CONCURRENCY, async (split) => ({
    hash: (await putContentAddressed(store, (hash) => keys.lineageSplit(scope, hash), split)).hash,
    ranges: split.ranges.length,
    bytes: split.ranges.reduce((n, r) => n + r.end - r.start, 0),
  }));
}
