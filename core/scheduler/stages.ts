import type { OutputSpec, PlanBuilder } from '../rdd/rdd.ts';
import { partitionsRead } from '../rdd/plan.ts';

/** What a result stage writes: a persisted RDD's partition, or an output's. */
export type Sink =
  | { kind: 'persist'; rdd: string; location: string }
  | { kind: 'output'; rdd: string; output: { name: string; format: OutputSpec['format'] } };

/**
 * A stage: the tasks that compute partitions in one pass each, reading shuffles and persisted RDDs
 * at its edges. A shuffle-map stage computes a shuffle's parent and writes its blocks. A result
 * stage is all the narrow work after its edges, as Spark's: every sink (output or persisted RDD)
 * with the same partitions and the same edges is written by one task per partition, which computes
 * each RDD once and, for a persisted RDD read by another of its sinks, reads it from memory.
 */
export type StageSpec = {
  id: string;
  /** How many tasks: the partitions computed. */
  tasks: number;
  /** Stages of the same scope that must finish first. */
  parents: string[];
  /** Locations of persisted RDDs read from the store; those not written in this scope come from earlier ones. */
  storedReads: { location: string; partitions: number }[];
} & (
  | {
      kind: 'shuffle-map';
      /** The shuffle node. */
      rdd: string;
    }
  | {
      kind: 'result';
      /** Persists first, then outputs, each in plan order: the order the task writes them. */
      sinks: Sink[];
      /**
       * Never run with its scope: it rebuilds lost partitions of its one persisted RDD (which a stage
       * of several sinks writes) from shuffles and the store alone, without that stage's other sinks
       * and what they read. Its only parents are shuffle-map stages.
       */
      recovery?: true;
    }
);

export type ResultStage = Extract<StageSpec, { kind: 'result' }>;

export const stageIds = {
  shuffleMap: (rdd: string) => `map-${rdd}`,
  /** Named by where it writes: the same RDD may be persisted for two streams. */
  persist: (location: string) => `persist-${location.slice(location.lastIndexOf('/') + 1)}`,
  output: (name: string) => `out-${name}`,
  /** A stage of several sinks: by the RDDs it writes, which no other stage writes. */
  result: (rdds: string[]) => `result-${rdds.join('-')}`,
  /** The recovery-only stage of a persisted RDD. */
  recover: (location: string) => `recover-${location.slice(location.lastIndexOf('/') + 1)}`,
};

const sinkStageId = (sink: Sink) => (sink.kind === 'persist' ? stageIds.persist(sink.location) : stageIds.output(sink.output.name));

const isRecovery = (spec: StageSpec) => spec.kind === 'result' && spec.recovery === true;

/** Whether a stage writes persisted `location`. */
export function writesLocation(spec: StageSpec, location: string): spec is ResultStage {
  return spec.kind === 'result' && spec.sinks.some((k) => k.kind === 'persist' && k.location === location);
}

/** The stage that writes persisted `location` when its scope runs, if the plan has one. */
export function stageWriting(stages: StageSpec[], location: string): ResultStage | undefined {
  return stages.find((s): s is ResultStage => !isRecovery(s) && writesLocation(s, location));
}

/** The stage that rebuilds lost partitions of persisted `location`: its recovery stage, else the stage that writes it. */
export function stageRecovering(stages: StageSpec[], location: string): ResultStage | undefined {
  return stages.find((s): s is ResultStage => isRecovery(s) && writesLocation(s, location)) ?? stageWriting(stages, location);
}

/** The stages a scope runs: all but recovery stages. */
export function stagesRun(stages: StageSpec[]): StageSpec[] {
  return stages.filter((s) => !isRecovery(s));
}

/** The stage that writes output `name`, if the plan has one. */
export function stageOfOutput(stages: StageSpec[], name: string): ResultStage | undefined {
  return stages.find((s): s is ResultStage => s.kind === 'result' && s.sinks.some((k) => k.kind === 'output' && k.output.name === name));
}

/**
 * What a tree reads at its edges: shuffles, and persisted RDDs from the store. A stored RDD that
 * `inMemory` maps to its producer is seen through (computed in the same task) when every node on
 * the way reads its own partition p for task p; otherwise it is read from the store.
 */
