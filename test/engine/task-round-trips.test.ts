/**
 * A task's requests overlap: its inputs are read ahead while it checks for a completion record and
 * leaves its start marker, and a result task's writes (state, outputs) go at once. None of this may
 * show in what it writes: the bytes are those of requests made one at a time, every output is
 * durable before the completion record, a copy killed in between is rerun to the same bytes, and
 * an input found missing is still reported as a fetch failure, which the driver recomputes.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import wordcount from '../../examples/wordcount.ts';
import { listAll, ObjectNotFoundError, type ObjectStore, type ReadOptions } from '../../core/ports/object-store.ts';
import { keys, partitionOfTaskDone } from '../../core/layout.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { removeDir, replayInProcess, type ReplayResult } from '../support/stream-harness.ts';

/** Four intervals of WordCount: each has a state partition of the interval before to read, and three sinks per reduce task. */
const FILES = [0, 1, 2, 3].map((k) =>
  Object.fromEntries(Array.from({ length: 4 }, (_, f) => [`part-${f}.txt`, Array.from({ length: 8 }, (_, i) => `w${(i * 7 + f + k) % 11} w${i % 3} k${k}`).join('\n') + '\n'])),
);

/** A result (reduce) task's completion record: its stage id starts with "result". */
const RESULT_DONE = /^lineage\/interval=(\d+)\/tasks\/result-[^/]+\/part-\d+\.json$/;

/** The store with one request at a time, in the order made: what a task's requests one after another gave. */
function oneAtATime(store: ObjectStore): ObjectStore {
  let last: Promise<unknown> = Promise.resolve();
  const queued = <T>(request: () => Promise<T>): Promise<T> => {
    const result = last.then(request, request);
    last = result.catch(() => {});
    return result;
  };
  return new Proxy(store, {
    get(target, name, receiver) {
      const member = Reflect.get(target, name, receiver) as unknown;
      if (typeof member !== 'function') return member;
      if (name === 'getRange') {
        return async function* (...args: Parameters<ObjectStore['getRange']>) {
          const chunks = await queued(async () => {
            const got: Uint8Array[] = [];
            for await (const chunk of target.getRange(...args)) got.push(chunk);
            return got;
          });
          yield* chunks;
        };
      }
      if (name === 'list') return member.bind(target);
      return (...args: unknown[]) => queued(() => (member as (...a: unknown[]) => Promise<unknown>).apply(target, args));
    },
  });
}

/**
 * The store with each write and each read of state held back the longer the earlier it was made:
 * a task's outputs finish last first, its state arrives after its shuffle blocks.
 */
function laterFirst(store: ObjectStore): ObjectStore {
  let made = 0;
  const delay = () => new Promise((resolve) => setTimeout(resolve, Math.max(0, 12 - (made++ % 4) * 4)));
  return new Proxy(store, {
    get(target, name, receiver) {
      if (name === 'put') return async (key: string, body: Uint8Array | string) => (await delay(), target.put(key, body));
      if (name === 'get') return async (key: string, options?: ReadOptions) => (key.includes('/persist/') && (await delay()), target.get(key, options));
      return Reflect.get(target, name, receiver);
    },
  });
}

async function cleanUp(...runs: ReplayResult[]): Promise<void> {
  for (const run of runs) await removeDir(path.dirname(run.root));
}

