/** Generators of storable values and the equalities the codec specs compare them by. */
import fc from 'fast-check';

/** Any UTF-16 code unit, so lone surrogates appear as well as pairs. */
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));

export const storableString = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme', maxLength: 80 }),
  fc.string({ unit: codeUnit }),
  fc.string({ minLength: 60, maxLength: 300 }),
);

export const storableNumber = fc.oneof(
  fc.integer({ min: -100, max: 100 }),
  fc.integer(),
  fc.maxSafeInteger(),
  fc.double(), // includes -0, NaN and ±Infinity
  fc.constantFrom(2 ** 31, -(2 ** 31), 2 ** 31 - 1, 2 ** 32, 2 ** 52, -(2 ** 52), 2 ** 52 + 1, 2 ** 53, 2 ** 60, Number.MAX_VALUE, Number.MIN_VALUE),
);

export const storablePrimitive = fc.oneof(storableString, storableNumber, fc.boolean(), fc.constant(null));

/** Arrays and objects (with and without a prototype) nested a few levels, over every kind of leaf. */
export const storableValue: fc.Arbitrary<unknown> = fc.letrec<{ value: unknown; array: unknown[]; object: Record<string, unknown> }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, storablePrimitive, tie('array'), tie('object')),
  array: fc.array(tie('value'), { maxLength: 20 }),
  object: fc.dictionary(storableString, tie('value'), { maxKeys: 20 }),
})).value;

/** The codec's equality: Object.is on numbers (-0 and NaN included), same keys in the same order. */
export function identical(a: unknown, b: unknown): boolean {
  return structurallyEqual(a, b, Object.is);
}

/** Key equality: 0 and -0 are the same key (SameValueZero), and objects' properties may come in any order. */
export function sameKey(a: unknown, b: unknown): boolean {
  return structurallyEqual(a, b, (x, y) => x === y || (x !== x && y !== y), false);
}

function structurallyEqual(a: unknown, b: unknown, samePrimitive: (x: unknown, y: unknown) => boolean, ordered = true): boolean {
  if (typeof a !== 'object' || a === null || typeof b !== 'object' || b === null) return samePrimitive(a, b);
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const order = (keys: string[]) => (ordered || Array.isArray(a) ? keys : keys.sort());
  const aKeys = order(Object.keys(a));
  const bKeys = order(Object.keys(b));
  return (
    aKeys.length === bKeys.length &&
    aKeys.every((k, i) => k === bKeys[i] && structurallyEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], samePrimitive, ordered))
  );
}
