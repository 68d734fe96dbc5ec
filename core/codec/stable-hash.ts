/**
 * The hash that places keys in shuffle partitions. Persisted state is partitioned by it, so it
 * must never change between versions or processes: it depends only on the value, and the golden
 * values in test/codec/stable-hash.test.ts catch any change.
 *
 * It is MurmurHash3 (x86, 32-bit) mixing over a canonical sequence of 32-bit words:
 *   string   STRING, length, then its UTF-16 code units two to a word (low unit in the low
 *            half) — hashed straight from charCodeAt, no UTF-8 encoding or allocation
 *   number   INT, n for integers in int32 range (so 0 and -0 agree); otherwise FLOAT, then the
 *            low and high words of the float64 (NaN canonical)
 *   boolean  TRUE / FALSE;  null  NULL
 *   array    ARRAY, length, each element
 *   object   OBJECT, then key and value of each entry in code-unit order of key, then the count
 * Values equal under keyIdentity (properties in any order, 0 ≡ -0, NaN ≡ NaN) hash alike.
 */
import { MAX_DEPTH, NOT_STORABLE, explainUnstorable, isPlainObject } from './storable.ts';

const STRING = 1;
const INT = 2;
const FLOAT = 3;
const FALSE = 4;
const TRUE = 5;
const NULL = 6;
const ARRAY = 7;
const OBJECT = 8;

const C1 = 0xcc9e2d51;
const C2 = 0x1b873593;

const float = new DataView(new ArrayBuffer(8));

export function stableHash(value: unknown): number {
  let h: number;
  try {
    h = hashValue(0, value, 0);
  } catch (error) {
    throw explainUnstorable(error, value, 'key');
  }
  return finalMix(h);
}

/** The reduce partition of `key` among `numPartitions`. */
export function partitionOf(key: unknown, numPartitions: number): number {
  if (!Number.isInteger(numPartitions) || numPartitions < 1 || numPartitions > 0xffffffff) {
    throw new RangeError(`numPartitions must be a positive integer, got ${numPartitions}`);
  }
  return stableHash(key) % numPartitions;
}


function hashValue(h: number, v: unknown, depth: number): number {
  switch (typeof v) {
    case 'string':
      return hashString(h, v);
    case 'number':
      return hashNumber(h, v);
    case 'boolean':
      return mix(h, v ? TRUE : FALSE);
    case 'object': {
      if (v === null) return mix(h, NULL);
      if (depth >= MAX_DEPTH) throw NOT_STORABLE;
      if (Array.isArray(v)) {
        const n = v.length;
        h = mix(mix(h, ARRAY), n);
        for (let i = 0; i < n; i++) {
          const item: unknown = v[i];
          if (item === undefined) throw NOT_STORABLE;
          h = hashValue(h, item, depth + 1);
        }
        return h;
      }
      if (!isPlainObject(v)) throw NOT_STORABLE;
      h = mix(h, OBJECT);
      let n = 0;
      for (const key of Object.keys(v).sort()) {
        const item = (v as Record<string, unknown>)[key];
        if (item === undefined) throw NOT_STORABLE;
        h = hashValue(hashString(h, key), item, depth + 1);
        n++;
      }
      return mix(h, n);
    }
    default:
      throw NOT_STORABLE;
  }
}

function hashString(h: number, s: string): number {
  const len = s.length;
  h = mix(mix(h, STRING), len);
  const pairs = len & ~1;
  for (let i = 0; i < pairs; i += 2) h = mix(h, s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16));
  if (len & 1) h = mix(h, s.charCodeAt(len - 1));
  return h;
}

function hashNumber(h: number, n: number): number {
  if ((n | 0) === n) return mix(mix(h, INT), n);
  h = mix(h, FLOAT);
  if (n !== n) return mix(mix(h, 0), 0x7ff80000);
  float.setFloat64(0, n, true);
  return mix(mix(h, float.getUint32(0, true)), float.getUint32(4, true));
}

/** One MurmurHash3 block step. */
function mix(h: number, k: number): number {
  k = Math.imul(k, C1);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, C2);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** MurmurHash3's finaliser: spreads every input bit over the result. */
function finalMix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
