/** Input splits: an object cut at arbitrary bytes is read line by line, every line exactly once. */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { LinePosition, readRangeLines } from '../../core/exec/split-reader.ts';
import { planSplits } from '../../core/streaming/splits.ts';
import { readSplitLines } from '../../core/exec/split-reader.ts';
import { removeDir, tempDir } from '../support/stream-harness.ts';

async function readAll(store: FsObjectStore, key: string, cuts: number[], size: number, maxLineBytes = 1 << 20) {
  const bounds = [0, ...cuts, size];
  const lines: string[] = [];
  const bad: string[] = [];
  for (let i = 0; i + 1 < bounds.length; i++) {
    await readRangeLines(store, { key, start: bounds[i]!, end: bounds[i + 1]! }, { maxLineBytes }, {
      line: (l) => lines.push(l),
      badLine: (where, reason) => bad.push(`${where.offset}:${reason}`),
    });
  }
  return { lines, bad };
}

/** What a reader of the whole text sees: lines split on \n, \r\n trimmed, no phantom last line. */
function expectedLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
}

describe('split reader', () => {
  it('reads every line exactly once, wherever the object is cut', async () => {
    const dir = await tempDir();
    const store = new FsObjectStore(dir);
    try {
      let n = 0;
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.oneof(fc.string({ maxLength: 30 }), fc.constant(''), fc.string({ unit: 'grapheme', maxLength: 8 })), { maxLength: 40 }),
          fc.boolean(),
          fc.boolean(),
          fc.array(fc.nat(), { maxLength: 8 }),
          async (lines, trailingNewline, crlf, rawCuts) => {
            const clean = lines.map((l) => l.replace(/[\r\n]/g, ''));
            const text = clean.join(crlf ? '\r\n' : '\n') + (trailingNewline && clean.length ? '\n' : '');
            const bytes = Buffer.from(text);
            const key = `t/${n++}.txt`;
            await store.put(key, bytes);
            const cuts = [...new Set(rawCuts.map((c) => (bytes.length ? c % bytes.length : 0)).filter((c) => c > 0))].sort((a, b) => a - b);
            const { lines: got } = await readAll(store, key, cuts, bytes.length);
            expect(got).toEqual(expectedLines(text));
          },
        ),
        { numRuns: 300 },
      );
    } finally {
      await removeDir(dir);
    }
  });

  it('reads a line that spans many chunks and many splits once, from the split it starts in', async () => {
    const dir = await tempDir();
    const store = new FsObjectStore(dir);
    try {
      const long = 'x'.repeat(3 * 1024 * 1024);
      await store.put('big.txt', `a\n${long}\nb\n`);
      const size = 2 + long.length + 3;
      const { lines } = await readAll(store, 'big.txt', [1, 5, 1024 * 1024, 2 * 1024 * 1024 + 7], size, 4 * 1024 * 1024);
      expect(lines).toEqual(['a', long, 'b']);
    } finally {
      await removeDir(dir);
    }
  });

  it('reports a line that is not UTF-8 with its object and byte offset, and reads the rest', async () => {
    const dir = await tempDir();
    const store = new FsObjectStore(dir);
    try {
      await store.put('mixed.txt', Buffer.concat([Buffer.from('good\n'), Buffer.from([0x66, 0xff, 0xfe, 0x0a]), Buffer.from('also good\n')]));
      const { lines, bad } = await readAll(store, 'mixed.txt', [], 19);
      expect(lines).toEqual(['good', 'also good']);
      expect(bad).toEqual(['5:not valid UTF-8']);
    } finally {
      await removeDir(dir);
    }
  });

  it('reports a line longer than the bound without holding it, and reads the lines around it', async () => {
    const dir = await tempDir();
    const store = new FsObjectStore(dir);
    try {
      const text = `short\n${'y'.repeat(5000)}\nafter\n`;
      await store.put('long.txt', text);
      const { lines, bad } = await readAll(store, 'long.txt', [3000], text.length, 1000);
      expect(lines).toEqual(['short', 'after']);
      expect(bad).toEqual(['6:line longer than 1000 bytes']);
    } finally {
      await removeDir(dir);
    }
  });

  it('plans splits that cover every byte of every upload once, within the size bound', () => {
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 5000 }), { maxLength: 12 }), fc.integer({ min: 1, max: 9 }), fc.integer({ min: 1, max: 4000 }), (sizes, partitions, maxSplit) => {
        const uploads = sizes.map((size, i) => ({ key: `incoming/f${String(i).padStart(3, '0')}`, name: `f${i}`, size }));
        const splits = planSplits(uploads, partitions, maxSplit);
        const covered = new Map<string, number>();
        for (const split of splits) {
          const bytes = split.ranges.reduce((n, r) => n + r.end - r.start, 0);
          expect(bytes).toBeGreaterThan(0);
          expect(bytes).toBeLessThanOrEqual(maxSplit);
          for (const r of split.ranges) {
            expect(r.start).toBe(covered.get(r.key) ?? 0);
            covered.set(r.key, r.end);
          }
        }
        for (const u of uploads) expect(covered.get(u.key) ?? 0).toBe(u.size);
      }),
    );
  });

  it('reads a split of several uploads in key order', async () => {
    const dir = await tempDir();
    const store = new FsObjectStore(dir);
    try {
      await store.put('incoming/a', 'one\ntwo');
      await store.put('incoming/b', 'three\n');
      const lines: string[] = [];
      const [split] = planSplits([{ key: 'incoming/b', name: 'b', size: 6 }, { key: 'incoming/a', name: 'a', size: 7 }], 1, 1000);
      await readSplitLines(store, split!, { maxLineBytes: 100 }, { line: (l) => lines.push(l), badLine: () => {} });
      expect(lines).toEqual(['one', 'two', 'three']);
    } finally {
      await removeDir(dir);
    }
  });

  it('tells, as each line is handed on, the byte offset where it starts, wherever the object is cut', async () => {
    const dir = await tempDir();
    const store = new FsObjectStore(dir);
    try {
      await fc.assert(
        fc.asyncProperty(
          // Multi-byte characters, CRLF endings, and lines over the bound (read one at a time) among the rest.
          fc.array(fc.oneof(fc.string({ unit: 'grapheme', maxLength: 8 }), fc.string({ maxLength: 30 }).map((l) => `${l}\r`), fc.constant('x'.repeat(40))), { maxLength: 30 }),
          fc.array(fc.nat(), { maxLength: 4 }),
          async (lines, rawCuts) => {
            const text = lines.map((l) => `${l}\n`).join('');
            const bytes = Buffer.from(text);
            const starts: number[] = [];
            for (let at = 0; at < bytes.length; at = bytes.indexOf(10, at) + 1) starts.push(at);
            await store.put('incoming/t', bytes);
            const cuts = [...new Set(rawCuts.map((c) => (bytes.length === 0 ? 0 : c % bytes.length)))].filter((c) => c > 0).sort((a, b) => a - b);
            const bounds = [0, ...cuts, bytes.length];
            const position = new LinePosition();
            const seen: [string | undefined, number][] = [];
            for (let i = 0; i + 1 < bounds.length; i++) {
              await readRangeLines(store, { key: 'incoming/t', start: bounds[i]!, end: bounds[i + 1]! }, { maxLineBytes: 32, position }, {
                line: () => seen.push([position.key, position.offset]),
                badLine: () => seen.push([position.key, position.offset]),
              });
            }
            expect(seen).toEqual(starts.map((at) => ['incoming/t', at]));
          },
        ),
        { numRuns: 200 },
      );
    } finally {
      await removeDir(dir);
    }
  });
});
