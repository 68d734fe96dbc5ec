/**
 * What an interval reads of earlier intervals (state, windows) is listed once per location for the
 * interval, once their stages are done, and the listing is shared: the empty-stage check, the
 * scheduler's look for lost parts and the in-driver bound each asked the store on their own before.
 */
import { describe, expect, it } from 'vitest';
import { StreamingDriver } from '../../core/streaming/driver.ts';
import { StoredListings } from '../../core/streaming/stored-listings.ts';
import { keys } from '../../core/layout.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { systemClock } from '../../core/ports/clock.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import wordcount from '../../examples/wordcount.ts';
import { removeDir, tempDir, testDriverConfig, wordcountRoot } from '../support/stream-harness.ts';

/** The store, noting the prefix of every LIST made through it. */
function listing(store: ObjectStore, listed: string[]): ObjectStore {
  return new Proxy(store, {
    get(target, name: keyof ObjectStore) {
      if (name === 'list') {
        return (prefix: string) => {
          listed.push(prefix);
          return target.list(prefix);
        };
      }
      const value = target[name];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('the listings of what an interval reads of earlier intervals', () => {
  it('are made once per location per interval', async () => {
    const config = testDriverConfig({ inputPartitions: 3 });
    const env = await wordcountRoot(3, config);
    const listed: string[] = [];
    try {
      const driver = new StreamingDriver(wordcount, { store: listing(env.store, listed), queue: env.queue, clock: systemClock }, config);
      for (let k = 0; k < 3; k++) await driver.runInterval(k);
      const persisted = listed.filter((prefix) => prefix.includes('/persist/'));
      // WordCount's state: interval 1 reads interval 0's, interval 2 reads interval 1's.
      expect(new Set(persisted).size).toBe(2);
      expect(persisted).toHaveLength(2);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  });

  it('list nothing before the earlier intervals are ready, and tell sizes only of what they listed', async () => {
    const root = await tempDir();
    const listed: string[] = [];
    const store = listing(new FsObjectStore(root), listed);
    try {
      const location = keys.persistLocation('cache', 'interval=000004', 'd4');
      await store.put(keys.persisted(location, 0), 'abc');
      let ready!: () => void;
      const stored = new StoredListings(store, 'interval=000005', new Promise<void>((resolve) => (ready = resolve)));
      const parts = stored.parts(location);
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(listed).toEqual([]);
      // Written before the earlier intervals' stages are done: the listing, made after, finds it.
      await store.put(keys.persisted(location, 1), 'de');
      ready();
      expect([...(await parts).entries()]).toEqual([
        [keys.persisted(location, 0), 3],
        [keys.persisted(location, 1), 2],
      ]);
      expect(await stored.parts(location)).toBe(await parts);
      expect(listed).toEqual([`${location}/`]);
      expect(await stored.sizeOf(keys.persisted(location, 1))).toBe(2);
      expect(await stored.sizeOf(keys.persisted(location, 2))).toBe(0);
      expect(stored.sizeOf(keys.persisted(keys.persistLocation('cache', 'interval=000003', 'd4'), 0))).toBeUndefined();
      // The interval's own, which it writes as it runs: listed afresh each time, without waiting.
      const waiting = new StoredListings(store, 'interval=000005', new Promise<void>(() => undefined));
      const own = keys.persistLocation('cache', 'interval=000005', 'd4');
      await store.put(keys.persisted(own, 0), 'x');
      expect([...(await waiting.parts(own)).keys()]).toEqual([keys.persisted(own, 0)]);
      await store.put(keys.persisted(own, 1), 'y');
      expect([...(await waiting.parts(own)).keys()]).toEqual([keys.persisted(own, 0), keys.persisted(own, 1)]);
    } finally {
      await removeDir(root);
    }
  });
});
