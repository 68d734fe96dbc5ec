/**
 * Which RDDs of a plan are known to hold no record before anything runs: an interval with no
 * uploads, whose state and windows hold nothing, needs no task to find its outputs empty.
 */
import type { PlanBuilder } from './rdd.ts';

/**
 * The ids of the RDDs of `builder` known empty: those all of whose inputs are empty, through
 * operators that make nothing from nothing. A source without splits is empty; records given in
 * the program (`values`: count's zero, side inputs, initial states) are empty only when they hold
 * none; a persisted RDD (`stored`) is empty when the RDD it persists is, if persisted in this
 * scope, else when `storedEmpty` says so, from what is in the store. A narrow operator keeps emptiness only when it is applied record by record
 * (map, filter, flatMap...): a partition function (mapPartitions, foreachPartition, count's
 * per-partition counts) may make records from an empty partition, so its output is never known empty.
 */
export function knownEmptyRdds(builder: PlanBuilder, storedEmpty: (location: string) => boolean): Set<string> {
  const empty = new Set<string>();
  const is = (id: string) => empty.has(id);
  // Ids are given in creation order, parents before children.
  for (const rdd of builder.rdds.values()) {
    const node = rdd.node;
    let known: boolean;
    switch (node.kind) {
      case 'source':
        known = node.splits.length === 0;
        break;
      case 'values':
        known = node.data.every((slice) => slice.length === 0);
        break;
      case 'stored': {
        const here = builder.persists.find((p) => p.location === node.location);
        known = here ? is(here.rdd.id) : storedEmpty(node.location);
        break;
      }
      case 'narrow':
        known = rdd.behaviour.keepsEmpty === true && is(node.parent);
        break;
      case 'shuffle':
      case 'coalesce':
        known = is(node.parent);
        break;
      case 'union':
      case 'cogroup':
        known = node.parents.every(is);
        break;
      case 'cartesian':
        known = node.parents.some(is);
        break;
    }
    if (known) empty.add(node.id);
  }
  return empty;
}
