import { ObjectNotFoundError, readRange, type ObjectStore } from '../ports/object-store.ts';
import { decodeRecords } from '../codec/record-codec.ts';
import { keyIdentity } from '../codec/key-identity.ts';
import type { Rdd } from '../rdd/rdd.ts';
import { asPair, NotAPairError, type Emit, type OperatorContext } from '../rdd/operators.ts';
import { LinePosition, loadSplit, readSplitLines } from './split-reader.ts';
import { UnstorableValueError } from '../codec/storable.ts';
import { keys, type Scope } from '../layout.ts';
import { partitionsRead } from '../rdd/plan.ts';

/** A byte range of one map task's output object: the block of one reduce partition. */
export type BlockRef = [key: string, start: number, end: number];

/** An input the task needs is gone (the cache tier may vanish): the driver recomputes it. */
export class MissingInputError extends Error {
  constructor(readonly missing: string[]) {
    super(`missing input: ${missing.join(', ')}`);
    this.name = 'MissingInputError';
  }
}

/** What computing a partition may use, besides the plan. */
export interface ComputeEnv {
  /** Where the compute reads: a task's TaskReads, which has the reads it plans on their way. */
  store: ObjectStore;
  /** The scope whose plan is computed: where its source splits are kept. */
  scope: Scope;
  maxLineBytes: number;
  /** Blocks to read for reduce partition `p` of shuffle node `rdd`, in map-partition order. */
  shuffleBlocks(rdd: string, p: number): BlockRef[];
  /** `label` names the operator whose functions run under the context, for bad-record reports. */
  operatorContext(p: number, label?: string): OperatorContext;
  /** The input line being processed, while a source is read: what a bad record's report names. */
  position: LinePosition;
  /** Checked between chunks of input: a task whose work is no longer needed stops there. */
  signal?: AbortSignal;
  /**
   * Records read from sources and stored partitions; bytes of source splits; and records read
   * from each source partition (`<source node>/<partition>`), which the driver counts once
   * however many stages read it.
   */
  input: { records: number; bytes: number; sources: Record<string, number> };
  /** A result stage's persisted RDDs, by location, each to the RDD that computes it: read from memory, not the store. */
  inMemory?: ReadonlyMap<string, string>;
  /** Nodes that more than one consumer of the task reads (sharedNodes): each partition is computed once, held, and replayed. */
  memo?: { shared: ReadonlySet<string>; records: Map<string, unknown[]> };
}

/**
 * The nodes a task computing `roots` would otherwise compute more than once: those read by more
 * than one consumer (a root, or a node's parent edge), seeing through `inMemory` persisted RDDs.
 */
export function sharedNodes(rdds: { get(id: string): Rdd<unknown> }, roots: string[], inMemory: ReadonlyMap<string, string>): Set<string> {
  const readers = new Map<string, number>();
  const visit = (id: string): void => {
    const n = (readers.get(id) ?? 0) + 1;
    readers.set(id, n);
    if (n > 1) return;
    const node = rdds.get(id).node;
    switch (node.kind) {
      case 'stored': {
        const producer = inMemory.get(node.location);
        if (producer !== undefined) visit(producer);
        return;
      }
      case 'narrow':
        if (node.side) visit(node.side);
        return visit(node.parent);
      case 'coalesce':
        return visit(node.parent);
      case 'union':
      case 'cogroup':
      case 'cartesian':
        return node.parents.forEach(visit);
      default:
        return;
    }
  };
  roots.forEach(visit);
  return new Set([...readers].filter(([, n]) => n > 1).map(([id]) => id));
}

/**
 * Computes partition `p` of `rdd`, pushing each record to `emit` in a deterministic order:
 * sources in byte order, shuffle reads in map-partition order, keyed groups in first-seen order.
 */
export async function computePartition(rdd: Rdd<unknown>, p: number, env: ComputeEnv, emit: Emit): Promise<void> {
  if (!env.memo?.shared.has(rdd.id)) return computeNode(rdd, p, env, emit);
  const key = `${rdd.id}/${p}`;
  let records = env.memo.records.get(key);
  if (records === undefined) {
    const held: unknown[] = [];
    await computeNode(rdd, p, env, (r) => held.push(r));
    env.memo.records.set(key, (records = held));
  }
  for (const r of records) emit(r);
}