function edgesOf(builder: PlanBuilder, root: string, inMemory: ReadonlyMap<string, string>) {
  const shuffles = new Set<string>();
  const stored = new Map<string, number>();
  const seenThrough = new Set<string>();
  const seen = new Set<string>();
  const visit = (id: string, aligned: boolean) => {
    const key = `${id}/${aligned}`;
    if (seen.has(key)) return;
    seen.add(key);
    const node = builder.get(id).node;
    switch (node.kind) {
      case 'shuffle':
        shuffles.add(node.id);
        return;
      case 'stored': {
        const producer = inMemory.get(node.location);
        if (aligned && producer !== undefined) {
          seenThrough.add(node.location);
          return visit(producer, true);
        }
        stored.set(node.location, node.partitions);
        return;
      }
      case 'narrow':
        if (node.side) visit(node.side, false);
        return visit(node.parent, aligned);
      case 'cogroup':
        return node.parents.forEach((parent) => visit(parent, aligned));
      case 'coalesce':
        return visit(node.parent, false);
      case 'union':
      case 'cartesian':
        return node.parents.forEach((parent) => visit(parent, false));
      default:
        return;
    }
  };
  visit(root, true);
  return { shuffles, stored, seenThrough };
}

/** The stages of a plan, parents before children, then its recovery stages. */
export function planStages(builder: PlanBuilder): StageSpec[] {
  const persistByLocation = new Map(builder.persists.map((p) => [p.location, p]));
  const sinks: Sink[] = [
    ...builder.persists.map((p): Sink => ({ kind: 'persist', rdd: p.rdd.id, location: p.location })),
    ...builder.outputs.map((o): Sink => ({ kind: 'output', rdd: o.rdd.id, output: { name: o.name, format: o.format } })),
  ];

  // Sinks are grouped by their partitions and their edges (shuffles, and persisted RDDs read
  // from the store). A sink may see through a persisted RDD of this plan only if that RDD's
  // persist lands in its group; each time one does not, the sink reads it from the store instead,
  // and the grouping is done again (it only ever sees through less, so it ends).
  const refused = sinks.map(() => new Set<string>());
  let groups: Map<string, number[]>;
  let edges: ReturnType<typeof edgesOf>[];
  for (;;) {
    edges = sinks.map((s, i) => {
      const inMemory = new Map([...persistByLocation].filter(([location]) => !refused[i]!.has(location)).map(([location, p]) => [location, p.rdd.id]));
      return edgesOf(builder, s.rdd, inMemory);
    });
    const keyOf = (i: number) =>
      JSON.stringify([builder.get(sinks[i]!.rdd).partitions, [...edges[i]!.shuffles].sort(), [...edges[i]!.stored.keys()].filter((l) => persistByLocation.has(l)).sort()]);
    groups = new Map();
    sinks.forEach((_, i) => groups.get(keyOf(i))?.push(i) ?? groups.set(keyOf(i), [i]));
    const groupOf = new Map<string, string>();
    sinks.forEach((s, i) => s.kind === 'persist' && groupOf.set(s.location, keyOf(i)));
    let changed = false;
    sinks.forEach((_, i) => {
      for (const location of edges[i]!.seenThrough) {
        if (groupOf.get(location) !== keyOf(i)) {
          refused[i]!.add(location);
          changed = true;
        }
      }
    });
    if (!changed) break;
  }

  const stages = new Map<string, StageSpec>();
  const idOf = (group: number[]) => (group.length === 1 ? sinkStageId(sinks[group[0]!]!) : stageIds.result([...new Set(group.map((i) => sinks[i]!.rdd))]));
  const resultWriting = new Map<string, number[]>();
  for (const group of groups.values()) for (const i of group) if (sinks[i]!.kind === 'persist') resultWriting.set((sinks[i] as { location: string }).location, group);

  // Each stage is added after its parents: a map stage may read a persisted RDD, a result stage a shuffle.
  const add = (id: string, make: () => { spec: StageSpec; shuffles: Iterable<string> }): string => {
    if (stages.has(id)) return id;
    const { spec, shuffles } = make();
    const parents = new Set<string>();
    for (const s of shuffles) parents.add(addShuffleMap(s));
    for (const { location } of spec.storedReads) {
      const writer = resultWriting.get(location);
      if (writer) parents.add(addResult(writer));
    }
    stages.set(id, { ...spec, parents: [...parents] });
    return id;
  };
  const storedReadsOf = (stored: Map<string, number>) => [...stored].map(([location, partitions]) => ({ location, partitions }));

  const addShuffleMap = (shuffleId: string): string =>
    add(stageIds.shuffleMap(shuffleId), () => {
      const node = builder.get(shuffleId).node;
      if (node.kind !== 'shuffle') throw new Error(`internal: ${shuffleId} is not a shuffle`);
      // A shuffle-map task holds nothing of this plan in memory: what it reads comes from the store.
      const e = edgesOf(builder, node.parent, new Map());
      const spec: StageSpec = { id: stageIds.shuffleMap(shuffleId), kind: 'shuffle-map', rdd: shuffleId, tasks: builder.get(node.parent).partitions, parents: [], storedReads: storedReadsOf(e.stored) };
      return { spec, shuffles: e.shuffles };
    });

  const addResult = (group: number[]): string =>
    add(idOf(group), () => {
      const stored = new Map(group.flatMap((i) => [...edges[i]!.stored]));
      const spec: StageSpec = { id: idOf(group), kind: 'result', sinks: group.map((i) => sinks[i]!), tasks: builder.get(sinks[group[0]!]!.rdd).partitions, parents: [], storedReads: storedReadsOf(stored) };
      return { spec, shuffles: group.flatMap((i) => [...edges[i]!.shuffles]) };
    });

  for (const group of groups.values()) addResult(group);

  // Rebuilding a lost partition of a persisted RDD by rerunning a stage that also writes other
  // sinks, or reads what other stages of the scope persisted, would need all their inputs too:
  // those of earlier intervals may be lost as well, and recovery would walk back past the last
  // checkpoint. Such a persisted RDD gets a stage of its own, run only to recover it, reading
  // persisted RDDs from the store (those found lost are recovered in turn, the same way).
  for (const group of groups.values()) {
    const writer = stages.get(idOf(group)) as ResultStage;
    if (writer.sinks.length === 1 && writer.parents.every((id) => stages.get(id)!.kind === 'shuffle-map')) continue;
    for (const i of group) {
      const sink = sinks[i]!;
      if (sink.kind !== 'persist') continue;
      const e = edgesOf(builder, sink.rdd, new Map());
      const parents = [...e.shuffles].map(addShuffleMap);
      const id = stageIds.recover(sink.location);
      stages.set(id, { id, kind: 'result', sinks: [sink], recovery: true, tasks: builder.get(sink.rdd).partitions, parents, storedReads: storedReadsOf(e.stored) });
    }
  }
  return [...stages.values()];
}

