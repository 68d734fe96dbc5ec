import { RecordWriter } from '../codec/record-codec.ts';
import { partitionOf } from '../codec/stable-hash.ts';
import { keyIdentity } from '../codec/key-identity.ts';
import type { Rdd } from '../rdd/rdd.ts';
import { asPair } from '../rdd/operators.ts';
import { computePartition, refusedRecord, type ComputeEnv } from './compute.ts';

export interface MapOutput {
  /** The map task's one object: every reduce partition's block, back to back. */
  bytes: Uint8Array;
  /** [start, end) of each reduce partition's block in `bytes`. */
  blocks: [number, number][];
  records: number;
}

/**
 * The map side of a shuffle: computes partition `m` of the shuffle's parent and places each
 * record in its reduce partition. With an aggregator, values are combined per key first, so a
 * word count ships one record per distinct word per map task, not one per occurrence.
 */
export async function writeShuffleMap(shuffle: Rdd<unknown>, m: number, env: ComputeEnv): Promise<MapOutput> {
  const node = shuffle.node;
  if (node.kind !== 'shuffle') throw new Error(`${node.id} is not a shuffle`);
  const parent = shuffle.builder.get(node.parent);
  const reducers = node.partitions;
  const writers = Array.from({ length: reducers }, () => new RecordWriter());
  let records = 0;

  const aggregator = shuffle.behaviour.aggregator;
  if (aggregator) {
    // One table for the whole partition; each distinct key is hashed to its reducer once, at the
    // end, not once per occurrence. Insertion order keeps the output deterministic.
    const ctx = env.operatorContext(m, node.label);
    const combined = new Map<unknown, [unknown, unknown]>();
    await computePartition(parent, m, env, (r) => {
      records++;
      try {
        const [k, v] = asPair(r, node.label);
        // An unstorable key has no identity: a bad record of this operator, like a throwing combiner.
        const id = keyIdentity(k);
        const entry = combined.get(id);
        if (entry === undefined) combined.set(id, [k, aggregator.createCombiner(v)]);
        else entry[1] = aggregator.mergeValue(entry[1], v);
      } catch (error) {
        ctx.badRecord(node.label, r, error);
      }
    });
    for (const entry of combined.values()) {
      try {
        writers[partitionOf(entry[0], reducers)]!.write(entry);
      } catch (error) {
        refusedRecord(ctx, node.label, entry, error);
      }
    }
  } else {
    // What the parent's last operator returned is checked here, as it is stored.
    const ctx = env.operatorContext(m, parent.node.label);
    if (node.mode === 'hash') {
      await computePartition(parent, m, env, (r) => {
        try {
          writers[partitionOf(asPair(r, node.label)[0], reducers)]!.write(r);
          records++;
        } catch (error) {
          refusedRecord(ctx, parent.node.label, r, error);
        }
      });
    } else if (node.mode === 'direct') {
      // The operator upstream chose each record's partition (a range partitioner): a bug there, not a bad record, if out of range.
      await computePartition(parent, m, env, (r) => {
        const [q, record] = r as [number, unknown];
        const writer = writers[q];
        if (writer === undefined) throw new RangeError(`internal: ${parent.node.label} placed a record in partition ${q} of ${reducers}`);
        try {
          writer.write(record);
          records++;
        } catch (error) {
          refusedRecord(ctx, parent.node.label, record, error);
        }
      });
    } else {
      // Round-robin, starting at the map partition's own index so small partitions spread out.
      await computePartition(parent, m, env, (r) => {
        try {
          writers[(m + records) % reducers]!.write(r);
          records++;
        } catch (error) {
          refusedRecord(ctx, parent.node.label, r, error);
        }
      });
    }
  }

  const parts = writers.map((w) => w.finish());
  const blocks: [number, number][] = [];
  let offset = 0;
  for (const part of parts) {
    blocks.push([offset, offset + part.length]);
    offset += part.length;
  }
  return { bytes: Buffer.concat(parts), blocks, records };
}
