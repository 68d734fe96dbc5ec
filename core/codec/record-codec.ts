/**
 * The binary format of partition files and shuffle blocks: a header, then records back to back,
 * each one tagged value. Hand-written rather than v8.serialize so that the bytes depend only on
 * the values (never on the Node version) and so the hot shapes — short strings and small arrays
 * like ["word", 1] — take a byte or two of framing. Equal values (Object.is on numbers, same key
 * order) always encode to identical bytes: every choice below is a function of the value.
 *
 * Layout
 *   header        'd' 's' 'r' VERSION
 *   records       one value each, tagged as below
 *   end marker    0xdf, then the record count as a varint — so a file cut short at a record
 *                 boundary, or a block read with wrong offsets, is an error, not fewer records
 *
 * Values
 *   0x00–0x3f     integer 0..63
 *   0x40–0x7f     ASCII string of 0..63 bytes, then the bytes
 *   0x80–0x8f     array of 0..15 elements, then the elements
 *   0x90–0x9f     object of 0..15 entries, then key (a string value), value, key, value…
 *   0xa0–0xa2     null, false, true
 *   0xa3          integer with |n| ≤ 2^52, zig-zag LEB128 varint
 *   0xa4          any other number, float64 little-endian (NaN canonical)
 *   0xa5          ASCII string, varint length, bytes
 *   0xa6          UTF-8 string (well-formed, not ASCII), varint byte length, bytes
 *   0xa7          string with lone surrogates (not valid UTF-8), varint code units, UTF-16LE
 *   0xa8 / 0xa9   array / object with a varint count
 *   0xe0–0xff     integer -32..-1
 */
import { MAX_DEPTH, NOT_STORABLE, explainUnstorable, isPlainObject } from './storable.ts';

const MAGIC = [0x64, 0x73, 0x72] as const; // "dsr"
const VERSION = 1;
const HEADER_BYTES = 4;

const FIXINT_MAX = 0x3f;
const FIXASCII = 0x40;
const FIXASCII_MAX = 63;
const FIXARRAY = 0x80;
const FIXOBJECT = 0x90;
const FIXCOUNT_MAX = 15;
const NULL = 0xa0;
const FALSE = 0xa1;
const TRUE = 0xa2;
const VARINT = 0xa3;
const FLOAT64 = 0xa4;
const ASCII = 0xa5;
const UTF8 = 0xa6;
const UTF16 = 0xa7;
const ARRAY = 0xa8;
const OBJECT = 0xa9;
const END = 0xdf;
const NEGATIVE_FIXINT = 0xe0;

/** Integers this large still fit a zig-zag varint exactly in double arithmetic. */
const VARINT_INT_MAX = 2 ** 52;
/**
 * Strings at most this long are UTF-8-encoded by hand (their byte length, ≤ 3 per code unit,
 * then fits a one-byte varint); longer ones go through Buffer, whose native call costs more
 * than a short loop.
 */
const SHORT_UTF8_MAX = 42;

/**
 * Buffer's own unchecked workers behind toString/write (undocumented, present in Node 20 and
 * 22): they skip the encoding-name and argument checks, which dominate for short strings.
 */
interface FastBuffer extends Buffer {
  utf8Write(text: string, offset: number, length: number): number;
  latin1Slice(start: number, end: number): string;
  utf8Slice(start: number, end: number): string;
  ucs2Slice(start: number, end: number): string;
}

const isWellFormed = (String.prototype as unknown as { isWellFormed(this: string): boolean }).isWellFormed;

export class RecordWriter {
  private buf: FastBuffer;
  private view: DataView;
  private pos = HEADER_BYTES;
  private records = 0;
  private finished: Uint8Array | undefined;

  constructor() {
    this.buf = Buffer.allocUnsafe(1024) as FastBuffer;
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.buf.set(MAGIC);
    this.buf[3] = VERSION;
  }

  get count(): number {
    return this.records;
  }

  /** Bytes so far, header included (and after finish, the end marker). */
  get byteLength(): number {
    return this.pos;
  }