/** What a task reads from outside its stage: source splits, shuffle partitions, persisted partitions in the store. */
export interface StageReads {
  /** Source RDD and split, each once. */
  sources: [rdd: string, split: number][];
  /** Shuffle RDD to the partitions of it read, ascending. */
  shuffles: Map<string, number[]>;
  /** Persisted location and partition, each once. */
  stored: [location: string, partition: number][];
}

/**
 * What partition `p` of `roots` reads, within its stage: the path computePartition takes, through
 * narrow dependencies (partitionsRead), cogroups (the same partition of each parent), side inputs
 * (a one-partition shuffle, read whole) and persisted RDDs the stage computes in memory
 * (`inMemory`: location to producer). A coalesce or a cartesian product may read several partitions
 * of one shuffle.
 */
export function partitionReads(builder: PlanBuilder, roots: string[], p: number, inMemory: ReadonlyMap<string, string> = new Map()): StageReads {
  const seen = new Set<string>();
  const reads: StageReads = { sources: [], shuffles: new Map(), stored: [] };
  const shuffles = new Map<string, Set<number>>();
  const partitionsOf = (id: string) => builder.get(id).partitions;
  const visit = (id: string, q: number): void => {
    if (seen.has(`${id}/${q}`)) return;
    seen.add(`${id}/${q}`);
    const node = builder.get(id).node;
    switch (node.kind) {
      case 'source':
        reads.sources.push([id, q]);
        return;
      case 'shuffle': {
        let parts = shuffles.get(node.id);
        if (!parts) shuffles.set(node.id, (parts = new Set()));
        parts.add(q);
        return;
      }
      case 'stored': {
        const producer = inMemory.get(node.location);
        if (producer !== undefined) visit(producer, q);
        else reads.stored.push([node.location, q]);
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
  for (const root of roots) visit(root, p);
  reads.shuffles = new Map([...shuffles].map(([id, parts]) => [id, [...parts].sort((a, b) => a - b)]));
  return reads;
}

/** The persisted RDDs a result stage writes, by location, each to the RDD that computes it in memory. */
export function stageInMemory(spec: StageSpec): Map<string, string> {
  return new Map(spec.kind === 'result' ? spec.sinks.flatMap((s) => (s.kind === 'persist' ? [[s.location, s.rdd] as const] : [])) : []);
}

/**
 * What task `p` of a stage reads (see partitionReads). A shuffle-map stage computes the shuffle's
 * parent; the shuffle itself is read on the other side.
 */
export function stageReads(builder: PlanBuilder, spec: StageSpec, p: number): StageReads {
  if (spec.kind === 'shuffle-map') return partitionReads(builder, [(builder.get(spec.rdd).node as { parent: string }).parent], p);
  return partitionReads(builder, spec.sinks.map((s) => s.rdd), p, stageInMemory(spec));
}

/** The shuffles task `p` of a stage reads, each with the reduce partitions it reads. */
export function stageShuffleReads(builder: PlanBuilder, spec: StageSpec, p: number): Map<string, number[]> {
  return stageReads(builder, spec, p).shuffles;
}
