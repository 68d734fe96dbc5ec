/**
 * The total order sorting uses (core/rdd/order.ts): what it is, on examples, and that it is a
 * total order agreeing with key equality, on generated storable values.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { compareStorable } from '../../core/rdd/order.ts';
import { keyIdentity } from '../../core/codec/key-identity.ts';
import { storableValue } from './storable-values.ts';

const sign = (n: number) => Math.sign(n) || 0;

describe('the order of storable values', () => {
  it('is by kind, then within each kind as documented', () => {
    const ascending = [
      null,
      false,
      true,
      -Infinity,
      -1.5,
      0,
      1,
      Infinity,
      NaN,
      '',
      'B',
      'a',
      'ab',
      '\uffff',
      [],
      [0],
      [0, 0],
      [1],
      ['a'],
      {},
      { a: 1 },
      { a: 1, b: 0 },
      { b: 0 },
    ];
    for (let i = 0; i < ascending.length; i++) {
      for (let j = 0; j < ascending.length; j++) {
        expect(sign(compareStorable(ascending[i], ascending[j])), `${JSON.stringify(ascending[i])} vs ${JSON.stringify(ascending[j])}`).toBe(sign(i - j));
      }
    }
  });

  it('holds equal what keys hold equal: 0 and -0, NaN and NaN, objects whatever their property order', () => {
    expect(compareStorable(0, -0)).toBe(0);
    expect(compareStorable(NaN, NaN)).toBe(0);
    expect(compareStorable({ a: 1, b: [2] }, { b: [2], a: 1 })).toBe(0);
  });

  it('refuses what cannot be stored, saying so', () => {
    expect(() => compareStorable(undefined, 1)).toThrow(/cannot order undefined/);
    expect(() => compareStorable([new Date(0)], [1])).toThrow(/cannot order an instance of a class/);
  });

  it('is a total order consistent with key identity, on generated values', () => {
    fc.assert(
      fc.property(storableValue, storableValue, storableValue, (a, b, c) => {
        expect(compareStorable(a, a)).toBe(0);
        expect(sign(compareStorable(a, b)) + sign(compareStorable(b, a))).toBe(0);
        expect(compareStorable(a, b) === 0).toBe(keyIdentity(a) === keyIdentity(b));
        const sorted = [a, b, c].sort(compareStorable);
        expect(compareStorable(sorted[0], sorted[2])).toBeLessThanOrEqual(0);
        if (compareStorable(sorted[0], sorted[1]) < 0 || compareStorable(sorted[1], sorted[2]) < 0) expect(compareStorable(sorted[0], sorted[2])).toBeLessThan(0);
      }),
      { numRuns: 2000 },
    );
  });
});