  /** Appends one record; on an unstorable value throws UnstorableValueError and writes nothing. */
  write(value: unknown): void {
    if (this.finished) throw new Error('RecordWriter.write after finish: the file is complete');
    const start = this.pos;
    try {
      this.value(value, 0);
    } catch (error) {
      this.pos = start;
      throw explainUnstorable(error, value, `record[${this.records}]`);
    }
    this.records++;
  }

  /** Ends the file with the end marker and returns exactly its bytes (a view, not a copy). */
  finish(): Uint8Array {
    if (!this.finished) {
      this.ensure(9);
      this.buf[this.pos++] = END;
      this.varint(this.records);
      this.finished = this.buf.subarray(0, this.pos);
    }
    return this.finished;
  }

  private ensure(bytes: number): void {
    if (this.pos + bytes <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + bytes)) as FastBuffer;
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.view = new DataView(next.buffer, next.byteOffset, next.byteLength);
  }

  private value(v: unknown, depth: number): void {
    switch (typeof v) {
      case 'string':
        return this.string(v);
      case 'number':
        return this.number(v);
      case 'boolean':
        this.ensure(1);
        this.buf[this.pos++] = v ? TRUE : FALSE;
        return;
      case 'object':
        if (v === null) {
          this.ensure(1);
          this.buf[this.pos++] = NULL;
          return;
        }
        if (depth >= MAX_DEPTH) throw NOT_STORABLE;
        if (Array.isArray(v)) return this.array(v, depth + 1);
        if (!isPlainObject(v)) throw NOT_STORABLE;
        return this.object(v as Record<string, unknown>, depth + 1);
      default:
        throw NOT_STORABLE;
    }
  }

  private array(a: unknown[], depth: number): void {
    const n = a.length;
    this.ensure(9);
    if (n <= FIXCOUNT_MAX) this.buf[this.pos++] = FIXARRAY + n;
    else {
      this.buf[this.pos++] = ARRAY;
      this.varint(n);
    }
    for (let i = 0; i < n; i++) {
      const item = a[i];
      if (item === undefined) throw NOT_STORABLE; // also a hole
      this.value(item, depth);
    }
  }

  /** The entry count is only known after iterating, so it is patched in, shifting the body when it needs a varint. */
  private object(o: Record<string, unknown>, depth: number): void {
    this.ensure(1);
    const tagAt = this.pos++;
    let n = 0;
    for (const key in o) {
      this.string(key);
      const item = o[key];
      if (item === undefined) throw NOT_STORABLE;
      this.value(item, depth);
      n++;
    }
    if (n <= FIXCOUNT_MAX) {
      this.buf[tagAt] = FIXOBJECT + n;
      return;
    }
    const size = varintSize(n);
    this.ensure(size);
    const buf = this.buf;
    buf.copyWithin(tagAt + 1 + size, tagAt + 1, this.pos);
    buf[tagAt] = OBJECT;
    const end = this.pos + size;
    this.pos = tagAt + 1;
    this.varint(n);
    this.pos = end;
  }

  private number(n: number): void {
    this.ensure(9);
    const buf = this.buf;
    const i = n | 0;
    // 1 / n > 0 rules out -0, which must come back as -0.
    if (i === n && (i !== 0 || 1 / n > 0)) {
      if (i >= 0) {
        if (i <= FIXINT_MAX) buf[this.pos++] = i;
        else {
          buf[this.pos++] = VARINT;
          this.varint(i * 2);
        }
      } else if (i >= -32) buf[this.pos++] = NEGATIVE_FIXINT + 32 + i;
      else {
        buf[this.pos++] = VARINT;
        this.varint(-i * 2 - 1);
      }
    } else if (i !== n && Number.isInteger(n) && Math.abs(n) <= VARINT_INT_MAX) {
      buf[this.pos++] = VARINT;
      this.varint(n >= 0 ? n * 2 : -n * 2 - 1);
    } else {
      buf[this.pos++] = FLOAT64;
      // NaN has many bit patterns; equal values must give equal bytes.
      this.view.setFloat64(this.pos, n === n ? n : NaN, true);
      this.pos += 8;
    }
  }

  /** Unsigned LEB128 of a non-negative integer ≤ 2^53; the caller has ensured 8 bytes. */
  private varint(n: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (n > 0x7fffffff) {
      buf[pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    while (n > 0x7f) {
      buf[pos++] = (n & 0x7f) | 0x80;
      n >>>= 7;
    }
    buf[pos++] = n;
    this.pos = pos;
  }

  private string(s: string): void {
    const len = s.length;
    if (len <= FIXASCII_MAX) {
      this.ensure(1 + len);
      const buf = this.buf;
      const start = this.pos;
      let p = start + 1;
      let i = 0;
      for (; i < len; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        buf[p++] = c;
      }
      if (i === len) {
        buf[start] = FIXASCII + len;
        this.pos = p;
        return;
      }
      if (len <= SHORT_UTF8_MAX) return this.shortUtf8(s);
    }
    this.longString(s);
  }

  /** Hand-encoded UTF-8 for a short string known not to be ASCII. */
  private shortUtf8(s: string): void {
    const len = s.length;
    this.ensure(2 + len * 3);
    const buf = this.buf;
    const start = this.pos;
    let p = start + 2;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c < 0x80) buf[p++] = c;
      else if (c < 0x800) {
        buf[p++] = 0xc0 | (c >> 6);
        buf[p++] = 0x80 | (c & 0x3f);
      } else if (c < 0xd800 || c >= 0xe000) {
        buf[p++] = 0xe0 | (c >> 12);
        buf[p++] = 0x80 | ((c >> 6) & 0x3f);
        buf[p++] = 0x80 | (c & 0x3f);
      } else {
        const d = i + 1 < len ? s.charCodeAt(i + 1) : 0;
        if (c >= 0xdc00 || d < 0xdc00 || d >= 0xe000) return this.utf16(s);
        i++;
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        buf[p++] = 0xf0 | (cp >> 18);
        buf[p++] = 0x80 | ((cp >> 12) & 0x3f);
        buf[p++] = 0x80 | ((cp >> 6) & 0x3f);
        buf[p++] = 0x80 | (cp & 0x3f);
      }
    }
    buf[start] = UTF8;
    buf[start + 1] = p - start - 2;
    this.pos = p;
  }

  private longString(s: string): void {
    if (!isWellFormed.call(s)) return this.utf16(s);
    const bytes = Buffer.byteLength(s, 'utf8');
    this.ensure(9 + bytes);
    this.buf[this.pos++] = bytes === s.length ? ASCII : UTF8;
    this.varint(bytes);
    this.pos += this.buf.utf8Write(s, this.pos, bytes);
  }

  /** Strings UTF-8 cannot represent (lone surrogates) keep their UTF-16 code units, so they still round-trip. */
  private utf16(s: string): void {
    const len = s.length;
    this.ensure(9 + len * 2);
    this.buf[this.pos++] = UTF16;
    this.varint(len);
    const buf = this.buf;
    let p = this.pos;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i);
      buf[p++] = c & 0xff;
      buf[p++] = c >> 8;
    }
    this.pos = p;
  }
}

