/**
 * The driver may die at any step of an interval, and two may race on one: a new driver resumes
 * from the durable record and the result is the same, committed once. Uploads racing the seal
 * land in exactly one interval.
 */
import { describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { StreamingDriver, type DriverStep } from '../../core/streaming/driver.ts';
import { admitUpload, sealInterval, type IntakeUpload } from '../../core/streaming/intake.ts';
import { listAll, type ObjectStore } from '../../core/ports/object-store.ts';
import { systemClock } from '../../core/ports/clock.ts';
import wordcount from '../../examples/wordcount.ts';
import { outputFiles, removeDir, tempDir, testDriverConfig, wordcountRoot } from '../support/stream-harness.ts';

const config = testDriverConfig({ inputPartitions: 3 });

const setup = (intervals: number) => wordcountRoot(intervals, config);

async function cleanOutputs(intervals: number) {
  const env = await setup(intervals);
  try {
    for (let k = 0; k < intervals; k++) await env.driver().runInterval(k);
    return await outputFiles(env.root);
  } finally {
    await env.close();
    await removeDir(env.root);
  }
}

class Died extends Error {}

/** The store as seen by a driver that dies as it is about to write a key `deadly` matches: what it wrote before, or at once beside it, stays. */
function dyingBefore(store: ObjectStore, deadly: RegExp): ObjectStore {
  return new Proxy(store, {
    get(target, name: keyof ObjectStore) {
      if (name === 'put' || name === 'putIfAbsent') {
        return async (key: string, body: Uint8Array | string) => {
          if (deadly.test(key)) throw new Died(key);
          return target[name](key, body);
        };
      }
      const value = target[name];
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

describe('a restartable driver', () => {
  const steps: DriverStep[] = ['seal', 'sealed', 'lineage-written', 'mid-stage', 'stages-done', 'outputs-committed', 'sinks-done', 'committed'];

  it.each(steps)('killed at step %s, a new driver finishes the interval with the same output', async (deadly) => {
    const expected = await cleanOutputs(3);
    const env = await setup(3);
    try {
      for (let k = 0; k < 3; k++) {
        let died = false;
        // The first driver of interval 1 dies at the step; the second carries on.
        const doomed = env.driver({
          step: (step: DriverStep, interval: number) => {
            if (interval === 1 && step === deadly) {
              died = true;
              throw new Died(step);
            }
          },
        });
        try {
          await doomed.runInterval(k);
        } catch (error) {
          if (!(error instanceof Died)) throw error;
          await env.driver().runInterval(k);
        }
        expect(died).toBe(k === 1);
      }
      expect([...(await outputFiles(env.root)).entries()]).toEqual([...expected.entries()]);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  });

  // The interval's writes, in the order they are made: several go at once (the claims; the final
  // upload list beside the lineage's upload list and splits; run.json beside the seal), and a
  // driver may die with any subset of them written.
  const writes = [
    'intake/claims/',
    'intake/interval=000001/_SEALED',
    'lineage/interval=000001/uploads/',
    'lineage/interval=000001/splits/',
    'lineage/interval=000001/run.json',
    'lineage/interval=000001/record.json',
    'output/counts/interval=000001/_SUCCESS',
    'lineage/interval=000001/_COMMITTED',
    'driver/progress.json',
  ];

  it.each(writes)('killed as it writes %s, a new driver finishes the interval with the same output', async (deadly) => {
    const expected = await cleanOutputs(3);
    const env = await setup(3);
    try {
      const doomed = new StreamingDriver(wordcount, { store: dyingBefore(env.store, new RegExp(`^${deadly}`)), queue: env.queue, clock: systemClock }, config);
      await env.driver().runInterval(0);
      await expect(doomed.runInterval(1)).rejects.toBeInstanceOf(Died);
      await env.driver().runInterval(1);
      await env.driver().runInterval(2);
      expect([...(await outputFiles(env.root)).entries()]).toEqual([...expected.entries()]);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  });

  it('two drivers racing on the same intervals commit one result', async () => {
    const expected = await cleanOutputs(3);
    const env = await setup(3);
    try {
      for (let k = 0; k < 3; k++) {
        const [a, b] = await Promise.all([env.driver().runInterval(k), env.driver().runInterval(k)]);
        expect(a.outputs).toEqual(b.outputs);
      }
      expect([...(await outputFiles(env.root)).entries()]).toEqual([...expected.entries()]);
      const successes = (await listAll(env.store, 'output/')).filter((o) => o.key.endsWith('_SUCCESS'));
      expect(successes).toHaveLength(6);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  });
});

describe('interval boundaries', () => {
  it('an upload that races the seal lands in exactly one interval', async () => {
    const root = await tempDir();
    const store = new FsObjectStore(root);
    try {
      const uploads: IntakeUpload[] = Array.from({ length: 60 }, (_, i) => ({ key: `incoming/u${i}`, name: `u${i}`, size: 1 }));
      const admitted: Promise<number>[] = [];
      const sealed: IntakeUpload[][] = [];
      // Uploads arrive for interval 0 while intervals 0, 1, 2 are sealed one after another,
      // with a second, racing seal of each interval.
      let next = 0;
      const arrive = async () => {
        while (next < uploads.length) {
          const u = uploads[next++]!;
          admitted.push(admitUpload(store, u, 0));
          await new Promise((r) => setTimeout(r, Math.random() * 3));
        }
      };
      const seal = async () => {
        for (let k = 0; k < 3; k++) {
          await new Promise((r) => setTimeout(r, 20));
          const [a, b] = await Promise.all([sealInterval(store, k), sealInterval(store, k)]);
          expect(a).toEqual(b);
          sealed.push(a);
        }
      };
      await Promise.all([arrive(), seal()]);
      await Promise.all(admitted);
      // Anything admitted after the last seal is in interval 3.
      sealed.push(await sealInterval(store, 3));
      const seen = sealed.flat().map((u) => u.key).sort();
      expect(seen).toEqual(uploads.map((u) => u.key).sort());
    } finally {
      await removeDir(root);
    }
  });

  it('an upload claimed by an interval whose final list left it out is taken by the next interval it was entered in', async () => {
    const root = await tempDir();
    const store = new FsObjectStore(root);
    try {
      const u: IntakeUpload = { key: 'incoming/x', name: 'x', size: 3 };
      // A seal of interval 0 claimed the upload and died; a racing seal of 0, whose listing ran
      // before the upload was entered, wrote the final list without it. Ingest saw 0 sealing, so
      // it entered the upload in 1 too.
      await admitUpload(store, u, 0);
      await sealInterval(store, 0, {
        beside: async () => {
          throw new Died('as it writes the final list');
        },
      }).catch((error: unknown) => expect(error).toBeInstanceOf(Died));
      await store.delete('intake/interval=000000/_SEALED');
      await store.put('intake/interval=000000/_SEALED', '[]');
      await admitUpload(store, u, 1);
      expect(await sealInterval(store, 0)).toEqual([]);
      expect(await sealInterval(store, 1)).toEqual([u]);
      // And a seal resumed after one that died having claimed its uploads takes them; a later
      // interval the upload was entered in too does not.
      const y: IntakeUpload = { key: 'incoming/y', name: 'y', size: 1 };
      await admitUpload(store, y, 2);
      await sealInterval(store, 2, {
        beside: async () => {
          throw new Died('as it writes the final list');
        },
      }).catch((error: unknown) => expect(error).toBeInstanceOf(Died));
      await store.delete('intake/interval=000002/_SEALED');
      expect(await sealInterval(store, 2)).toEqual([y]);
      await admitUpload(store, y, 3);
      expect(await sealInterval(store, 3)).toEqual([]);
    } finally {
      await removeDir(root);
    }
  });

  it('a notification delivered twice admits the upload once', async () => {
    const root = await tempDir();
    const store = new FsObjectStore(root);
    try {
      const u: IntakeUpload = { key: 'incoming/x', name: 'x', size: 3, version: 'etag1' };
      await Promise.all([admitUpload(store, u, 0), admitUpload(store, u, 0)]);
      expect(await sealInterval(store, 0)).toEqual([u]);
      await admitUpload(store, u, 0);
      expect(await sealInterval(store, 1)).toEqual([]);
    } finally {
      await removeDir(root);
    }
  });
});