async function computeNode(rdd: Rdd<unknown>, p: number, env: ComputeEnv, emit: Emit): Promise<void> {
  const node = rdd.node;
  const builder = rdd.builder;
  switch (node.kind) {
    case 'source': {
      const split = await loadSplit(env.store, env.scope, node.splits[p]!);
      for (const r of split.ranges) env.input.bytes += r.end - r.start;
      const ctx = env.operatorContext(p);
      let read = 0;
      const counted: Emit = (r) => {
        read++;
        emit(r);
      };
      const onLine: (line: string) => void =
        node.format === 'text'
          ? counted
          : (line) => {
              if (line.trim() === '') return;
              let value: unknown;
              try {
                value = JSON.parse(line);
              } catch {
                // JSON.parse's message quotes the line, and messages reach logs: the line is the record.
                ctx.badRecord('jsonLines', line, new SyntaxError('not valid JSON'));
                return;
              }
              counted(value);
            };
      const options = { maxLineBytes: env.maxLineBytes, position: env.position, ...(env.signal ? { signal: env.signal } : {}) };
      await readSplitLines(env.store, split, options, {
        line: onLine,
        badLine: (where, reason, raw) =>
          ctx.badRecord(
            'source',
            { object: where.key, offset: where.offset, length: where.length, ...(raw ? { base64: Buffer.from(raw).toString('base64') } : {}) },
            // The report names the upload and offset, from the position the reader set for this line.
            new Error(reason),
          ),
      });
      // What comes next (a map-side combine's output, a whole partition) is at no single line.
      env.position.clear();
      env.input.records += read;
      env.input.sources[`${node.id}/${p}`] = read;
      return;
    }
    case 'values': {
      for (const r of node.data[p] ?? []) emit(r);
      return;
    }
    case 'narrow': {
      let operator = rdd.behaviour.operator!;
      if (node.side) {
        const side: unknown[] = [];
        await computePartition(builder.get(node.side), 0, env, (r) => side.push(r));
        operator = rdd.behaviour.withSide!(side);
      }
      const pusher = operator(emit, env.operatorContext(p, node.label));
      await computePartition(builder.get(node.parent), p, env, (r) => pusher.push(r));
      pusher.end();
      return;
    }
    case 'union':
    case 'coalesce': {
      for (const [parent, q] of partitionsRead(node, p, (id) => builder.get(id).partitions)) await computePartition(builder.get(parent), q, env, emit);
      return;
    }
    case 'cartesian': {
      const [[left, i], [right, j]] = partitionsRead(node, p, (id) => builder.get(id).partitions) as [[string, number], [string, number]];
      // The second side is held; the first streams past it, as Spark's CartesianRDD iterates.
      const held: unknown[] = [];
      await computePartition(builder.get(right), j, env, (r) => held.push(r));
      await computePartition(builder.get(left), i, env, (a) => {
        for (const b of held) emit([a, b]);
      });
      return;
    }
    case 'stored': {
      const producer = env.inMemory?.get(node.location);
      // Written by this very task: computed here (and still written to the store by its sink).
      if (producer !== undefined) return computePartition(builder.get(producer), p, env, emit);
      const key = keys.persisted(node.location, p);
      const bytes = await env.store.get(key);
      if (!bytes) throw new MissingInputError([key]);
      decodeRecords(bytes, (r) => {
        env.input.records++;
        emit(r);
      });
      return;
    }
    case 'shuffle': {
      const aggregator = rdd.behaviour.aggregator;
      if (!aggregator) {
        await readBlocks(env, node.id, p, emit);
        return;
      }
      const combined = new Map<unknown, [unknown, unknown]>();
      const ctx = env.operatorContext(p);
      await readBlocks(env, node.id, p, (r) => {
        const [k, c] = r as [unknown, unknown];
        const id = keyIdentity(k);
        const entry = combined.get(id);
        if (entry === undefined) {
          combined.set(id, [k, c]);
          return;
        }
        try {
          entry[1] = aggregator.mergeCombiners(entry[1], c);
        } catch (error) {
          ctx.badRecord(node.label, r, error);
        }
      });
      for (const entry of combined.values()) emit(entry);
      return;
    }
    case 'cogroup': {
      if (node.fold !== undefined) return foldPartition(rdd, p, env, emit);
      const n = node.parents.length;
      const groups = new Map<unknown, [unknown, unknown[][]]>();
      for (let i = 0; i < n; i++) {
        await computePartition(builder.get(node.parents[i]!), p, env, (r) => {
          const [k, v] = asPair(r, 'cogroup');
          const id = keyIdentity(k);
          let entry = groups.get(id);
          if (entry === undefined) {
            entry = [k, Array.from({ length: n }, () => [])];
            groups.set(id, entry);
          }
          entry[1][i]!.push(v);
        });
      }
      for (const entry of groups.values()) emit(entry);
      return;
    }
  }
}

