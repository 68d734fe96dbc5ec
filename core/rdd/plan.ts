/**
 * The serialisable description of an RDD DAG: what the lineage record stores and what a task
 * recomputes from. Functions are not serialisable, so a node names its function by a hash of its
 * source; the task rebuilds the same DAG from the same pipeline module and checks the hashes match.
 */

/** Bytes [start, end) of one uploaded object, in the version pinned when it was admitted. */
export interface InputRange {
  key: string;
  /** The store's version of the object (S3's version id); absent where the key itself never changes. */
  version?: string;
  start: number;
  end: number;
}

/** One source partition: byte ranges of one or more uploads, read in order. */
export interface Split {
  ranges: InputRange[];
}

/**
 * A split as the plan holds it: its ranges are kept in an object of their own (`keys.lineageSplit`),
 * so the plan stays small however many uploads an interval has, and a task reads only its split.
 */
export interface SplitRef {
  /** Hash of the split's stored JSON: names its object, lets the reader check it, and puts its content in the plan hash. */
  hash: string;
  /** How many byte ranges it holds, and the bytes they cover: for display. */
  ranges: number;
  bytes: number;
}

export type SourceFormat = 'text' | 'jsonl';

interface NodeBase {
  id: string;
  /** Number of partitions. */
  partitions: number;
  /** Set when the records are known to be placed by the hash partitioner over `partitions`. */
  hashPartitioned?: boolean;
  /** What the user wrote, for display: operator name and where it came from. */
  label: string;
}

export type PlanNode =
  | (NodeBase & { kind: 'source'; format: SourceFormat; splits: SplitRef[] })
  | (NodeBase & { kind: 'values'; data: unknown[][] })
  /**
   * `side`, if set, is a one-partition shuffle the operator reads whole before its partition (in
   * the same task): what it needs to know of the whole dataset, as range bounds from a sample, or
   * the record counts of earlier partitions. Its map stage runs first, as any shuffle's does.
   */
  | (NodeBase & { kind: 'narrow'; parent: string; fn: string; side?: string })
  | (NodeBase & { kind: 'union'; parents: string[] })
  /**
   * `direct`: each record is `[reduce partition, record]`, placed there (a range partitioner
   * computed it upstream); the record alone is written.
   */
  | (NodeBase & { kind: 'shuffle'; parent: string; mode: 'hash' | 'round-robin' | 'direct'; combine?: string })
  /**
   * With `fold` (Rdd.foldState), not groups: parents are [state, batch], and each key's prior state
   * and values of the batch are folded by the named function, whose records the node holds.
   */
  | (NodeBase & { kind: 'cogroup'; parents: string[]; fold?: string })
  /** Partition q is the parent's partitions coalescedRange(q) one after another (no shuffle). */
  | (NodeBase & { kind: 'coalesce'; parent: string })
  /** Partition p pairs every record of partition ⌊p / m⌋ of the first parent with every record of p mod m of the second (m: its partitions). */
  | (NodeBase & { kind: 'cartesian'; parents: [string, string] })
  | (NodeBase & { kind: 'stored'; location: string; tier: 'cache' | 'checkpoint' });

export type PlanNodeKind = PlanNode['kind'];

/** Parents through which a partition is computed in the same task (no shuffle between). */
export function narrowParents(node: PlanNode): string[] {
  switch (node.kind) {
    case 'narrow':
    case 'coalesce':
      return [node.parent];
    case 'union':
    case 'cartesian':
      return node.parents;
    default:
      return [];
  }
}

/** Which parent partitions partition q of a coalesce of `from` partitions into `to` holds: [start, end). */
export function coalescedRange(q: number, from: number, to: number): [number, number] {
  return [Math.floor((q * from) / to), Math.floor(((q + 1) * from) / to)];
}

/**
 * The partitions of each parent that partition p of a narrow node (coalesce, cartesian, union,
 * narrow) is computed from, in the order it reads them: one definition for computing a partition
 * and for telling the scheduler which shuffle blocks that reads.
 */
export function partitionsRead(node: PlanNode, p: number, partitionsOf: (id: string) => number): [string, number][] {
  switch (node.kind) {
    case 'narrow':
      return [[node.parent, p]];
    case 'coalesce': {
      const [start, end] = coalescedRange(p, partitionsOf(node.parent), node.partitions);
      return Array.from({ length: end - start }, (_, i) => [node.parent, start + i]);
    }
    case 'cartesian': {
      const m = partitionsOf(node.parents[1]);
      return [
        [node.parents[0], Math.floor(p / m)],
        [node.parents[1], p % m],
      ];
    }
    case 'union': {
      let offset = 0;
      for (const parent of node.parents) {
        const n = partitionsOf(parent);
        if (p < offset + n) return [[parent, p - offset]];
        offset += n;
      }
      throw new RangeError(`partition ${p} is beyond union ${node.id} (${node.partitions} partitions)`);
    }
    default:
      return [];
  }
}
