/** Sinks (foreachRDD, print) get every record of their interval, even when cached parts vanish. */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { definePipeline } from '../../core/index.ts';
import { removeDir, replayInProcess } from '../support/stream-harness.ts';

/** Deletes each collected part right after a task writes it, the first time only. */
function losingCollectedParts(store: ObjectStore): { store: ObjectStore; lost: string[] } {
  const lost: string[] = [];
  return {
    lost,
    store: new Proxy(store, {
      get(target, prop, receiver) {
        if (prop !== 'put') return Reflect.get(target, prop, receiver);
        return async (key: string, body: Uint8Array | string) => {
          await target.put(key, body);
          if (key.includes('/collect/') && !lost.includes(key)) {
            lost.push(key);
            await target.delete(key);
          }
        };
      },
    }),
  };
}

describe('a foreachRDD sink', () => {
  it('receives every record of each interval, in partition order, after its cached parts were lost', async () => {
    const received = new Map<number, string[]>();
    const pipeline = definePipeline({ name: 'sink', partitions: 3 }, (ctx) => {
      ctx
        .textStream()
        .repartition(3)
        .foreachRDD((records, k) => void received.set(k, records as string[]));
    });
    let losing: ReturnType<typeof losingCollectedParts> | undefined;
    const lines = (k: number) => Array.from({ length: 20 }, (_, i) => `line ${k}.${i}`);
    const run = await replayInProcess(
      pipeline,
      [0, 1].map((k) => ({ 'in.txt': lines(k).join('\n') + '\n' })),
      { wrapStore: (store, role) => (role === 'tasks' ? (losing = losingCollectedParts(store)).store : store) },
    );
    try {
      expect(losing!.lost.length).toBeGreaterThan(0);
      for (const k of [0, 1]) expect(received.get(k)?.slice().sort()).toEqual(lines(k).sort());
    } finally {
      await removeDir(path.dirname(run.root));
    }
  });

  it('that throws fails the interval with an error naming the sink, the interval and the error', async () => {
    const calls: number[] = [];
    const pipeline = definePipeline({ name: 'sink-fails', partitions: 1 }, (ctx) => {
      ctx.textStream().foreachRDD((records, k) => {
        calls.push(k);
        if (k === 1) throw new Error('the database is down');
      });
    });
    const files: Record<string, string>[] = [{ 'a.txt': 'a\n' }, { 'b.txt': 'b\n' }];
    await expect(replayInProcess(pipeline, files)).rejects.toThrow(
      /the foreachRDD sink sink-[\w-]+ \(on .+\) failed at interval 1 with 1 records: the database is down/,
    );
    expect(calls).toEqual([0, 1]);
  });
});
