import type { OutputSpec, PlanBuilder } from '../rdd/rdd.ts';
import { partitionsRead } from '../rdd/plan.ts';

/**
 * A stage: the tasks that compute one RDD's partitions in one pass each, reading shuffles and
 * persisted RDDs at its edges. Shuffles split a plan into stages; so does a persisted RDD, which
 * is written once and read by everything after it.
 */
export interface StageSpec {
  id: string;
  kind: 'shuffle-map' | 'persist' | 'output';
  /** The shuffle node (shuffle-map), or the RDD written (persist, output). */
  rdd: string;
  /** How many tasks: the partitions of the RDD computed. */
  tasks: number;
  /** Stages of the same scope that must finish first. */
  parents: string[];
  /** Locations of persisted RDDs read; those not written in this scope come from earlier ones. */
  storedReads: { location: string; partitions: number }[];
  output?: { name: string; format: OutputSpec['format'] };
  location?: string;
}

export const stageIds = {
  shuffleMap: (rdd: string) => `map-${rdd}`,
  /** Named by where it writes: the same RDD may be persisted for two streams. */
  persist: (location: string) => `persist-${location.slice(location.lastIndexOf('/') + 1)}`,
  output: (name: string) => `out-${name}`,
};

/** The stages of a plan, parents before children. */
export function planStages(builder: PlanBuilder): StageSpec[] {
  const stages = new Map<string, StageSpec>();
  const persistByLocation = new Map(builder.persists.map((p) => [p.location, p]));

  const reads = (root: string) => {
    const storedReads: StageSpec['storedReads'] = [];
    const parents = new Set<string>();
    const seen = new Set<string>();
    const visit = (id: string) => {
      if (seen.has(id)) return;
      seen.add(id);
      const node = builder.get(id).node;
      switch (node.kind) {
        case 'shuffle':
          parents.add(addShuffleMap(node.id));
          return;
        case 'stored': {
          storedReads.push({ location: node.location, partitions: node.partitions });
          const producer = persistByLocation.get(node.location);
          if (producer) parents.add(addPersist(producer.rdd.id, producer.location));
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
    visit(root);
    return { storedReads, parents: [...parents] };
  };

  const add = (spec: Omit<StageSpec, 'parents' | 'storedReads'>, root: string) => {
    if (stages.has(spec.id)) return spec.id;
    const r = reads(root);
    stages.set(spec.id, { ...spec, ...r });
    return spec.id;
  };

  const addShuffleMap = (shuffleId: string): string => {
    const node = builder.get(shuffleId).node;
    if (node.kind !== 'shuffle') throw new Error(`internal: ${shuffleId} is not a shuffle`);
    const tasks = builder.get(node.parent).partitions;
    return add({ id: stageIds.shuffleMap(shuffleId), kind: 'shuffle-map', rdd: shuffleId, tasks }, node.parent);
  };

  const addPersist = (rdd: string, location: string): string =>
    add({ id: stageIds.persist(location), kind: 'persist', rdd, tasks: builder.get(rdd).partitions, location }, rdd);

  for (const p of builder.persists) addPersist(p.rdd.id, p.location);
  for (const o of builder.outputs) {
    add({ id: stageIds.output(o.name), kind: 'output', rdd: o.rdd.id, tasks: o.rdd.partitions, output: { name: o.name, format: o.format } }, o.rdd.id);
  }
  return [...stages.values()];
}

/**
 * Which partitions of each shuffle partition `p` of `root` reads, within its stage, ascending: the
 * path computePartition takes, through narrow dependencies (partitionsRead), cogroups (the same
 * partition of each parent) and side inputs (a one-partition shuffle, read whole). A coalesce or
 * a cartesian product may read several partitions of one shuffle.
 */
export function shufflePartitionsRead(builder: PlanBuilder, root: string, p: number): Map<string, number[]> {
  const read = new Map<string, Set<number>>();
  const partitionsOf = (id: string) => builder.get(id).partitions;
  const visit = (id: string, q: number): void => {
    const node = builder.get(id).node;
    switch (node.kind) {
      case 'shuffle': {
        let parts = read.get(node.id);
        if (!parts) read.set(node.id, (parts = new Set()));
        parts.add(q);
        return;
      }
      case 'cogroup':
        return node.parents.forEach((parent) => visit(parent, q));
      case 'narrow':
        if (node.side) visit(node.side, 0);
        break;
    }
    for (const [parent, r] of partitionsRead(node, q, partitionsOf)) visit(parent, r);
  };
  visit(root, p);
  return new Map([...read].map(([id, parts]) => [id, [...parts].sort((a, b) => a - b)]));
}

/**
 * The shuffles task `p` of a stage reads, each with the reduce partitions it reads. A shuffle-map
 * stage computes the shuffle's parent; the shuffle itself is read on the other side.
 */
export function stageShuffleReads(builder: PlanBuilder, spec: StageSpec, p: number): Map<string, number[]> {
  const root = spec.kind === 'shuffle-map' ? (builder.get(spec.rdd).node as { parent: string }).parent : spec.rdd;
  return shufflePartitionsRead(builder, root, p);
}