function varintSize(n: number): number {
  let size = 1;
  while (n > 0x7f) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

export function encodeRecords(values: Iterable<unknown>): Uint8Array {
  const writer = new RecordWriter();
  for (const value of values) writer.write(value);
  return writer.finish();
}

export class CorruptRecordsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorruptRecordsError';
  }
}

/** Decodes every record, pushing each to `onRecord` in order: the fast way to read a partition. */
export function decodeRecords(bytes: Uint8Array, onRecord: (record: unknown) => void): void {
  const reader = new Reader(bytes);
  while (reader.more()) onRecord(reader.record());
}

export function* readRecords(bytes: Uint8Array): Generator<unknown> {
  const reader = new Reader(bytes);
  while (reader.more()) yield reader.record();
}

class Reader {
  private readonly buf: FastBuffer;
  private readonly view: DataView;
  private readonly end: number;
  private pos = HEADER_BYTES;
  private recordStart = HEADER_BYTES;
  private records = 0;

  constructor(bytes: Uint8Array) {
    if (!(bytes instanceof Uint8Array)) throw new TypeError(`records are read from a Uint8Array, got ${typeof bytes}`);
    checkHeader(bytes);
    this.buf = (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)) as FastBuffer;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.end = bytes.length;
  }

  /** Whether another record follows; at the end marker, checks that the file ends as written. */
  more(): boolean {
    if (this.pos >= this.end) {
      throw new CorruptRecordsError(`truncated file: no end marker after ${this.records} records (${this.end} bytes)`);
    }
    if (this.buf[this.pos] !== END) return true;
    this.recordStart = this.pos++;
    const count = this.varint();
    if (count !== this.records) throw this.corrupt(`end marker counts ${count} records, read ${this.records}`);
    if (this.pos !== this.end) throw this.corrupt(`${this.end - this.pos} bytes after the end marker`);
    return false;
  }

  record(): unknown {
    this.recordStart = this.pos;
    this.records++;
    return this.value(0);
  }

  private value(depth: number): unknown {
    if (this.pos >= this.end) throw this.truncated();
    const tag = this.buf[this.pos++]!;
    if (tag <= FIXINT_MAX) return tag;
    if (tag < FIXARRAY) return this.ascii(tag - FIXASCII);
    if (tag < FIXOBJECT) return this.array(tag - FIXARRAY, depth);
    if (tag < NULL) return this.object(tag - FIXOBJECT, depth);
    if (tag >= NEGATIVE_FIXINT) return tag - NEGATIVE_FIXINT - 32;
    switch (tag) {
      case NULL:
        return null;
      case FALSE:
        return false;
      case TRUE:
        return true;
      case VARINT: {
        const z = this.varint();
        return z & 1 ? -(z + 1) / 2 : z / 2;
      }
      case FLOAT64: {
        if (this.pos + 8 > this.end) throw this.truncated();
        const n = this.view.getFloat64(this.pos, true);
        this.pos += 8;
        return n;
      }
      case ASCII:
        return this.ascii(this.varint());
      case UTF8: {
        const len = this.varint();
        const start = this.pos;
        if (start + len > this.end) throw this.truncated();
        this.pos = start + len;
        return this.buf.utf8Slice(start, start + len);
      }
      case UTF16: {
        const units = this.varint();
        const start = this.pos;
        if (start + units * 2 > this.end) throw this.truncated();
        this.pos = start + units * 2;
        return this.buf.ucs2Slice(start, start + units * 2);
      }
      case ARRAY:
        return this.array(this.varint(), depth);
      case OBJECT:
        return this.object(this.varint(), depth);
      default:
        throw this.corrupt(`unknown tag 0x${tag.toString(16)} at byte ${this.pos - 1}`);
    }
  }

  private ascii(len: number): string {
    const start = this.pos;
    const end = start + len;
    if (end > this.end) throw this.truncated();
    this.pos = end;
    return len <= SHORT_ASCII_MAX ? shortAscii(this.buf, start, len) : this.buf.latin1Slice(start, end);
  }

  private array(n: number, depth: number): unknown[] {
    // Each element takes at least a byte: a larger count is damage, not a reason to allocate.
    if (this.pos + n > this.end) throw this.truncated();
    if (depth >= MAX_DEPTH) throw this.corrupt(`nested more than ${MAX_DEPTH} deep`);
    const a = new Array<unknown>(n);
    for (let i = 0; i < n; i++) a[i] = this.value(depth + 1);
    return a;
  }

  private object(n: number, depth: number): Record<string, unknown> {
    if (this.pos + 2 * n > this.end) throw this.truncated();
    if (depth >= MAX_DEPTH) throw this.corrupt(`nested more than ${MAX_DEPTH} deep`);
    const o: Record<string, unknown> = {};
    for (let i = 0; i < n; i++) {
      const key = this.key(depth + 1);
      const item = this.value(depth + 1);
      // Assigning '__proto__' would set the prototype instead of storing the key.
      if (key === '__proto__') Object.defineProperty(o, key, { value: item, enumerable: true, writable: true, configurable: true });
      else o[key] = item;
    }
    return o;
  }

  /**
   * Object keys repeat from record to record, so short ASCII keys come from a cache: reusing
   * one string (already internalized by its first use as a property name) spares creating a
   * string and looking it up in V8's string table for every key of every object.
   */
  private key(depth: number): string {
    const buf = this.buf;
    const start = this.pos + 1;
    const len = (this.pos < this.end ? buf[this.pos]! : -1) - FIXASCII;
    if (len < 0 || len > KEY_CACHE_MAX_LENGTH || start + len > this.end) {
      const key = this.value(depth);
      if (typeof key !== 'string') throw this.corrupt(`object key is a ${typeof key}, not a string`);
      return key;
    }
    const end = start + len;
    this.pos = end;
    let h = len;
    for (let i = start; i < end; i++) h = (Math.imul(h, 31) + buf[i]!) | 0;
    const slot = (h ^ (h >>> 15)) & (keyCache.length - 1);
    const cached = keyCache[slot]!;
    if (cached.length === len) {
      let i = 0;
      while (i < len && cached.charCodeAt(i) === buf[start + i]) i++;
      if (i === len) return cached;
    }
    const key = len <= SHORT_ASCII_MAX ? shortAscii(buf, start, len) : buf.latin1Slice(start, end);
    keyCache[slot] = key;
    return key;
  }

  private varint(): number {
    const buf = this.buf;
    let pos = this.pos;
    if (pos >= this.end) throw this.truncated();
    let b = buf[pos++]!;
    if (b < 0x80) {
      this.pos = pos;
      return b;
    }
    let n = b & 0x7f;
    let scale = 128;
    for (let i = 1; i < 8; i++) {
      if (pos >= this.end) throw this.truncated();
      b = buf[pos++]!;
      n += (b & 0x7f) * scale;
      if (b < 0x80) {
        this.pos = pos;
        return n;
      }
      scale *= 128;
    }
    throw this.corrupt(`varint longer than 8 bytes at byte ${this.pos}`);
  }

  private truncated(): CorruptRecordsError {
    return new CorruptRecordsError(`truncated record at byte ${this.recordStart} (record runs past the end, ${this.end} bytes)`);
  }

  private corrupt(what: string): CorruptRecordsError {
    return new CorruptRecordsError(`corrupt record at byte ${this.recordStart}: ${what}`);
  }
}