describe("a task's round trips", () => {
  it('overlapping (reads ahead, writes at once, finishing in any order) give the bytes of requests made one at a time', async () => {
    const serial = await replayInProcess(wordcount, FILES, { wrapStore: (store, role) => (role === 'tasks' ? oneAtATime(store) : store) });
    const reordered = await replayInProcess(wordcount, FILES, { wrapStore: (store, role) => (role === 'tasks' ? laterFirst(store) : store) });
    try {
      const expected = await serial.files();
      expect([...expected.keys()].filter((file) => file.includes('totals')).length).toBeGreaterThan(4);
      expect(await reordered.files()).toEqual(expected);
    } finally {
      await cleanUp(serial, reordered);
    }
  });

  it('a reduce task killed between its output writes and its completion record finds them all durable, and is rerun to the same bytes', async () => {
    const durableAtKill: string[][] = [];
    // Writes take a while; killed once, at the completion record of partition 0 of interval 2.
    const killedOnce = (store: ObjectStore): ObjectStore =>
      new Proxy(store, {
        get(target, name, receiver) {
          if (name === 'put') return async (key: string, body: Uint8Array | string) => (await new Promise((resolve) => setTimeout(resolve, 10)), target.put(key, body));
          if (name !== 'putIfAbsent') return Reflect.get(target, name, receiver);
          return async (key: string, body: Uint8Array | string) => {
            const k = RESULT_DONE.exec(key)?.[1];
            if (k === '000002' && partitionOfTaskDone(key) === 0 && durableAtKill.length === 0) {
              const part = /\/part-00000$/;
              const written = [...(await listAll(target, 'output/')), ...(await listAll(target, 'cache/interval=000002/persist/'))];
              durableAtKill.push(written.map((o) => o.key).filter((written) => written.includes('interval=000002') && part.test(written)).sort());
              throw new Error('killed between its outputs and its completion record');
            }
            return target.putIfAbsent(key, body);
          };
        },
      });
    const clean = await replayInProcess(wordcount, FILES);
    const killed = await replayInProcess(wordcount, FILES, { wrapStore: (store, role) => (role === 'tasks' ? killedOnce(store) : store) });
    try {
      // The state and both outputs of the partition were written before its completion record was tried.
      expect(durableAtKill).toEqual([[expect.stringMatching(/^cache\/interval=000002\/persist\/.+\/part-00000$/), 'output/counts/interval=000002/part-00000', 'output/totals/interval=000002/part-00000']]);
      expect(await killed.files()).toEqual(await clean.files());
    } finally {
      await cleanUp(clean, killed);
    }
  });

  it('a task computes and writes while its start marker is still being written; its completion record waits for the marker', async () => {
    const events: string[] = [];
    const STARTED = /\.started$/;
    // Start markers take a long while; every other request is as fast as the disk.
    const slowMarkers = (store: ObjectStore): ObjectStore =>
      new Proxy(store, {
        get(target, name, receiver) {
          if (name === 'put') return async (key: string, body: Uint8Array | string) => (events.push(`put ${key}`), target.put(key, body));
          if (name !== 'putIfAbsent') return Reflect.get(target, name, receiver);
          return async (key: string, body: Uint8Array | string) => {
            if (!STARTED.test(key)) return events.push(`record ${key}`), target.putIfAbsent(key, body);
            await new Promise((resolve) => setTimeout(resolve, 60));
            const created = await target.putIfAbsent(key, body);
            events.push(`marked ${key}`);
            return created;
          };
        },
      });
    const clean = await replayInProcess(wordcount, FILES);
    const slow = await replayInProcess(wordcount, FILES, { wrapStore: (store, role) => (role === 'tasks' ? slowMarkers(store) : store) });
    try {
      const marked = events.findIndex((e) => e.startsWith('marked lineage/interval=000002/tasks/result-') && e.includes('/part-00000.'));
      const output = events.indexOf('put output/counts/interval=000002/part-00000');
      const done = events.findIndex((e) => RESULT_DONE.test(e.slice('record '.length)) && e.includes('interval=000002') && e.endsWith('/part-00000.json'));
      expect(marked).toBeGreaterThanOrEqual(0);
      // The output went out before the marker was written, the completion record after it.
      expect(output).toBeGreaterThanOrEqual(0);
      expect(output).toBeLessThan(marked);
      expect(done).toBeGreaterThan(marked);
      expect(await slow.files()).toEqual(await clean.files());
    } finally {
      await cleanUp(clean, slow);
    }
  });

  it.each([
    // Read by reduce task 0 alone.
    ['its state partition', (key: string) => /^cache\/interval=000001\/persist\/[^/]+\/part-00000$/.test(key), /\/part-00000\.attempt-0\./],
    // Read by every reduce task: the first to read it finds it gone.
    ['a shuffle block', (key: string) => /^cache\/interval=000002\/shuffle\/[^/]+\/map-00000$/.test(key), /\/part-\d+\.attempt-0\./],
  ])('a reduce task that finds %s missing, read ahead of its compute, reports a fetch failure and is rerun once it is recomputed', async (_, lost, reader) => {
    const requests: string[] = [];
    // Gone the first time a task reads it (the driver still sees it, so only the task can tell).
    const missingOnce = (store: ObjectStore): ObjectStore => {
      let gone = true;
      return new Proxy(store, {
        get(target, name, receiver) {
          if (name === 'putIfAbsent') {
            return async (key: string, body: Uint8Array | string) => {
              requests.push(`put ${key}`);
              const created = await target.putIfAbsent(key, body);
              requests.push(`written ${key}`);
              return created;
            };
          }
          if (name === 'get') {
            return (key: string, options?: ReadOptions) => {
              requests.push(`get ${key}`);
              if (lost(key) && gone) return (gone = false), Promise.resolve(undefined);
              return target.get(key, options);
            };
          }
          if (name === 'getRange') {
            return (key: string, start: number, end?: number, options?: ReadOptions) => {
              requests.push(`get ${key}`);
              if (lost(key) && gone) {
                gone = false;
                return (async function* () {
                  throw new ObjectNotFoundError(key);
                })();
              }
              return target.getRange(key, start, end, options);
            };
          }
          return Reflect.get(target, name, receiver);
        },
      });
    };
    const clean = await replayInProcess(wordcount, FILES);
    const lossy = await replayInProcess(wordcount, FILES, { wrapStore: (store, role) => (role === 'tasks' ? missingOnce(store) : store) });
    try {
      // Read with its task's start marker (the write asked for just before it), before the marker
      // was written: ahead of the compute, which waits for it.
      const read = requests.findIndex((r) => r.startsWith('get ') && lost(r.slice(4)));
      expect(read).toBeGreaterThanOrEqual(0);
      const marker = requests.slice(0, read).findLast((r) => r.startsWith('put '))!;
      expect(marker).toMatch(/^put lineage\/interval=000002\/tasks\/result-[^/]+\/part-\d+\.attempt-0\.run-\w+\.started$/);
      expect(marker).toMatch(reader);
      expect(requests.indexOf(marker.replace(/^put /, 'written '))).toBeGreaterThan(read);
      expect(lossy.reports[2]!.fetchFailures).toBe(1);
      expect(await listAll(new FsObjectStore(lossy.root), keys.fetchFailedPrefix('interval=000002'))).toHaveLength(1);
      expect(await lossy.files()).toEqual(await clean.files());
    } finally {
      await cleanUp(clean, lossy);
    }
  });
});
