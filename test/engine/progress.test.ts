/**
 * The stream's clock is durable: every process maps times to intervals by the stored progress,
 * and a new interval length takes over from the next uncommitted interval without moving any
 * committed one or skipping any.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { intervalAt, intervalEnd, rebased, type DriverProgress } from '../../core/streaming/progress.ts';
import { StreamingDriver } from '../../core/streaming/driver.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { defaultSchedulerOptions } from '../../core/scheduler/dag-scheduler.ts';
import { keys } from '../../core/layout.ts';
import wordcount from '../../examples/wordcount.ts';
import { removeDir, tempDir } from '../support/stream-harness.ts';
import path from 'node:path';

const progressArb = fc.record({
  next: fc.integer({ min: 1, max: 10_000 }),
  base: fc.integer({ min: 0, max: 10_000 }),
  epoch: fc.integer({ min: 0, max: 2 ** 40 }),
  intervalMs: fc.integer({ min: 1000, max: 900_000 }),
}).filter((p) => p.base < p.next);

describe('the interval clock', () => {
  it('puts every time in the interval that contains it', () => {
    fc.assert(
      fc.property(progressArb, fc.integer({ min: 0, max: 2 ** 30 }), (p: DriverProgress, dt) => {
        const t = p.epoch + dt;
        const k = intervalAt(p, t);
        expect(intervalEnd(p, k - 1)).toBeLessThanOrEqual(t);
        expect(t).toBeLessThan(intervalEnd(p, k));
      }),
    );
  });

  it('a new length keeps the past and starts the next interval where the old clock did', () => {
    fc.assert(
      fc.property(progressArb, fc.integer({ min: 1000, max: 900_000 }), (p: DriverProgress, ms) => {
        const q = rebased(p, ms);
        expect(intervalEnd(q, p.next - 1)).toBe(intervalEnd(p, p.next - 1));
        expect(intervalEnd(q, p.next)).toBe(intervalEnd(p, p.next - 1) + ms);
        expect(intervalAt(q, intervalEnd(p, p.next - 1))).toBe(p.next);
      }),
    );
  });

  it('a driver deployed with another interval length moves the stored clock to it', async () => {
    const root = await tempDir();
    try {
      const store = new FsObjectStore(root);
      const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 4 });
      await store.put(keys.driverProgress, JSON.stringify({ next: 5, base: 0, epoch: 1_000_000, intervalMs: 10_000 }));
      const config = { intervalMs: 60_000, inputPartitions: 1, maxSplitBytes: 1 << 20, scheduler: defaultSchedulerOptions, retainIntervals: 1 };
      const driver = new StreamingDriver(wordcount, { store, queue, clock: { now: () => 2_000_000, sleep: async () => {} } }, config);
      const progress = await driver.progress();
      expect(progress).toEqual({ next: 5, base: 5, epoch: 1_050_000, intervalMs: 60_000 });
      expect(intervalEnd(progress, 5)).toBe(1_110_000);
      await queue.close();
    } finally {
      await removeDir(root);
    }
  });
});
