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
  | (NodeBase & { kind: 'narrow'; parent: string; fn: string })
  | (NodeBase & { kind: 'union'; parents: string[] })
  | (NodeBase & { kind: 'shuffle'; parent: string; mode: 'hash' | 'round-robin'; combine?: string })
  | (NodeBase & { kind: 'cogroup'; parents: string[] })
  | (NodeBase & { kind: 'stored'; location: string; tier: 'cache' | 'checkpoint' });

export type PlanNodeKind = PlanNode['kind'];

/** Parents through which a partition is computed in the same task (no shuffle between). */
export function narrowParents(node: PlanNode): string[] {
  switch (node.kind) {
    case 'narrow':
      return [node.parent];
    case 'union':
      return node.parents;
    default:
      return [];
  }
}
