import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CorruptRecordsError, RecordWriter, decodeRecords, encodeRecords, readRecords } from '../../core/codec/record-codec.ts';
import { UnstorableValueError } from '../../core/codec/storable.ts';
import { identical, storableValue } from './storable-values.ts';

function decodeAll(bytes: Uint8Array): unknown[] {
  const out: unknown[] = [];
  decodeRecords(bytes, (r) => out.push(r));
  return out;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}

/** The bytes one record takes, without the file's header and end marker. */
function recordBytes(value: unknown): string {
  const writer = new RecordWriter();
  const start = writer.byteLength;
  writer.write(value);
  const end = writer.byteLength;
  return hex(writer.finish().subarray(start, end));
}

describe('round trip', () => {
  it('gives back any storable records exactly, in order, through both readers', () => {
    fc.assert(
      fc.property(fc.array(storableValue, { maxLength: 30 }), (records) => {
        const bytes = encodeRecords(records);
        const pulled = [...readRecords(bytes)];
        const pushed = decodeAll(bytes);
        return identical(pulled, records) && identical(pushed, records);
      }),
      { numRuns: 300 },
    );
  });

  it.each([
    ['-0', -0],
    ['NaN', NaN],
    ['Infinity', Infinity],
    ['-Infinity', -Infinity],
    ['a fraction', 0.1],
    ['the smallest double', Number.MIN_VALUE],
    ['the largest double', Number.MAX_VALUE],
    ['2^31', 2 ** 31],
    ['-2^31 - 1', -(2 ** 31) - 1],
    ['2^52 (largest varint)', 2 ** 52],
    ['-(2^52)', -(2 ** 52)],
    ['2^52 + 1 (a double)', 2 ** 52 + 1],
    ['2^53', 2 ** 53],
    ['2^64', 2 ** 64],
    ['a millisecond timestamp', 1_700_000_000_123],
  ])('keeps %s', (_, n) => {
    expect(Object.is(decodeAll(encodeRecords([n]))[0], n)).toBe(true);
  });

  it.each([
    ['a lone high surrogate', '\ud800'],
    ['a lone low surrogate between letters', 'a\udc00b'],
    ['a high surrogate at the end', 'word\ud83d'],
    ['a reversed pair', '\udc00\ud800'],
    ['a long string with one lone surrogate', 'é'.repeat(200) + '\udfff'],
  ])('keeps strings UTF-8 cannot represent: %s', (_, s) => {
    expect(decodeAll(encodeRecords([s]))[0]).toBe(s);
  });

  it.each([
    ['ASCII of every short length', Array.from({ length: 70 }, (_, n) => 'x'.repeat(n))],
    ['non-ASCII around the hand-encoded limit', [41, 42, 43, 63, 64].map((n) => 'ü'.repeat(n))],
    ['astral characters', ['😀', 'a😀b', '𝄞'.repeat(50)]],
    ['long strings', ['a'.repeat(100_000), 'ß'.repeat(100_000)]],
  ])('keeps strings: %s', (_, strings) => {
    expect(decodeAll(encodeRecords(strings))).toEqual(strings);
  });

  it('keeps object key order, with "__proto__" as an ordinary own key', () => {
    const record = JSON.parse('{"b":1,"__proto__":{"x":1},"a":[{"z":0,"y":1}]}');
    const [back] = decodeAll(encodeRecords([record])) as Record<string, unknown>[];
    expect(Object.keys(back!)).toEqual(['b', '__proto__', 'a']);
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(back!['__proto__']).toEqual({ x: 1 });
    expect(Object.keys((back!['a'] as object[])[0]!)).toEqual(['z', 'y']);
  });

  it('stores objects without a prototype as plain objects', () => {
    const record = Object.assign(Object.create(null) as object, { a: 1 });
    const [back] = decodeAll(encodeRecords([record]));
    expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
    expect(back).toEqual({ a: 1 });
  });

  it('keeps large arrays and objects (counts past the one-byte forms)', () => {
    const wide = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]));
    const long = Array.from({ length: 1000 }, (_, i) => i * 1.5);
    expect(identical(decodeAll(encodeRecords([wide, long, [wide]])), [wide, long, [wide]])).toBe(true);
  });

  it('reads a block that is a view into a larger buffer', () => {
    const bytes = encodeRecords([['word', 1], 'é']);
    const larger = new Uint8Array(bytes.length + 10);
    larger.set(bytes, 5);
    expect(decodeAll(larger.subarray(5, 5 + bytes.length))).toEqual([['word', 1], 'é']);
  });
});

