/**
 * The total order over storable values that sorting (`sortBy`, `sortByKey`, `top`,
 * `takeOrdered`) uses when no comparator is given. It agrees with key equality (keyIdentity):
 * two values compare 0 exactly when they are one key. In full:
 *   - by kind first: null < booleans < numbers < strings < arrays < objects;
 *   - booleans: false < true;
 *   - numbers: numerically, -Infinity first; 0 and -0 are equal; NaN equals NaN and comes after
 *     Infinity (as Spark orders doubles);
 *   - strings: by UTF-16 code units, as JavaScript's `<` (Spark compares UTF-8 bytes: the two
 *     differ only between surrogate pairs and U+E000–U+FFFF);
 *   - arrays: lexicographically, element by element, a prefix before the longer array;
 *   - objects: as the list of their [key, value] entries sorted by key (code units), so
 *     `{ a: 1, b: 2 }` and `{ b: 2, a: 1 }` are equal, and `{ a: 1 }` < `{ a: 1, b: 0 }` < `{ b: 0 }`.
 * Anything else (undefined, functions, class instances) cannot be stored and is refused.
 */
import { isPlainObject } from '../codec/storable.ts';

export type Comparator<T> = (a: T, b: T) => number;

// Kinds in their order.
const NULL = 0;
const BOOLEAN = 1;
const NUMBER = 2;
const STRING = 3;
const ARRAY = 4;
const OBJECT = 5;

function rank(v: unknown): number {
  switch (typeof v) {
    case 'boolean':
      return BOOLEAN;
    case 'number':
      return NUMBER;
    case 'string':
      return STRING;
    case 'object':
      if (v === null) return NULL;
      if (Array.isArray(v)) return ARRAY;
      if (isPlainObject(v)) return OBJECT;
  }
  throw new TypeError(`cannot order ${v === undefined ? 'undefined' : typeof v === 'object' ? 'an instance of a class' : `a ${typeof v}`}: only storable values (null, booleans, numbers, strings, arrays, plain objects) have an order`);
}

/** Negative, zero or positive as `a` comes before, with, or after `b` in the order above. */
export function compareStorable(a: unknown, b: unknown): number {
  const ra = rank(a);
  const rb = rank(b);
  if (ra !== rb) return ra - rb;
  switch (ra) {
    case BOOLEAN:
      return Number(a) - Number(b);
    case NUMBER: {
      const x = a as number;
      const y = b as number;
      if (Number.isNaN(x)) return Number.isNaN(y) ? 0 : 1;
      if (Number.isNaN(y)) return -1;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    case STRING:
      return a === b ? 0 : (a as string) < (b as string) ? -1 : 1;
    case ARRAY:
      return compareLists(a as unknown[], b as unknown[]);
    case OBJECT:
      return compareLists(sortedEntries(a as Record<string, unknown>), sortedEntries(b as Record<string, unknown>));
    default:
      return 0; // null
  }
}

function compareLists(a: unknown[], b: unknown[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const c = compareStorable(a[i], b[i]);
    if (c !== 0) return c;
  }
  return a.length - b.length;
}

function sortedEntries(o: Record<string, unknown>): [string, unknown][] {
  return Object.keys(o)
    .sort()
    .map((k) => [k, o[k]]);
}

/** `compare` reversed: for descending orders. */
export function descending<T>(compare: Comparator<T>): Comparator<T> {
  return (a, b) => compare(b, a);
}
