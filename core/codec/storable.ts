/**
 * What a record may be made of: strings, numbers, booleans, null, arrays and plain objects with
 * string keys, nested at most MAX_DEPTH deep. The codec, the hash and key identity all accept
 * exactly this set; their fast paths only notice that a value is outside it, and `unstorable`
 * then walks the value again to say where and what, so naming the path costs nothing when
 * records are fine.
 */

/** Deeper nesting is almost always a cycle; the bound also keeps recursion far from the stack limit. */
export const MAX_DEPTH = 1000;

export const STORABLE_KINDS = 'only plain objects, arrays, strings, numbers, booleans and null can be stored';

export class UnstorableValueError extends TypeError {
  constructor(
    /** Where the offending value is, e.g. `record[3].user.name`. */
    readonly path: string,
    message: string,
  ) {
    super(message);
    this.name = 'UnstorableValueError';
  }
}

/**
 * What a fast path throws on meeting a value outside the set (cheap: no message, no stack);
 * its caller turns it into the real error with `explainUnstorable`.
 */
export const NOT_STORABLE = Symbol('not storable');

/** `error` itself, or for NOT_STORABLE the error naming what in `value` is not storable. */
export function explainUnstorable(error: unknown, value: unknown, root: string): unknown {
  return error === NOT_STORABLE ? unstorable(value, root) : error;
}

/**
 * Throws UnstorableValueError, naming `root`'s part, when `value` is not storable: for records that
 * leave through JSON, which would write a Map as {} and drop an undefined property unseen.
 */
export function checkStorable(value: unknown, root: string): void {
  if (typeof value !== 'object' || value === null) {
    if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean') return;
  } else if (storableObject(value, 0)) return;
  throw unstorable(value, root);
}

/** The fast path: whether an object's every part is storable, with no message to build. */
function storableObject(o: object, depth: number): boolean {
  if (depth >= MAX_DEPTH) return false;
  if (Array.isArray(o)) {
    for (let i = 0; i < o.length; i++) if (!storablePart(o[i], depth)) return false;
    return true;
  }
  if (!isPlainObject(o)) return false;
  for (const key in o) if (!storablePart((o as Record<string, unknown>)[key], depth)) return false;
  return true;
}

function storablePart(v: unknown, depth: number): boolean {
  switch (typeof v) {
    case 'string':
    case 'number':
    case 'boolean':
      return true;
    case 'object':
      return v === null || storableObject(v, depth + 1);
    default:
      return false;
  }
}

export function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * The error for the first part of `value` (depth-first, in key order) that cannot be stored,
 * with `root` naming the value itself (`record[3]`, `key`).
 */
function unstorable(value: unknown, root: string): UnstorableValueError {
  return findUnstorable(value, root, 0) ?? new UnstorableValueError(root, `${root} cannot be stored: ${STORABLE_KINDS}`);
}

function findUnstorable(value: unknown, path: string, depth: number): UnstorableValueError | undefined {
  switch (typeof value) {
    case 'string':
    case 'number':
    case 'boolean':
      return undefined;
    case 'undefined':
      return new UnstorableValueError(path, `${path} is undefined`);
    case 'object': {
      if (value === null) return undefined;
      if (depth >= MAX_DEPTH) {
        return new UnstorableValueError(path, `${clip(path)} nests more than ${MAX_DEPTH} levels deep (is it cyclic?)`);
      }
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const found = findUnstorable(value[i], `${path}[${i}]`, depth + 1);
          if (found) return found;
        }
        return undefined;
      }
      if (!isPlainObject(value)) return new UnstorableValueError(path, `${path} is ${describeInstance(value)}: ${STORABLE_KINDS}`);
      for (const key in value) {
        const found = findUnstorable((value as Record<string, unknown>)[key], `${path}${member(key)}`, depth + 1);
        if (found) return found;
      }
      return undefined;
    }
    default:
      // function, symbol, bigint
      return new UnstorableValueError(path, `${path} is a ${typeof value}: ${STORABLE_KINDS}`);
  }
}

function describeInstance(value: object): string {
  const proto: unknown = Object.getPrototypeOf(value);
  const ctor = (proto as { constructor?: { name?: unknown; prototype?: unknown } }).constructor;
  // Only a constructor whose prototype this is names the kind; Object.create({}) inherits Object's.
  const name = ctor !== undefined && ctor.prototype === proto ? ctor.name : undefined;
  return typeof name === 'string' && name !== '' ? `an instance of ${name}` : 'an object with a custom prototype';
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

function member(key: string): string {
  return IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** A cyclic value's path grows with the depth bound; its start and end are what help. */
function clip(path: string): string {
  return path.length <= 200 ? path : `${path.slice(0, 100)}…${path.slice(-100)}`;
}
