/**
 * Keys compare by value, but JS Maps compare objects by reference. keyIdentity maps a key to a
 * Map key that is equal (SameValueZero) for equal keys and different for different ones:
 *   - strings, numbers, booleans and null are their own identity, so the common lookups cost
 *     nothing (a Map already treats 0 and -0 alike, and NaN as NaN);
 *   - arrays and objects become COMPOSITE followed by a canonical text of the value;
 *   - a string that itself starts with COMPOSITE is escaped the same way (COMPOSITE + its
 *     canonical text), so no string key can pose as a composite one.
 * Equality is structural, as Spark compares keys with equals: 0 ≡ -0, NaN ≡ NaN, and objects are
 * equal with the same properties whatever their order (`{a:1,b:2}` ≡ `{b:2,a:1}`); stableHash
 * makes the same choice. The key a group keeps is the first one seen, in a deterministic order.
 */
import { MAX_DEPTH, NOT_STORABLE, explainUnstorable, isPlainObject } from './storable.ts';

const COMPOSITE = '\u0000';

export function keyIdentity(key: unknown): string | number | boolean | null {
  switch (typeof key) {
    case 'string':
      return key.charCodeAt(0) === 0 ? COMPOSITE + JSON.stringify(key) : key;
    case 'number':
      return key === 0 ? 0 : key;
    case 'boolean':
      return key;
    default:
      if (key === null) return null;
      try {
        return COMPOSITE + canonical(key, 0);
      } catch (error) {
        throw explainUnstorable(error, key, 'key');
      }
  }
}

/**
 * JSON with NaN, Infinity and -Infinity as bare words and -0 written as 0. Strings are quoted
 * (JSON.stringify escapes lone surrogates) and numbers use the shortest round-trip form, so the
 * text parses back to one value: different values cannot share a text.
 */
function canonical(v: unknown, depth: number): string {
  switch (typeof v) {
    case 'string':
      return JSON.stringify(v);
    case 'number':
      return String(v); // -0 gives '0', as a key should
    case 'boolean':
      return v ? 'true' : 'false';
    case 'object': {
      if (v === null) return 'null';
      if (depth >= MAX_DEPTH) throw NOT_STORABLE;
      let text: string;
      if (Array.isArray(v)) {
        text = '[';
        for (let i = 0; i < v.length; i++) {
          const item: unknown = v[i];
          if (item === undefined) throw NOT_STORABLE;
          text += (i === 0 ? '' : ',') + canonical(item, depth + 1);
        }
        return text + ']';
      }
      if (!isPlainObject(v)) throw NOT_STORABLE;
      text = '{';
      // In code-unit order: one text for the same properties in any order.
      for (const key of Object.keys(v).sort()) {
        const item = (v as Record<string, unknown>)[key];
        if (item === undefined) throw NOT_STORABLE;
        text += (text.length === 1 ? '' : ',') + JSON.stringify(key) + ':' + canonical(item, depth + 1);
      }
      return text + '}';
    }
    default:
      throw NOT_STORABLE;
  }
}
