/**
 * How a node's records are produced from its parents' records inside a task, push-style: the
 * source drives, each operator pushes into the next, so a chain of narrow operators is one pass
 * over the partition with no intermediate arrays.
 */
import { isPlainObject } from '../codec/storable.ts';

export type Emit = (record: unknown) => void;

export interface PartitionPusher {
  push(record: unknown): void;
  /** No more records: operators that hold the partition (mapPartitions) emit here. */
  end(): void;
}

/** What an operator may ask of the task it runs in. */
export interface OperatorContext {
  readonly partition: number;
  /**
   * A user function threw on a record. Under the `fail` policy this throws (the task fails);
   * under `quarantine` the record and error are kept under `errors/` and the record is skipped.
   */
  badRecord(operator: string, record: unknown, error: unknown): void;
}

export type NarrowOperator = (emit: Emit, ctx: OperatorContext) => PartitionPusher;

/** combineByKey's three functions; reduceByKey and groupByKey are special cases. */
export interface Aggregator {
  createCombiner(value: unknown): unknown;
  mergeValue(combiner: unknown, value: unknown): unknown;
  mergeCombiners(a: unknown, b: unknown): unknown;
}

const noEnd = () => {};

// The try/catch sits in each push, with no closure per record: this is the per-record hot path.

export function mapOperator(name: string, f: (record: unknown) => unknown): NarrowOperator {
  return (emit, ctx) => ({
    push(r) {
      let out: unknown;
      try {
        out = f(r);
      } catch (error) {
        return ctx.badRecord(name, r, error);
      }
      emit(out);
    },
    end: noEnd,
  });
}

export function flatMapOperator(name: string, f: (record: unknown) => Iterable<unknown>): NarrowOperator {
  return (emit, ctx) => ({
    push(r) {
      let out: unknown[];
      try {
        const produced = f(r);
        // Generators run user code while iterating, so they are drained inside the guard.
        out = Array.isArray(produced) ? produced : Array.from(produced);
      } catch (error) {
        return ctx.badRecord(name, r, error);
      }
      for (let i = 0; i < out.length; i++) emit(out[i]);
    },
    end: noEnd,
  });
}

export function filterOperator(name: string, predicate: (record: unknown) => boolean): NarrowOperator {
  return (emit, ctx) => ({
    push(r) {
      let keep: boolean;
      try {
        keep = predicate(r);
      } catch (error) {
        return ctx.badRecord(name, r, error);
      }
      if (keep) emit(r);
    },
    end: noEnd,
  });
}

/** Holds the whole partition, then hands it to the user function at once. */
export function mapPartitionsOperator(
  name: string,
  f: (records: unknown[], partition: number) => Iterable<unknown>,
): NarrowOperator {
  return (emit, ctx) => {
    const held: unknown[] = [];
    return {
      push: (r) => void held.push(r),
      end() {
        let out: unknown[];
        try {
          out = Array.from(f(held, ctx.partition));
        } catch (error) {
          return ctx.badRecord(name, `<partition ${ctx.partition}, ${held.length} records>`, error);
        }
        for (const x of out) emit(x);
      },
    };
  };
}

/** Pair records are two-element arrays; anything else reaching a pair operator is a user error. */
/**
 * A keyed operator met a record that is no [key, value] pair: a bad record of whatever produced it,
 * the same on every delivery. The record itself is not in the message (logs carry messages).
 */
export class NotAPairError extends TypeError {
  constructor(operator: string) {
    super(`${operator} expects [key, value] pairs`);
    this.name = 'NotAPairError';
  }
}

export function asPair(record: unknown, operator: string): [unknown, unknown] {
  if (!Array.isArray(record) || record.length !== 2) throw new NotAPairError(operator);
  return record as [unknown, unknown];
}

export function preview(value: unknown, max = 120): string {
  let text: string;
  try {
    text = JSON.stringify(value, showUnstorable) ?? String(value);
  } catch {
    text = String(value);
  }
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/**
 * Shows what JSON would hide or change in a bad record (a Map written as {}, a Date as a string,
 * an undefined left out), so the preview shows the value that was refused.
 */
function showUnstorable(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key];
  if (raw === undefined) return '<undefined>';
  if (typeof raw === 'function' || typeof raw === 'symbol' || typeof raw === 'bigint') return `<${typeof raw}>`;
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw) && !isPlainObject(raw)) {
    const name = (raw as { constructor?: { name?: unknown } }).constructor?.name;
    return `<${typeof name === 'string' && name !== '' ? name : 'object'}>`;
  }
  return value;
}