/**
 * A state fold (Rdd.foldState): the state partition into a map by key identity, then the
 * interval's values into it, then the fold function over each key. Keys come out as a cogroup's
 * would (the state's in its order, then new keys in first-seen order), values in the order read,
 * and the first state of a key counts, as a cogroup's first value did.
 */
async function foldPartition(rdd: Rdd<unknown>, p: number, env: ComputeEnv, emit: Emit): Promise<void> {
  const node = rdd.node as Extract<typeof rdd.node, { kind: 'cogroup' }>;
  const [stateId, batchId] = node.parents as [string, string];
  // No array for a key without values until it is folded: most of a state's keys get none.
  type Entry = { key: unknown; prior: unknown; had: boolean; values?: unknown[] };
  const entries = new Map<unknown, Entry>();
  await computePartition(rdd.builder.get(stateId), p, env, (r) => {
    const [k, s] = asPair(r, 'cogroup');
    const id = keyIdentity(k);
    if (!entries.has(id)) entries.set(id, { key: k, prior: s, had: true });
  });
  await computePartition(rdd.builder.get(batchId), p, env, (r) => {
    const [k, v] = asPair(r, 'cogroup');
    const id = keyIdentity(k);
    const entry = entries.get(id);
    if (entry === undefined) entries.set(id, { key: k, prior: undefined, had: false, values: [v] });
    else (entry.values ??= []).push(v);
  });
  const fold = rdd.behaviour.fold!;
  const ctx = env.operatorContext(p, node.label);
  for (const entry of entries.values()) {
    // A fresh array, as a cogroup's: the user's function may change what it is given.
    const values = entry.values ?? [];
    let out: unknown[];
    try {
      const produced = fold(entry.key, entry.prior, values);
      out = Array.isArray(produced) ? produced : Array.from(produced);
    } catch (error) {
      // Reported as the cogroup group it stands for: [key, [states, values]].
      ctx.badRecord(node.label, [entry.key, [entry.had ? [entry.prior] : [], values]], error);
      continue;
    }
    for (let i = 0; i < out.length; i++) emit(out[i]);
  }
}

/**
 * A record that a writer refused as unstorable (say, `undefined` inside it) is a bad record of the
 * operator that produced it, under the pipeline's policy; any other error is rethrown.
 */
export function refusedRecord(ctx: OperatorContext, operator: string, record: unknown, error: unknown): void {
  if (error instanceof NotAPairError) return ctx.badRecord(operator, record, error);
  if (!(error instanceof UnstorableValueError)) throw error;
  // The writer counts records (`record[41][1]`); the report shows this record alone.
  const path = error.path.replace(/^record\[\d+\]/, 'record');
  ctx.badRecord(operator, record, new UnstorableValueError(path, error.message.replace(error.path, path)));
}

/**
 * Reads the blocks in map-partition order and decodes each as it comes. They are read ahead, several
 * at once, by the task's store (TaskReads, which runTask plans with every block the task reads).
 */
async function readBlocks(env: ComputeEnv, rdd: string, p: number, emit: Emit): Promise<void> {
  const missing: string[] = [];
  for (const [key, start, end] of env.shuffleBlocks(rdd, p)) {
    if (end <= start) continue;
    env.signal?.throwIfAborted();
    let bytes: Uint8Array;
    try {
      bytes = await readRange(env.store, key, start, end);
    } catch (error) {
      if (!(error instanceof ObjectNotFoundError)) throw error;
      // Read on: the driver recomputes every missing map output at once.
      missing.push(key);
      continue;
    }
    if (missing.length === 0) decodeRecords(bytes, emit);
  }
  if (missing.length > 0) throw new MissingInputError(missing);
}
