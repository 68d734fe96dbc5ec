import { isUtf8 } from 'node:buffer';
import { ObjectNotFoundError, readContentAddressed, type ObjectStore } from '../ports/object-store.ts';
import type { InputRange, Split, SplitRef } from '../rdd/plan.ts';
import { keys, type Scope } from '../layout.ts';
import type { PlannedRead } from './task-reads.ts';

export interface LineSink {
  line(text: string): void;
  /** A line that cannot be a record: not UTF-8, or longer than the bound. */
  badLine(where: { key: string; offset: number; length: number }, reason: string, raw?: Uint8Array): void;
}

/**
 * Which input line is being processed, moved by the reader before it hands each line on, so that
 * an error downstream can name the upload and byte it came from. Per line the reader makes one
 * assignment; the offset is worked out only when asked (on an error).
 */
export class LinePosition {
  /** The object being read, or undefined between source reads (records from a shuffle or state). */
  key: string | undefined = undefined;
  /** Byte offset of the first line of `lines`, or of the current line when `lines` is unset. */
  private base = 0;
  private lines: string[] | undefined = undefined;
  /** Index of the current line in `lines`. */
  index = 0;

  /** A block of lines decoded at once, starting at byte `base` of `key`. */
  block(key: string, base: number, lines: string[]): void {
    this.key = key;
    this.base = base;
    this.lines = lines;
    this.index = 0;
  }

  /** One line on its own, at byte `offset` of `key`. */
  single(key: string, offset: number): void {
    this.key = key;
    this.base = offset;
    this.lines = undefined;
  }

  clear(): void {
    this.key = undefined;
    this.lines = undefined;
  }

  /** Byte offset of the current line in its object. */
  get offset(): number {
    let offset = this.base;
    const lines = this.lines;
    // The block's lines still hold any '\r', so their byte lengths sum to the exact offset.
    if (lines) for (let i = 0; i < this.index; i++) offset += Buffer.byteLength(lines[i]!) + 1;
    return offset;
  }
}

export interface SplitReaderOptions {
  /** Longest line accepted, in bytes; a longer one is a bad record and is not held in memory. */
  maxLineBytes: number;
  /** Moved to each line before it is handed on. */
  position?: LinePosition;
  /** Checked at each chunk: reading stops (throwing the abort reason) once it is aborted. */
  signal?: AbortSignal;
}

const NEWLINE = 10;
const EXTEND_STEP = 64 * 1024;

/** The byte ranges of one split of a scope's plan, checked against the hash the plan holds. */
export function loadSplit(store: ObjectStore, scope: Scope, ref: SplitRef): Promise<Split> {
  return readContentAddressed<Split>(store, keys.lineageSplit(scope, ref.hash), ref.hash);
}

/**
 * Input ranges read whole ahead of the compute (TaskReads) when no longer than this; a longer one
 * is streamed as it is read, so that a split's bytes are never all held at once.
 */
const INPUT_AHEAD_BYTES = 1 << 20;

/** A split's descriptor as the compute reads it, and then the first read of each of its short input ranges. */
export function plannedSplitReads(scope: Scope, ref: SplitRef): PlannedRead {
  return {
    key: keys.lineageSplit(scope, ref.hash),
    then: (bytes) =>
      (JSON.parse(Buffer.from(bytes).toString('utf8')) as Split).ranges.flatMap((range) => {
        const [start, end] = firstRead(range);
        return end - start <= INPUT_AHEAD_BYTES ? [{ key: range.key, range: { start, end, ...(range.version === undefined ? {} : { version: range.version }) } }] : [];
      }),
  };
}

/**
 * How far past its end a range's first read goes: its last line goes on past the end unless the
 * cut fell on a line's end, and with this much more it usually ends within the first request
 * rather than in a second one (a round trip on S3). Bytes past it are read only to that line's end.
 */
export const FIRST_READ_TAIL_BYTES = 4096;

/** The bytes first read of a range: from the byte before it (to tell whether it starts a line) to a little past its end. */
function firstRead(range: InputRange): [start: number, end: number] {
  return [range.start > 0 ? range.start - 1 : 0, range.end + FIRST_READ_TAIL_BYTES];
}

/** Reads every line of a split, streaming; see `readRangeLines` for which lines a range owns. */
export async function readSplitLines(store: ObjectStore, split: Split, options: SplitReaderOptions, sink: LineSink): Promise<void> {
  for (const range of split.ranges) await readRangeLines(store, range, options, sink);
}

/**
 * A line belongs to the range that holds its first byte, so when an object is cut into ranges at
 * arbitrary bytes every line is read exactly once: a range that starts mid-object skips the line
 * in progress (its owner is the range before), and a range reads past its end to finish its last.
 */
export async function readRangeLines(store: ObjectStore, range: InputRange, options: SplitReaderOptions, sink: LineSink): Promise<void> {
  const progress = { read: false };
  try {
    await readPinnedRangeLines(store, range, options, sink, progress);
  } catch (error) {
    // Gone half-way through a read is no fixed fact of the upload: an error, as any other.
    if (!(error instanceof ObjectNotFoundError) || progress.read) throw error;
    // The admitted bytes are gone (a version deleted by hand, or expired while the interval stayed
    // failed): a bad record of the whole range, the same on every read, so the policy decides,
    // and `dstream quarantine` gets past it.
    const what = range.version === undefined ? range.key : `${range.key} (version ${range.version})`;
    options.position?.single(range.key, range.start);
    sink.badLine({ key: range.key, offset: range.start, length: range.end - range.start }, `the upload ${what} is gone: its admitted bytes can no longer be read`);
  }
}

