import type { ObjectInfo, ObjectStore } from '../ports/object-store.ts';
import { listAll } from '../ports/object-store.ts';
import { intervalScope, keys } from '../layout.ts';
import { validateOutputName } from '../rdd/rdd.ts';

/** Which committed intervals of a stream's output a batch job reads (Spark's DStream.slice). */
export interface SliceSpec {
  output: string;
  /** First and last interval read, both included, as in Spark's slice(fromTime, toTime). */
  from: number;
  to: number;
}

export function checkSlice(spec: SliceSpec): SliceSpec {
  validateOutputName(spec.output);
  const { from, to } = spec;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || to < from) {
    throw new RangeError(`slice of output ${spec.output}: intervals must be whole numbers with 0 <= from <= to, got from ${from} to ${to}`);
  }
  return spec;
}

/**
 * The part files of output `spec.output` over intervals from..to, in interval then part order:
 * what a batch job's (or a shell's) slice reads. Only committed intervals are read, so every
 * reader sees the same records; a range reaching an interval not yet committed is refused, and
 * so is an output that has written nothing yet (a misspelt name, or a window before its first slide). A committed interval at which the stream had no
 * RDD (between a window's slides) holds no part and adds nothing, as Spark's slice skips it.
 */
export async function listSlice(store: ObjectStore, spec: SliceSpec): Promise<ObjectInfo[]> {
  const { output, from, to } = checkSlice(spec);
  // As a path that holds nothing is for textFile: most likely a misspelt name, never an empty input.
  if (!(await holdsAny(store, `output/${output}/`))) {
    throw new Error(`slice of output ${output}: nothing was ever written under output/${output}/ (the name given to saveAsJsonFiles or saveAsTextFiles)`);
  }
  const parts: ObjectInfo[] = [];
  for (let k = from; k <= to; k++) {
    const scope = intervalScope(k);
    if (!(await store.head(keys.committed(scope)))) {
      throw new Error(`slice of output ${output} from interval ${from} to ${to}: interval ${k} is not committed; a slice reads committed intervals only`);
    }
    if (!(await store.head(keys.outputSuccess(output, scope)))) continue;
    parts.push(...(await listAll(store, `${keys.outputPrefix(output, scope)}part-`)));
  }
  return parts;
}

/** True when some object's key starts with `prefix`, found without listing them all. */
async function holdsAny(store: ObjectStore, prefix: string): Promise<boolean> {
  for await (const _ of store.list(prefix)) return true;
  return false;
}
