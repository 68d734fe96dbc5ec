/**
 * A task's reads ahead (TaskReads): the planned reads start at once but at most READS_AHEAD ahead
 * of the compute, so what is held stays bounded; the compute gets what the store would give it;
 * and no object is read twice.
 */
import { describe, expect, it } from 'vitest';
import { ObjectNotFoundError, putContentAddressed, readRange, type ObjectStore } from '../../core/ports/object-store.ts';
import { READS_AHEAD, TaskReads } from '../../core/exec/task-reads.ts';
import { FIRST_READ_TAIL_BYTES, plannedSplitReads } from '../../core/exec/split-reader.ts';
import { keys } from '../../core/layout.ts';
import { VersionedMemoryStore } from '../support/versioned-store.ts';

/** The store, counting the reads made of each key and those started but not yet answered. */
function counted(store: ObjectStore) {
  const reads = new Map<string, number>();
  const count = (key: string) => reads.set(key, (reads.get(key) ?? 0) + 1);
  const proxy = new Proxy(store, {
    get(target, name, receiver) {
      if (name === 'get') return (key: string) => (count(key), target.get(key));
      if (name === 'getRange') return (key: string, start: number, end?: number) => (count(key), target.getRange(key, start, end));
      return Reflect.get(target, name, receiver);
    },
  });
  return { store: proxy, reads };
}

const text = (bytes: Uint8Array | undefined) => (bytes ? Buffer.from(bytes).toString('utf8') : undefined);

describe('TaskReads', () => {
  it(`starts at most ${READS_AHEAD} planned reads ahead of the compute, one more as each is taken`, async () => {
    const memory = new VersionedMemoryStore();
    for (let i = 0; i < 20; i++) await memory.put(`blocks/${i}`, `block ${i}`);
    const { store, reads } = counted(memory);
    const ahead = new TaskReads(store);

    ahead.plan(Array.from({ length: 20 }, (_, i) => ({ key: `blocks/${i}` })));
    expect(reads.size).toBe(READS_AHEAD);
    expect(text(await ahead.get('blocks/0'))).toBe('block 0');
    expect(reads.size).toBe(READS_AHEAD + 1);
    expect(reads.has(`blocks/${READS_AHEAD}`)).toBe(true);
    ahead.close();
  });

  it('lets the compute read what was planned but not started itself, once, and never starts it after', async () => {
    const memory = new VersionedMemoryStore();
    for (let i = 0; i < 20; i++) await memory.put(`blocks/${i}`, `block ${i}`);
    const { store, reads } = counted(memory);
    const ahead = new TaskReads(store);

    ahead.plan(Array.from({ length: 20 }, (_, i) => ({ key: `blocks/${i}`, range: { start: 0, end: 7 } })));
    expect(text(await readRange(ahead, 'blocks/19', 0, 7))).toBe('block 1');
    for (let i = 0; i < 19; i++) expect(text(await readRange(ahead, `blocks/${i}`, 0, 7))).toBe(`block ${i}`.slice(0, 7));
    expect([...reads.values()].every((n) => n === 1)).toBe(true);
    expect(reads.size).toBe(20);
  });

  it('gives the compute what the store gives: absent for a missing object, ObjectNotFoundError for a missing range', async () => {
    const ahead = new TaskReads(new VersionedMemoryStore());
    ahead.plan([{ key: 'gone/state' }, { key: 'gone/block', range: { start: 0, end: 10 } }]);
    expect(await ahead.get('gone/state')).toBeUndefined();
    await expect(readRange(ahead, 'gone/block', 0, 10)).rejects.toBeInstanceOf(ObjectNotFoundError);
  });

  it("reads a split's short input ranges ahead once its descriptor is in, but leaves a long one to be streamed", async () => {
    const memory = new VersionedMemoryStore();
    const scope = 'interval=000001';
    await memory.put('incoming/short.txt', 'a b\nc d\n');
    const split = { ranges: [{ key: 'incoming/short.txt', start: 2, end: 8 }, { key: 'incoming/long.txt', start: 0, end: 2 << 20 }] };
    const { hash } = await putContentAddressed(memory, (h) => keys.lineageSplit(scope, h), split);
    const { store, reads } = counted(memory);
    const ahead = new TaskReads(store);

    ahead.plan([plannedSplitReads(scope, { hash, ranges: 2, bytes: 6 + (2 << 20) })]);
    await ahead.get(keys.lineageSplit(scope, hash));
    await new Promise((resolve) => setImmediate(resolve));
    // From the byte before the range (which tells whether the range starts a line) to a little past its end.
    expect(reads.get('incoming/short.txt')).toBe(1);
    expect(text(await readRange(ahead, 'incoming/short.txt', 1, 8 + FIRST_READ_TAIL_BYTES))).toBe(' b\nc d\n');
    expect(reads.get('incoming/short.txt')).toBe(1);
    expect(reads.has('incoming/long.txt')).toBe(false);
  });
});