async function readPinnedRangeLines(store: ObjectStore, range: InputRange, options: SplitReaderOptions, sink: LineSink, progress: { read: boolean }): Promise<void> {
  const reader = new RangeLineReader(range, options, sink);
  let [pos, readTo] = firstRead(range);
  let step = EXTEND_STEP;
  while (!reader.done) {
    const before = pos;
    for await (const chunk of store.getRange(range.key, pos, readTo, { version: range.version })) {
      progress.read = true;
      options.signal?.throwIfAborted();
      reader.onChunk(chunk, pos);
      pos += chunk.length;
      if (reader.done) break;
    }
    if (reader.done) break;
    if (pos === before || pos < readTo) {
      reader.onEnd();
      break;
    }
    // The last line started inside the range and goes on past its end: read on until it ends.
    readTo = pos + step;
    step *= 2;
  }
}

class RangeLineReader {
  done = false;
  private skipping: boolean;
  private carry: Uint8Array[] = [];
  private carryBytes = 0;
  private oversize = false;
  private lineStart: number;

  constructor(
    private readonly range: InputRange,
    private readonly options: SplitReaderOptions,
    private readonly sink: LineSink,
  ) {
    this.skipping = range.start > 0;
    this.lineStart = range.start;
  }

  onChunk(chunk: Uint8Array, chunkStart: number): void {
    let from = 0;
    if (this.skipping) {
      const nl = chunk.indexOf(NEWLINE);
      if (nl < 0) {
        // A line that runs past the end of the range started before it: none of ours remain.
        if (chunkStart + chunk.length >= this.range.end) this.done = true;
        return;
      }
      this.skipping = false;
      from = nl + 1;
      this.lineStart = chunkStart + from;
    }
    if (this.carryBytes === 0 && !this.oversize && this.lineStart >= this.range.end) {
      this.done = true;
      return;
    }
    // Lines starting at index < limit are ours; the newline ending the line that holds byte
    // limit-1 is the last one to process.
    const limit = this.range.end - chunkStart;
    const stop = limit - 1 < chunk.length ? chunk.indexOf(NEWLINE, Math.max(from, limit - 1)) : -1;
    const last = stop >= 0 ? stop : chunk.lastIndexOf(NEWLINE);
    if (last < from) {
      this.hold(chunk.subarray(from));
      return;
    }
    if (this.carryBytes > 0 || this.oversize) {
      const nl = chunk.indexOf(NEWLINE, from);
      this.hold(chunk.subarray(from, nl));
      this.flushCarry();
      from = nl + 1;
      this.lineStart = chunkStart + from;
    }
    if (from <= last) this.emitBlock(chunk, from, last, chunkStart);
    if (stop >= 0) {
      this.done = true;
      return;
    }
    this.lineStart = chunkStart + last + 1;
    this.hold(chunk.subarray(last + 1));
  }

  /** End of the object: a last line with no newline still counts, if it is ours. */
  onEnd(): void {
    if ((this.carryBytes > 0 || this.oversize) && this.lineStart < this.range.end) this.flushCarry();
    this.done = true;
  }

  private hold(bytes: Uint8Array): void {
    if (bytes.length === 0 || this.oversize) return;
    if (this.carryBytes + bytes.length > this.options.maxLineBytes) {
      // Past the bound: stop holding; the line is reported when it ends.
      this.oversize = true;
      this.carryBytes += bytes.length;
      this.carry = [];
      return;
    }
    this.carry.push(bytes);
    this.carryBytes += bytes.length;
  }

  private flushCarry(): void {
    if (this.oversize) {
      this.options.position?.single(this.range.key, this.lineStart);
      this.sink.badLine(
        { key: this.range.key, offset: this.lineStart, length: -1 },
        `line longer than ${this.options.maxLineBytes} bytes`,
      );
    } else {
      const bytes = this.carry.length === 1 ? this.carry[0]! : Buffer.concat(this.carry);
      this.emitLine(bytes, this.lineStart);
    }
    this.carry = [];
    this.carryBytes = 0;
    this.oversize = false;
  }

  /** Lines in chunk[from, last), where chunk[last] is a newline: decoded in one call when valid. */
  private emitBlock(chunk: Uint8Array, from: number, last: number, chunkStart: number): void {
    const region = chunk.subarray(from, last);
    if (region.length <= this.options.maxLineBytes && isUtf8(region)) {
      const lines = Buffer.from(region.buffer, region.byteOffset, region.length).toString('utf8').split('\n');
      const position = this.options.position;
      position?.block(this.range.key, chunkStart + from, lines);
      for (let i = 0; i < lines.length; i++) {
        const line = lines[i]!;
        if (position) position.index = i;
        this.sink.line(line.charCodeAt(line.length - 1) === 13 ? line.slice(0, -1) : line);
      }
      return;
    }
    let start = from;
    while (start <= last) {
      const nl = chunk.indexOf(NEWLINE, start);
      const end = nl < 0 || nl > last ? last : nl;
      const line = chunk.subarray(start, end);
      if (line.length > this.options.maxLineBytes) {
        this.options.position?.single(this.range.key, chunkStart + start);
        this.sink.badLine({ key: this.range.key, offset: chunkStart + start, length: line.length }, `line longer than ${this.options.maxLineBytes} bytes`);
      } else {
        this.emitLine(line, chunkStart + start);
      }
      start = end + 1;
    }
  }

  private emitLine(bytes: Uint8Array, offset: number): void {
    this.options.position?.single(this.range.key, offset);
    if (!isUtf8(bytes)) {
      this.sink.badLine({ key: this.range.key, offset, length: bytes.length }, 'not valid UTF-8', bytes);
      return;
    }
    let text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8');
    if (text.charCodeAt(text.length - 1) === 13) text = text.slice(0, -1);
    this.sink.line(text);
  }
}