const SHORT_ASCII_MAX = 12;
const KEY_CACHE_MAX_LENGTH = 32;
/** Direct-mapped by a hash of the key's bytes; '' in empty slots. Shared: it only memoizes. */
const keyCache: string[] = new Array<string>(4096).fill('');

/**
 * For up to SHORT_ASCII_MAX bytes, String.fromCharCode with the bytes as arguments is two to
 * four times faster than a native slice call (measured on Node 20); one case per length keeps
 * every call site monomorphic in its argument count.
 */
function shortAscii(b: Uint8Array, i: number, len: number): string {
  const c = String.fromCharCode;
  switch (len) {
    case 0:
      return '';
    case 1:
      return c(b[i]!);
    case 2:
      return c(b[i]!, b[i + 1]!);
    case 3:
      return c(b[i]!, b[i + 1]!, b[i + 2]!);
    case 4:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!);
    case 5:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!);
    case 6:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!);
    case 7:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!);
    case 8:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!);
    case 9:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!, b[i + 8]!);
    case 10:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!, b[i + 8]!, b[i + 9]!);
    case 11:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!, b[i + 8]!, b[i + 9]!, b[i + 10]!);
    default:
      return c(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!, b[i + 8]!, b[i + 9]!, b[i + 10]!, b[i + 11]!);
  }
}

function checkHeader(bytes: Uint8Array): void {
  if (bytes.length < HEADER_BYTES || bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1] || bytes[2] !== MAGIC[2]) {
    const what = bytes.length < HEADER_BYTES ? `${bytes.length} bytes, shorter than the header` : 'bad magic';
    throw new CorruptRecordsError(`not a dstream partition file (${what})`);
  }
  if (bytes[3] !== VERSION) {
    throw new CorruptRecordsError(`unsupported dstream partition format version ${bytes[3]} (this build reads version ${VERSION})`);
  }
}
