import { type BatchContext, BatchJob } from '../graph/pipeline.ts';
import type { Rdd } from '../rdd/rdd.ts';
import { shortHash } from '../util/hash.ts';

/**
 * A query as data: how its RDDs were built in the shell, call by call, so that the driver and every
 * task rebuild the same plan. Functions travel as their source with the values of the session's
 * variables they use (as Spark serialises a closure), since a task runs in another process.
 */
export interface QuerySpec {
  nodes: QueryNode[];
  /** The node whose records the query brings back. */
  result: number;
}

export type QueryNode =
  | { source: 'output'; format: 'json' | 'text'; output: string; from: number; to: number }
  | { source: 'files'; format: 'json' | 'text'; prefix: string }
  | { source: 'values'; data: unknown[]; partitions: number }
  | { source: 'stored'; location: string; tier: 'cache' | 'checkpoint'; partitions: number; hashPartitioned: boolean; label: string }
  | { call: string; target: number; args: QueryArg[] };

/** A call's argument: JSON, with functions and RDDs tagged. */
export type QueryArg = unknown;

export interface ShippedFunction {
  $fn: string;
  /** The session's variables the function uses, by name: values, or functions shipped alike. */
  env: Record<string, unknown>;
}

export const isShippedFunction = (v: unknown): v is ShippedFunction => typeof v === 'object' && v !== null && typeof (v as ShippedFunction).$fn === 'string';
export const isRddRef = (v: unknown): v is { $rdd: number } => typeof v === 'object' && v !== null && typeof (v as { $rdd?: unknown }).$rdd === 'number';

/** The name the query's records are collected under. */
export const QUERY_RESULT = 'result';

/** The batch job a query runs as. Its name is the scope of its runs, under the session's scratch. */
export function queryJob(spec: QuerySpec): BatchJob {
  return new QueryJob(spec);
}

class QueryJob extends BatchJob {
  constructor(spec: QuerySpec) {
    super({ name: 'query' }, (sc) => buildQuery(sc, spec));
    // A query's code is its spec: the shell and the workers load this module from different
    // builds (sources, dist/), whose text differs, but the same spec builds the same plan.
    (this as { fingerprint: string }).fingerprint = shortHash(JSON.stringify(spec));
  }
}

/** Rebuilds the query's RDDs on `sc` and collects its result. */
export function buildQuery(sc: BatchContext, spec: QuerySpec): void {
  const rdds: Rdd<unknown>[] = [];
  const arg = (a: QueryArg): unknown => {
    if (isShippedFunction(a)) return materialise(a);
    if (isRddRef(a)) return rdds[a.$rdd];
    if (Array.isArray(a)) return a.map(arg);
    if (typeof a === 'object' && a !== null) return Object.fromEntries(Object.entries(a).map(([k, v]) => [k, arg(v)]));
    return a;
  };
  for (const node of spec.nodes) {
    if ('call' in node) {
      const target = rdds[node.target] as unknown as Record<string, (...args: unknown[]) => Rdd<unknown>>;
      rdds.push(target[node.call]!(...node.args.map(arg)));
    } else if (node.source === 'output') {
      rdds.push(node.format === 'json' ? sc.slice(node.output, node.from, node.to) : sc.sliceText(node.output, node.from, node.to));
    } else if (node.source === 'files') {
      rdds.push(node.format === 'json' ? sc.jsonFile(node.prefix) : sc.textFile(node.prefix));
    } else if (node.source === 'values') {
      rdds.push(sc.parallelize(node.data, node.partitions));
    } else {
      rdds.push(sc.builder.stored(node.location, node.tier, node.partitions, node.hashPartitioned, node.label));
    }
  }
  (rdds[spec.result] as Rdd<never>).collect(QUERY_RESULT);
}

/** A shipped function made a function again, its variables bound to the values shipped with it. */
export function materialise(shipped: ShippedFunction): Function {
  const names = Object.keys(shipped.env);
  const values = names.map((n) => {
    const v = shipped.env[n];
    return isShippedFunction(v) ? materialise(v) : v;
  });
  // The source of a method (`f(x) { … }`) is no expression: it is read as one inside an object.
  const expression = /^(?:async\s+)?(?:function\b|\(|[\w$]+\s*=>|class\b)/.test(shipped.$fn) ? `(${shipped.$fn})` : `({ ${shipped.$fn} })[${JSON.stringify(methodName(shipped.$fn))}]`;
  return new Function(...names, `"use strict"; return ${expression};`)(...values) as Function;
}

function methodName(source: string): string {
  return /^(?:async\s+)?\*?\s*([\w$]+)/.exec(source)?.[1] ?? '';
}
