import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidKeyError, listAll, ObjectNotFoundError, readRange, VersionsUnsupportedError } from '../../core/ports/object-store.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';

export interface ObjectStoreContractOptions {
  /** False for stores (some S3 emulators) that ignore If-None-Match: putIfAbsent is then not exclusive. */
  conditionalWrites?: boolean;
  /**
   * Whether the store keeps versions (what pins an upload on S3): 'kept' reads by version id,
   * 'refused' refuses the option. Undefined skips these tests (an S3 bucket may or may not be versioned).
   */
  versions?: 'kept' | 'refused';
}

const MiB = 1024 * 1024;

/**
 * What every ObjectStore must do, so that a pipeline behaves the same on a directory and on S3.
 * Each test writes under its own random prefix, so the suite can run against a shared bucket.
 */
export function objectStoreContract(
  name: string,
  makeStore: () => Promise<{ store: ObjectStore; cleanup?: () => Promise<void> }>,
  options: ObjectStoreContractOptions = {},
): void {
  const conditionalWrites = options.conditionalWrites ?? true;

  describe(`ObjectStore contract: ${name}`, () => {
    let store: ObjectStore;
    let cleanup: (() => Promise<void>) | undefined;
    const run = `contract-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
    let tests = 0;
    /** A fresh prefix for one test. */
    const fresh = () => `${run}/t${++tests}`;

    beforeAll(async () => {
      ({ store, cleanup } = await makeStore());
    });

    afterAll(async () => {
      if (store) await inBatches(await listAll(store, `${run}/`), (info) => store.delete(info.key));
      await cleanup?.();
    });

    describe('get and put', () => {
      it('reads back what was put; a string body is stored as its UTF-8 bytes', async () => {
        const key = `${fresh()}/greeting.txt`;
        await store.put(key, 'héllo, wörld ✓ 🎉\n');
        expectBytes(await store.get(key), Buffer.from('héllo, wörld ✓ 🎉\n', 'utf8'));
      });

      it('keeps every byte value exactly, including bytes that are not UTF-8', async () => {
        const key = `${fresh()}/all-bytes.bin`;
        const bytes = new Uint8Array(512).map((_, i) => (i * 7 + 3) % 256);
        bytes.set([0xff, 0xfe, 0xc3, 0x28, 0x00, 0x80], 100);
        await store.put(key, bytes);
        expectBytes(await store.get(key), bytes);
      });

      it('an overwrite replaces the whole object: a shorter body leaves no tail of the longer one', async () => {
        const key = `${fresh()}/overwritten`;
        await store.put(key, 'a much longer first version');
        await store.put(key, 'short');
        expectBytes(await store.get(key), Buffer.from('short'));
        expect((await store.head(key))?.size).toBe(5);
      });

      it('stores an empty object', async () => {
        const key = `${fresh()}/empty`;
        await store.put(key, new Uint8Array(0));
        expectBytes(await store.get(key), new Uint8Array(0));
        expect((await store.head(key))?.size).toBe(0);
      });

      it('a reader racing overwrites sees one whole version or the other, never a mix', async () => {
        const key = `${fresh()}/atomic`;
        const versions = [Buffer.alloc(256 * 1024, 'a'), Buffer.alloc(256 * 1024, 'b')];
        await store.put(key, versions[0]!);
        const writes = (async () => {
          for (let i = 1; i <= 10; i++) await store.put(key, versions[i % 2]!);
        })();
        const reads = (async () => {
          for (let i = 0; i < 10; i++) {
            const got = Buffer.from((await store.get(key))!);
            expect(got.equals(versions[0]!) || got.equals(versions[1]!)).toBe(true);
          }
        })();
        await Promise.all([writes, reads]);
      });
    });

    if (options.versions === 'kept') {
      describe('versions', () => {
        it('a read by version answers that version after the key is overwritten and deleted', async () => {
          const key = `${fresh()}/pinned`;
          await store.put(key, 'first version\n');
          const first = (await store.head(key))!.version!;
          expect(first).toEqual(expect.any(String));
          await store.put(key, 'second, longer version\n');
          await store.delete(key);
          expectBytes(await readRange(store, key, 0, undefined, { version: first }), Buffer.from('first version\n'));
          expect((await store.head(key, { version: first }))?.size).toBe(14);
          expect(await store.get(key)).toBeUndefined();
        });

        it('a version that never existed is missing', async () => {
          const key = `${fresh()}/unversioned`;
          await store.put(key, 'x');
          expect(await store.head(key, { version: 'no-such-version' })).toBeUndefined();
          await expect(readRange(store, key, 0, undefined, { version: 'no-such-version' })).rejects.toBeInstanceOf(ObjectNotFoundError);
        });
      });
    }
    if (options.versions === 'refused') {
      it('refuses a read by version, which it cannot honour, rather than answering the current bytes', async () => {
        const key = `${fresh()}/current`;
        await store.put(key, 'x');
        await expect(store.head(key, { version: 'v1' })).rejects.toBeInstanceOf(VersionsUnsupportedError);
        await expect(readRange(store, key, 0, undefined, { version: 'v1' })).rejects.toBeInstanceOf(VersionsUnsupportedError);
      });
    }

    describe('missing objects', () => {
      it('get and head answer undefined, getRange throws ObjectNotFoundError, delete succeeds', async () => {
        const key = `${fresh()}/never-written`;
        expect(await store.get(key)).toBeUndefined();
        expect(await store.head(key)).toBeUndefined();
        await expect(readRange(store, key, 0, 10)).rejects.toBeInstanceOf(ObjectNotFoundError);
        await expect(readRange(store, key, 0)).rejects.toThrow(key);
        await expect(store.delete(key)).resolves.toBeUndefined();
      });

      it('a prefix of existing keys is not itself an object', async () => {
        const prefix = fresh();
        await store.put(`${prefix}/dir/file`, 'x');
        expect(await store.get(`${prefix}/dir`)).toBeUndefined();
        expect(await store.head(`${prefix}/dir`)).toBeUndefined();
        await expect(readRange(store, `${prefix}/dir`, 0)).rejects.toBeInstanceOf(ObjectNotFoundError);
      });
    });

    describe('ranged reads', () => {
      const body = Buffer.from(Array.from({ length: 1000 }, (_, i) => i % 251));
      let key: string;
      beforeAll(async () => {
        key = `${fresh()}/ranged.bin`;
        await store.put(key, body);
      });

      it.each([
        ['the start', 0, 10],
        ['the middle', 100, 300],
        ['the very end', 990, 1000],
        ['a single byte', 500, 501],
      ])('reads exactly bytes [start, end) at %s', async (_where, start, end) => {
        expectBytes(await readRange(store, key, start, end), body.subarray(start, end));
      });

      it('without an end reads to the end of the object', async () => {
        expectBytes(await readRange(store, key, 900), body.subarray(900));
      });

      it('clips an end past the object to its size', async () => {
        expectBytes(await readRange(store, key, 990, 5000), body.subarray(990));
      });

      it('an empty range, or one starting at or past the end, yields no bytes', async () => {
        expect((await readRange(store, key, 5, 5)).length).toBe(0);
        expect((await readRange(store, key, 1000, 2000)).length).toBe(0);
        expect((await readRange(store, key, 1000)).length).toBe(0);
        expect((await readRange(store, key, 1500, 2000)).length).toBe(0);
      });

      it('a negative start, or an end before the start, is a RangeError', async () => {
        await expect(readRange(store, key, -1, 10)).rejects.toBeInstanceOf(RangeError);
        await expect(readRange(store, key, 10, 5)).rejects.toBeInstanceOf(RangeError);
      });

      it('streams a multi-MiB object in several chunks that add up to it exactly', async () => {
        const bigKey = `${fresh()}/big.bin`;
        const big = randomBytes(5 * MiB + 123);
        await store.put(bigKey, big);
        const chunks: Uint8Array[] = [];
        for await (const chunk of store.getRange(bigKey, 0)) chunks.push(chunk);
        expect(chunks.length).toBeGreaterThan(1);
        expectBytes(Buffer.concat(chunks), big);
        expectBytes(await readRange(store, bigKey, MiB - 10, 3 * MiB + 10), big.subarray(MiB - 10, 3 * MiB + 10));
      });

      it('a read abandoned after its first chunk releases what it held: 64 of them leave the store usable', async () => {
        // More abandoned reads than an HTTP client's default socket pool (50) or a small fd limit allows leaking.
        const bigKey = `${fresh()}/abandoned.bin`;
        const big = randomBytes(3 * MiB);
        await store.put(bigKey, big);
        for (let i = 0; i < 64; i++) {
          for await (const chunk of store.getRange(bigKey, 0)) {
            expect(chunk.length).toBeGreaterThan(0);
            break;
          }
        }
        expectBytes(await readRange(store, bigKey, 0, 100), big.subarray(0, 100));
      });
    });

    describe('head', () => {
      it('gives the key, the size and a last-modified time close to when it was written', async () => {
        const key = `${fresh()}/headed`;
        const before = Date.now();
        await store.put(key, 'twelve bytes');
        const after = Date.now();
        const info = await store.head(key);
        expect(info).toMatchObject({ key, size: 12 });
        // S3 keeps whole seconds, and its clock is not ours.
        expect(info!.lastModified).toBeGreaterThanOrEqual(before - 5000);
        expect(info!.lastModified).toBeLessThanOrEqual(after + 5000);
      });
    });

    describe('putIfAbsent', () => {
      if (!conditionalWrites) {
        console.warn(
          `\n!!! ObjectStore contract "${name}": putIfAbsent tests SKIPPED because this store does not enforce ` +
            'conditional writes (If-None-Match is ignored). putIfAbsent is NOT verified to be exclusive here; ' +
            'anything that relies on it (commit markers, leases) is unsafe on this store.\n',
        );
      }

      it.skipIf(!conditionalWrites)('creates an absent object and answers true; then answers false and keeps the first bytes', async () => {
        const key = `${fresh()}/once`;
        expect(await store.putIfAbsent(key, 'first')).toBe(true);
        expect(await store.putIfAbsent(key, 'second')).toBe(false);
        expectBytes(await store.get(key), Buffer.from('first'));
      });

      it.skipIf(!conditionalWrites)('does not replace an object written by put', async () => {
        const key = `${fresh()}/put-first`;
        await store.put(key, 'from put');
        expect(await store.putIfAbsent(key, 'from putIfAbsent')).toBe(false);
        expectBytes(await store.get(key), Buffer.from('from put'));
      });

      it.skipIf(!conditionalWrites)('creates again once the object is deleted', async () => {
        const key = `${fresh()}/recreated`;
        expect(await store.putIfAbsent(key, 'one')).toBe(true);
        await store.delete(key);
        expect(await store.putIfAbsent(key, 'two')).toBe(true);
        expectBytes(await store.get(key), Buffer.from('two'));
      });

      it.skipIf(!conditionalWrites)('of 32 concurrent racers exactly one wins, and the winner’s bytes are what persists', async () => {
        for (let round = 0; round < 10; round++) {
          const key = `${fresh()}/raced-${round}`;
          // Small bodies of one size, so that the racers reach the store together.
          const bodies = Array.from({ length: 32 }, (_, i) => `racer ${String(i).padStart(2, '0')}`);
          const wins = await Promise.all(bodies.map((body) => store.putIfAbsent(key, body)));
          expect(wins.filter(Boolean)).toHaveLength(1);
          expectBytes(await store.get(key), Buffer.from(bodies[wins.indexOf(true)]!));
        }
      });
    });

    describe('list', () => {
      // Names chosen where naive orders disagree with S3's (UTF-8 bytes): '-' and '.' sort before
      // '/', '0' after it; U+FF5E sorts before U+1F600 in UTF-8 but after it in UTF-16.
      const names = ['x/1', 'x/2', 'x-y', 'x.z', 'x0', 'xa/b/c', 'y', 'é', '\uFF5E', '\u{1F600}', 'z/deep/er/still'];
      let prefix: string;
      beforeAll(async () => {
        prefix = fresh();
        await Promise.all(names.map((n) => store.put(`${prefix}/${n}`, n)));
      });
      const keysUnder = async (p: string) => (await listAll(store, p)).map((info) => info.key);

      it('lists every object under a prefix, recursively, in UTF-8 byte order of key', async () => {
        const expected = byteOrder(names.map((n) => `${prefix}/${n}`));
        expect(await keysUnder(`${prefix}/`)).toEqual(expected);
        expect(await keysUnder(prefix)).toEqual(expected);
      });

      it('matches a prefix that ends mid-segment as a plain string prefix', async () => {
        expect(await keysUnder(`${prefix}/x`)).toEqual(byteOrder(['x-y', 'x.z', 'x/1', 'x/2', 'x0', 'xa/b/c'].map((n) => `${prefix}/${n}`)));
        expect(await keysUnder(`${prefix}/x/`)).toEqual([`${prefix}/x/1`, `${prefix}/x/2`]);
        expect(await keysUnder(`${prefix}/z/de`)).toEqual([`${prefix}/z/deep/er/still`]);
      });

      it('a prefix equal to a whole key lists that object', async () => {
        expect(await keysUnder(`${prefix}/y`)).toEqual([`${prefix}/y`]);
      });

      it('gives each object its size and last-modified time', async () => {
        const infos = await listAll(store, `${prefix}/`);
        for (const info of infos) {
          const n = info.key.slice(prefix.length + 1);
          expect(info.size).toBe(Buffer.byteLength(n));
          expect(info.lastModified).toBeGreaterThan(Date.parse('2020-01-01'));
        }
      });

      it('lists nothing under a prefix no key has', async () => {
        expect(await keysUnder(`${prefix}/nothing`)).toEqual([]);
        expect(await keysUnder(`${prefix}/nothing/`)).toEqual([]);
        expect(await keysUnder(`${fresh()}/`)).toEqual([]);
      });

      it('lists more than 1000 objects (past one page of S3 results), each once, in order', async () => {
        const many = fresh();
        const keys = Array.from({ length: 1005 }, (_, i) => `${many}/k/${String(i).padStart(5, '0')}`);
        await inBatches(keys, (key) => store.put(key, 'v'));
        expect(await keysUnder(`${many}/`)).toEqual(keys);
      });
    });

    describe('delete', () => {
      it('removes the object and nothing else: not its siblings, nor keys it is a prefix of', async () => {
        const prefix = fresh();
        await Promise.all(['a', 'ab', 'c/d', 'c/e'].map((n) => store.put(`${prefix}/${n}`, n)));
        await store.delete(`${prefix}/a`);
        await store.delete(`${prefix}/c/d`);
        expect(await store.get(`${prefix}/a`)).toBeUndefined();
        expect(await store.head(`${prefix}/c/d`)).toBeUndefined();
        expect((await listAll(store, `${prefix}/`)).map((info) => info.key)).toEqual([`${prefix}/ab`, `${prefix}/c/e`]);
      });

      it('a deleted key can be written again', async () => {
        const key = `${fresh()}/deep/down/key`;
        await store.put(key, 'one');
        await store.delete(key);
        await store.put(key, 'two');
        expectBytes(await store.get(key), Buffer.from('two'));
      });
    });

    describe('invalid keys', () => {
      const invalid = ['', '../x', 'a/../../x', '/abs', 'a//b', 'a/', './a', 'a/./b', 'a\\b', 'nul\u0000byte', 'k'.repeat(1025)];
      const calls: [string, (store: ObjectStore, key: string) => Promise<unknown>][] = [
        ['get', (s, key) => s.get(key)],
        ['head', (s, key) => s.head(key)],
        ['put', (s, key) => s.put(key, 'x')],
        ['putIfAbsent', (s, key) => s.putIfAbsent(key, 'x')],
        ['delete', (s, key) => s.delete(key)],
        ['getRange', (s, key) => readRange(s, key, 0)],
      ];
      it.each(calls)('%s rejects each with InvalidKeyError', async (_call, call) => {
        for (const key of invalid) {
          await expect(call(store, key), JSON.stringify(key)).rejects.toBeInstanceOf(InvalidKeyError);
        }
      });
    });
  });
}

/** Compares bytes without printing megabytes when they differ. */
function expectBytes(actual: Uint8Array | undefined, expected: Uint8Array): void {
  expect(actual, 'object bytes').toBeDefined();
  const got = Buffer.from(actual!);
  const want = Buffer.from(expected);
  if (want.length <= 1024) {
    expect(got).toEqual(want);
    return;
  }
  expect(got.length).toBe(want.length);
  expect(sha256(got)).toBe(sha256(want));
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function byteOrder(keys: string[]): string[] {
  return [...keys].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
}

async function inBatches<T>(items: T[], work: (item: T) => Promise<unknown>, width = 32): Promise<void> {
  for (let i = 0; i < items.length; i += width) await Promise.all(items.slice(i, i + width).map(work));
}
