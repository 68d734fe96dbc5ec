/**
 * Stages an interval commits without tasks: those whose RDD is known empty before anything runs
 * (knownEmptyRdds). The driver writes what their tasks would have written, byte for byte, so
 * every reader (later intervals, _SUCCESS, sinks, the shell, the test kit) sees no difference.
 */
import type { ObjectStore } from '../ports/object-store.ts';
import { RecordWriter } from '../codec/record-codec.ts';
import { knownEmptyRdds } from '../rdd/empty.ts';
import { keys } from '../layout.ts';
import type { ScopePlan } from '../scheduler/dag-scheduler.ts';
import { stagesRun, type StageSpec } from '../scheduler/stages.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../util/map-concurrently.ts';
import { listStoredParts, type StoredParts } from './stored-listings.ts';

/** What a task writes for a persisted or collected partition with no record. */
const EMPTY_PART = new RecordWriter().finish();

/** A persisted or collected part of this size holds no record (any record makes it longer). */
export function isEmptyPart(size: number): boolean {
  return size === EMPTY_PART.length;
}

/**
 * The result stages of `plan` that need no task: their RDD is known empty, and no
 * stage that does run reads what they write within the scope. foreachPartition outputs always
 * run: the user's function is called on each partition, empty or not, as before. (A shuffle's
 * map stage runs when a stage that runs needs it: the scheduler adds it.)
 *
 * A persisted RDD of an earlier interval counts as empty when every one of its parts is in the
 * store and holds no record: decided from the store, so any driver decides the same, and a part
 * lost to garbage collection or a fault only makes the stage run (and recover it) as before.
 * `earlierEmpty` assumes every persisted RDD of an earlier interval empty without reading it: the
 * stages that run then are among those that run whatever they hold. `parts` lists a location
 * (default: a LIST of its own; the driver shares the interval's, StoredListings).
 */
export async function stagesWithoutTasks(
  store: ObjectStore,
  plan: ScopePlan,
  options: { earlierEmpty?: boolean; parts?: StoredParts } = {},
): Promise<StageSpec[]> {
  const { builder } = plan;
  const parts = options.parts ?? ((location: string) => listStoredParts(store, location));
  const looked = new Map<string, Promise<boolean>>();
  for (const rdd of builder.rdds.values()) {
    const node = rdd.node;
    if (node.kind !== 'stored' || looked.has(node.location) || builder.persists.some((p) => p.location === node.location)) continue;
    // Assumed, not looked at: what runs then runs whatever they hold (see stagesBeforeGate).
    if (options.earlierEmpty) {
      looked.set(node.location, Promise.resolve(true));
      continue;
    }
    // Every location at once.
    looked.set(
      node.location,
      parts(node.location).then((present) => {
        for (let p = 0; p < node.partitions; p++) {
          const size = present.get(keys.persisted(node.location, p));
          if (size === undefined || !isEmptyPart(size)) return false;
        }
        return true;
      }),
    );
  }
  const storedEmpty = new Map(await Promise.all([...looked].map(async ([location, empty]) => [location, await empty] as const)));
  const empty = knownEmptyRdds(builder, (location) => storedEmpty.get(location) ?? false);
  const emptyStage = (spec: StageSpec) =>
    spec.kind === 'result' && !spec.recovery && spec.sinks.every((sink) => empty.has(sink.rdd) && !(sink.kind === 'output' && sink.output.format === 'foreach'));
  const skipped = new Set(plan.stages.filter(emptyStage).map((s) => s.id));
  // Parents come before their children (planStages): walking back, a stage that runs makes its parents run.
  const runs = new Set<string>();
  for (const spec of [...stagesRun(plan.stages)].reverse()) {
    if (spec.kind !== 'shuffle-map' && !skipped.has(spec.id)) runs.add(spec.id);
    if (!runs.has(spec.id)) continue;
    for (const parent of spec.parents) {
      runs.add(parent);
      skipped.delete(parent);
    }
  }
  return plan.stages.filter((s) => skipped.has(s.id));
}

/** Writes what the tasks of `stages` (result stages, every sink known empty) would have written. */
export async function commitEmptyStages(store: ObjectStore, plan: ScopePlan, stages: StageSpec[]): Promise<void> {
  const writes: [string, Uint8Array | string][] = [];
  for (const spec of stages) {
    if (spec.kind !== 'result') continue;
    for (const sink of spec.sinks) {
      for (let p = 0; p < spec.tasks; p++) {
        if (sink.kind === 'persist') writes.push([keys.persisted(sink.location, p), EMPTY_PART]);
        else if (sink.output.format === 'collect') writes.push([keys.collected(plan.scope, sink.output.name, p), EMPTY_PART]);
        else writes.push([keys.output(sink.output.name, plan.scope, p), '']);
      }
    }
  }
  await mapConcurrently(writes, STORE_CONCURRENCY, ([key, body]) => store.put(key, body));
}
