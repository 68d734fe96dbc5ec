/**
 * Sealing scales: an interval of thousands of small uploads seals and commits under a low limit
 * of open files, and its lineage record stays the same small size whatever the number of uploads
 * (the upload list and split ranges are stored beside it).
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { mkdir, writeFile } from 'node:fs/promises';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { readLineageRecord, readLineageUploads } from '../../core/streaming/lineage.ts';
import { intervalScope, keys } from '../../core/layout.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../../core/util/map-concurrently.ts';
import { spillSplits } from '../../core/streaming/splits.ts';
import { loadSplit } from '../../core/exec/split-reader.ts';
import { bag, readOutput, removeDir, runCli, tempDir } from '../support/stream-harness.ts';

/** `count` one-line files `w<i mod 10> x` staged as the uploads of interval 0. */
async function stageSmall(dir: string, count: number): Promise<string> {
  await mkdir(path.join(dir, '0'), { recursive: true });
  const indexes = Array.from({ length: count }, (_, i) => i);
  await mapConcurrently(indexes, STORE_CONCURRENCY, (i) => writeFile(path.join(dir, '0', `u-${String(i).padStart(5, '0')}.txt`), `w${i % 10} x\n`));
  return dir;
}

/** `dstream replay` of wordcount under a limit of 256 open files; resolves with the interval line. */
async function replayLimited(staged: string, root: string): Promise<string> {
  const args = ['replay', path.resolve('examples/wordcount.ts'), '--staged', staged, '--root', root, '--workers', '2', '--partitions', '4'];
  const result = await runCli(args, {}, { openFiles: 256 });
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return result.stdout.split('\n').find((l) => l.startsWith('interval 0:'))!;
}

describe('split objects beside the record', () => {
  it('are named by their content, read back as written, and refused once changed', async () => {
    const base = await tempDir();
    try {
      const store = new FsObjectStore(base);
      const scope = intervalScope(3);
      const splits = [{ ranges: [{ key: 'incoming/a', start: 0, end: 10 }] }, { ranges: [{ key: 'incoming/a', start: 10, end: 12 }, { key: 'incoming/b', start: 0, end: 5 }] }];

      const refs = await spillSplits(store, scope, splits);
      const again = await spillSplits(store, scope, splits);

      expect(again).toEqual(refs);
      expect(refs.map((r) => [r.ranges, r.bytes])).toEqual([[1, 10], [2, 7]]);
      expect(await loadSplit(store, scope, refs[1]!)).toEqual(splits[1]);
      await store.put(keys.lineageSplit(scope, refs[1]!.hash), JSON.stringify({ ranges: [] }));
      await expect(loadSplit(store, scope, refs[1]!)).rejects.toThrow(/does not match its hash/);
      await store.delete(keys.lineageSplit(scope, refs[0]!.hash));
      await expect(loadSplit(store, scope, refs[0]!)).rejects.toThrow(/is missing/);
    } finally {
      await removeDir(base);
    }
  });
});

describe('sealing many small uploads', () => {
  it('seals and commits 5,000 uploads of one interval under 256 open files, with a record no larger than for 50', async () => {
    const base = await tempDir();
    try {
      const many = 5_000;
      const manyRoot = path.join(base, 'root-many');
      const fewRoot = path.join(base, 'root-few');
      const manyLine = await replayLimited(await stageSmall(path.join(base, 'staged-many'), many), manyRoot);
      await replayLimited(await stageSmall(path.join(base, 'staged-few'), 50), fewRoot);

      expect(manyLine).toMatch(/^interval 0: 5000 uploads \(/);
      const expected = [['x', many], ...Array.from({ length: 10 }, (_, w) => [`w${w}`, many / 10])];
      expect(bag(await readOutput(manyRoot, 'counts', 0))).toEqual(bag(expected));

      const manyStore = new FsObjectStore(manyRoot);
      const record = (await readLineageRecord(manyStore, 0))!;
      expect(record.uploads).toMatchObject({ count: many, bytes: many * 5 });
      expect((await readLineageUploads(manyStore, record)).map((u) => u.name)).toHaveLength(many);
      const recordBytes = async (root: string) => (await new FsObjectStore(root).head(keys.lineageRecord(intervalScope(0))))!.size;
      const [manyBytes, fewBytes] = [await recordBytes(manyRoot), await recordBytes(fewRoot)];
      // Only digits differ (the totals, and each split's count of ranges and bytes): the splits are
      // as many, each named by a hash of fixed length.
      expect(manyBytes - fewBytes).toBeLessThan(64);
      expect(manyBytes).toBeLessThan(8 * 1024);
    } finally {
      await removeDir(base);
    }
  }, 300_000);
});
