import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { keyIdentity } from '../../core/codec/key-identity.ts';
import { stableHash } from '../../core/codec/stable-hash.ts';
import { UnstorableValueError } from '../../core/codec/storable.ts';
import { sameKey, storableValue } from './storable-values.ts';

/** Keys drawn from few leaves, so that equal and nearly equal pairs come up often. */
const key: fc.Arbitrary<unknown> = fc.letrec<{ key: unknown }>((tie) => ({
  key: fc.oneof(
    { depthSize: 'small' },
    fc.constantFrom('a', 'b', '\u0000', '\u0000a', '', '0', 'null', 0, -0, 1, NaN, Infinity, true, false, null),
    fc.array(tie('key'), { maxLength: 3 }),
    fc.dictionary(fc.constantFrom('a', 'b', '0'), tie('key'), { maxKeys: 2 }),
  ),
})).key;

/** How a Map compares its keys. */
const sameMapKey = (a: unknown, b: unknown) => new Map([[a, true]]).has(b);

describe('keyIdentity', () => {
  it('is the same Map key exactly when the keys are equal', () => {
    fc.assert(
      fc.property(key, key, (a, b) => sameMapKey(keyIdentity(a), keyIdentity(b)) === sameKey(a, b)),
      { numRuns: 2000 },
    );
  });

  it('gives equal keys the same identity however they were built', () => {
    fc.assert(fc.property(storableValue, (v) => sameMapKey(keyIdentity(v), keyIdentity(structuredClone(v)))));
  });

  it('leaves strings, numbers, booleans and null as they are, so common lookups cost nothing', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string().filter((s) => !s.startsWith('\u0000')), fc.double(), fc.boolean(), fc.constant(null)), (k) =>
        Object.is(keyIdentity(k), Object.is(k, -0) ? 0 : k),
      ),
    );
  });

  it('never lets a string pose as an array or object key', () => {
    fc.assert(
      fc.property(storableValue, (v) => {
        // The string spelling v's identity must itself have another identity, unless it is v.
        const identity = keyIdentity(v);
        return typeof identity !== 'string' || identity === v || keyIdentity(identity) !== identity;
      }),
    );
    expect(keyIdentity('\u0000[1]')).not.toBe(keyIdentity([1]));
  });

  it('compares objects by value whatever the order of their properties, and numbers as a Map does (0 is -0, NaN is NaN)', () => {
    expect(keyIdentity({ a: 1, b: 2 })).toBe(keyIdentity({ b: 2, a: 1 }));
    expect(keyIdentity([{ x: [1, { p: 1, q: 2 }], y: null }])).toBe(keyIdentity([{ y: null, x: [1, { q: 2, p: 1 }] }]));
    expect(keyIdentity({ a: 1, b: 2 })).not.toBe(keyIdentity({ a: 2, b: 1 }));
    expect(keyIdentity([0, NaN])).toBe(keyIdentity([-0, NaN]));
    expect(keyIdentity(['x', 1])).not.toBe(keyIdentity(['x', '1']));
    expect(keyIdentity([null])).not.toBe(keyIdentity([NaN]));
    expect(keyIdentity([Infinity])).not.toBe(keyIdentity(['Infinity']));
  });

  it('agrees with stableHash: keys with the same identity hash alike', () => {
    fc.assert(
      fc.property(key, key, (a, b) => !sameMapKey(keyIdentity(a), keyIdentity(b)) || stableHash(a) === stableHash(b)),
      { numRuns: 2000 },
    );
  });

  it('groups pairs by composite key in a Map', () => {
    const groups = new Map<unknown, number>();
    for (const [k, v] of [[['u1', 3], 1], [['u2', 3], 2], [['u1', 3], 4]] as const) {
      const id = keyIdentity(k);
      groups.set(id, (groups.get(id) ?? 0) + v);
    }
    expect([...groups.values()]).toEqual([5, 2]);
  });

  it('rejects what cannot be a key, naming where it is', () => {
    expect(() => keyIdentity({ user: undefined })).toThrow(new UnstorableValueError('key.user', 'key.user is undefined'));
    expect(() => keyIdentity(undefined)).toThrow('key is undefined');
    expect(() => keyIdentity([new Map()])).toThrow('key[0] is an instance of Map');
  });
});