describe('determinism', () => {
  it('encodes equal records to identical bytes', () => {
    fc.assert(
      fc.property(fc.array(storableValue, { maxLength: 10 }), (records) => {
        return hex(encodeRecords(records)) === hex(encodeRecords(structuredClone(records)));
      }),
    );
  });

  it("encodes a record the same whatever was written before it", () => {
    fc.assert(
      fc.property(storableValue, storableValue, (before, record) => {
        const writer = new RecordWriter();
        writer.write(before);
        const start = writer.byteLength;
        writer.write(record);
        const end = writer.byteLength;
        return hex(writer.finish().subarray(start, end)) === recordBytes(record);
      }),
    );
  });

  it('writes every NaN as the same bytes', () => {
    const payload = new Float64Array(new Uint32Array([1, 0x7ff00000]).buffer)[0]!;
    expect(payload).toBeNaN();
    expect(recordBytes(payload)).toBe(recordBytes(NaN));
  });

  // Partition files outlive the code that wrote them: a change here needs a new VERSION.
  it.each([
    ['["word", 1]', ['word', 1], '8244776f726401'],
    ['a small negative', -5, 'fb'],
    ['an int32', 100_000, 'a3c09a0c'],
    ['-0', -0, 'a40000000000000080'],
    ['NaN', NaN, 'a4000000000000f87f'],
    ['literals', [null, true, false], '83a0a2a1'],
    ['UTF-8', 'é', 'a602c3a9'],
    ['a lone surrogate', '\ud800', 'a70100d8'],
    ['an object', { a: [] }, '91416180'],
  ])('pins the format: %s', (_, value, bytes) => {
    expect(recordBytes(value)).toBe(bytes);
  });

  it('frames a file with a header and an end marker counting its records', () => {
    expect(hex(encodeRecords([]))).toBe('64737201' + 'df00');
    expect(hex(encodeRecords([1, 2]))).toBe('64737201' + '0102' + 'df02');
  });
});

describe('RecordWriter', () => {
  it('takes 10 bytes for a word-count pair like ["word123", 1]', () => {
    expect(recordBytes(['word123', 1]).length / 2).toBe(10);
  });

  it('counts records and bytes, and finish returns exactly the file', () => {
    const writer = new RecordWriter();
    const records = Array.from({ length: 50_000 }, (_, i) => [`word${i}`, i % 7 === 0 ? { n: i, s: 'ü'.repeat(i % 50) } : i]);
    for (const r of records) writer.write(r);
    expect(writer.count).toBe(50_000);
    const length = writer.byteLength;
    const bytes = writer.finish();
    expect(bytes.length).toBe(length + 4); // end marker: 0xdf and a 3-byte varint of 50000
    expect(decodeAll(bytes)).toEqual(records);
  });

  it('is complete after finish: finish again returns the same bytes, writing throws', () => {
    const writer = new RecordWriter();
    writer.write('a');
    const bytes = writer.finish();
    expect(writer.finish()).toBe(bytes);
    expect(() => writer.write('b')).toThrow('RecordWriter.write after finish');
  });
});

describe('values that cannot be stored are rejected, naming where they are', () => {
  class Point {
    x = 1;
  }
  const cyclic: { self?: unknown } = {};
  cyclic.self = [cyclic];
  const only = 'only plain objects, arrays, strings, numbers, booleans and null can be stored';

  it.each([
    ['undefined in an object', { user: { name: undefined } }, 'record[0].user.name is undefined'],
    ['a hole in an array', [1, , 3], 'record[0][1] is undefined'],
    ['undefined as the record', undefined, 'record[0] is undefined'],
    ['a key that is not an identifier', { 'user name': [undefined] }, 'record[0]["user name"][0] is undefined'],
    ['a function', { f() {} }, `record[0].f is a function: ${only}`],
    ['a symbol', [Symbol('s')], `record[0][0] is a symbol: ${only}`],
    ['a bigint', { n: 10n }, `record[0].n is a bigint: ${only}`],
    ['a Map', [new Map()], `record[0][0] is an instance of Map: ${only}`],
    ['a Set', new Set([1]), `record[0] is an instance of Set: ${only}`],
    ['a Date', { at: new Date(0) }, `record[0].at is an instance of Date: ${only}`],
    ['a class instance', { p: new Point() }, `record[0].p is an instance of Point: ${only}`],
    ['an array buffer view', [new Uint8Array(2)], `record[0][0] is an instance of Uint8Array: ${only}`],
    ['an object with a custom prototype', [Object.create({ inherited: 1 })], `record[0][0] is an object with a custom prototype: ${only}`],
  ])('%s', (_, value, message) => {
    const writer = new RecordWriter();
    const error = captureError(() => writer.write(value));
    expect(error).toBeInstanceOf(UnstorableValueError);
    expect(error).toBeInstanceOf(TypeError);
    expect((error as Error).message).toBe(message);
  });

  it('a cycle, by its nesting depth', () => {
    expect(() => new RecordWriter().write(cyclic)).toThrow(/^record\[0\]\.self\[0\]\.self.*… *.*nests more than 1000 levels deep \(is it cyclic\?\)$/);
  });

  it('numbers the record by its place in the file', () => {
    const writer = new RecordWriter();
    for (let i = 0; i < 3; i++) writer.write(i);
    expect(() => writer.write({ user: { name: undefined } })).toThrow('record[3].user.name is undefined');
  });

  it('leaves the writer as it was before the rejected record', () => {
    const writer = new RecordWriter();
    writer.write(['a', 1]);
    const length = writer.byteLength;
    expect(() => writer.write(['b', [1, 2, new Date()]])).toThrow(UnstorableValueError);
    expect([writer.count, writer.byteLength]).toEqual([1, length]);
    writer.write(['c', 3]);
    expect(decodeAll(writer.finish())).toEqual([['a', 1], ['c', 3]]);
  });
});

