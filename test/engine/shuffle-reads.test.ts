/**
 * A reduce task reads its shuffle blocks several at a time, and its output does not depend on
 * which read finishes first: records come out in map-partition order, as a serial read gives them.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { removeDir, replayInProcess } from '../support/stream-harness.ts';

/** The tasks' store, with each shuffle block's read held back the longer the earlier its map output. */
function laterBlocksFirst(store: ObjectStore): ObjectStore {
  return new Proxy(store, {
    get(target, name, receiver) {
      if (name !== 'getRange') return Reflect.get(target, name, receiver);
      return async function* (key: string, start: number, end?: number) {
        const map = /\/shuffle\/[^/]+\/map-(\d+)$/.exec(key);
        if (map) await new Promise((resolve) => setTimeout(resolve, 5 * (16 - Number(map[1]))));
        yield* target.getRange(key, start, end);
      };
    },
  });
}

describe('shuffle reads', () => {
  it('in flight together still give the bytes of a serial read: values in map-partition order', async () => {
    // groupByKey keeps every value in the order read, so any reordering of blocks shows in the output.
    const pipeline = definePipeline({ name: 'grouped', partitions: 2 }, (ctx) => {
      ctx
        .textStream()
        .map((line) => [line.split(' ')[0]!, line] as [string, string])
        .groupByKey()
        .saveAsJsonFiles('groups');
    });
    const files = [0, 1].map((k) =>
      Object.fromEntries(Array.from({ length: 12 }, (_, f) => [`part-${f}.txt`, Array.from({ length: 6 }, (_, i) => `${'abc'[i % 3]} ${k}.${f}.${i}`).join('\n') + '\n'])),
    );
    // Undelayed, blocks arrive about in order; delayed, in reverse: the outputs must not differ.
    const serialLike = await replayInProcess(pipeline, files, { partitions: 12 });
    const reordered = await replayInProcess(pipeline, files, { partitions: 12, wrapStore: (store, role) => (role === 'tasks' ? laterBlocksFirst(store) : store) });
    try {
      const expected = await serialLike.files();
      expect([...expected.keys()].some((file) => file.includes('groups'))).toBe(true);
      expect(await reordered.files()).toEqual(expected);
    } finally {
      await removeDir(path.dirname(serialLike.root));
      await removeDir(path.dirname(reordered.root));
    }
  });
});