describe('damaged or foreign input gets a clear error', () => {
  it.each([
    ['a JSON-lines file', Buffer.from('{"a":1}\n'), 'not a dstream partition file (bad magic)'],
    ['an empty object', new Uint8Array(0), 'not a dstream partition file (0 bytes, shorter than the header)'],
    ['a file from a newer format', Uint8Array.from([0x64, 0x73, 0x72, 2, 0xdf, 0]), 'unsupported dstream partition format version 2 (this build reads version 1)'],
  ])('%s', (_, bytes, message) => {
    expect(() => decodeAll(bytes)).toThrow(new CorruptRecordsError(message));
  });

  it('a record cut short names the byte where the record starts', () => {
    const writer = new RecordWriter();
    writer.write('a');
    const second = writer.byteLength;
    writer.write(['word', 1]);
    const bytes = writer.finish().subarray(0, second + 3);
    expect(() => decodeAll(bytes)).toThrow(`truncated record at byte ${second} (record runs past the end, ${second + 3} bytes)`);
  });

  it('a file cut at a record boundary is missing its end marker', () => {
    const bytes = encodeRecords(['a', 'b']);
    expect(() => decodeAll(bytes.subarray(0, bytes.length - 2))).toThrow('truncated file: no end marker after 2 records');
  });

  it('every proper prefix of a file is rejected', () => {
    fc.assert(
      fc.property(fc.array(storableValue, { maxLength: 5 }), fc.nat(), (records, cut) => {
        const bytes = encodeRecords(records);
        const prefix = bytes.subarray(0, cut % bytes.length);
        return captureError(() => decodeAll(prefix)) instanceof CorruptRecordsError;
      }),
    );
  });

  it('two files back to back are not one file', () => {
    const one = encodeRecords(['a']);
    const both = Buffer.concat([one, encodeRecords(['b'])]);
    expect(() => decodeAll(both)).toThrow(`corrupt record at byte ${one.length - 2}: ${both.length - one.length} bytes after the end marker`);
  });

  it('an end marker whose count disagrees', () => {
    const bytes = encodeRecords(['a', 'b']);
    bytes[bytes.length - 1] = 3;
    expect(() => decodeAll(bytes)).toThrow('end marker counts 3 records, read 2');
  });

  it('an unknown tag', () => {
    const bytes = encodeRecords([[1, 2]]);
    bytes[6] = 0xc0;
    expect(() => decodeAll(bytes)).toThrow('corrupt record at byte 4: unknown tag 0xc0 at byte 6');
  });

  it('an absurd count is refused before anything is allocated', () => {
    const bytes = Uint8Array.from([0x64, 0x73, 0x72, 1, 0xa8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00]);
    expect(() => decodeAll(bytes)).toThrow('truncated record at byte 4');
  });

  it('nesting deeper than any writer produces is an error, not a stack overflow', () => {
    const bytes = Buffer.concat([Buffer.from([0x64, 0x73, 0x72, 1]), Buffer.alloc(200_000, 0x81)]);
    expect(() => decodeAll(bytes)).toThrow('corrupt record at byte 4: nested more than 1000 deep');
  });

  it('arbitrary damage fails only with CorruptRecordsError, if at all', () => {
    fc.assert(
      fc.property(fc.array(storableValue, { minLength: 1, maxLength: 5 }), fc.array(fc.tuple(fc.nat(), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }), (records, damage) => {
        const bytes = encodeRecords(records).slice();
        for (const [at, byte] of damage) bytes[4 + (at % (bytes.length - 4))] = byte;
        const error = captureError(() => decodeAll(bytes));
        return error === undefined || error instanceof CorruptRecordsError;
      }),
      { numRuns: 500 },
    );
  });

  it('readRecords yields the records before the damage', () => {
    const bytes = encodeRecords(['first', 'second']);
    bytes[4 + 6] = 0xc0;
    const records = readRecords(bytes);
    expect(records.next().value).toBe('first');
    expect(() => records.next()).toThrow('unknown tag 0xc0');
  });
});

function captureError(f: () => unknown): unknown {
  try {
    f();
  } catch (error) {
    return error;
  }
  return undefined;
}
