/**
 * The stream's clock is durable: every process maps times to intervals by the stored progress,
 * and a new interval length takes over from the next uncommitted interval without moving any
 * committed one or skipping any.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { intervalAt, intervalEnd, readProgress, rebased, type DriverProgress } from '../../core/streaming/progress.ts';
import { StreamingDriver } from '../../core/streaming/driver.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { defaultSchedulerOptions } from '../../core/scheduler/dag-scheduler.ts';
import { intervalScope, keys } from '../../core/layout.ts';
import { definePipeline } from '../../core/index.ts';
import { InProcessRunner } from '../../local/runtime/in-process-runner.ts';
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

  it('a driver deployed with another interval length moves the stored clock to it when it runs the next interval, not when it looks', async () => {
    const root = await tempDir();
    const store = new FsObjectStore(root);
    const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 4 });
    const echo = definePipeline({ name: 'echo' }, (ctx) => ctx.textStream().saveAsTextFiles('lines'));
    const runner = InProcessRunner.for(echo, store, queue, 1);
    await runner.start();
    try {
      const before = { next: 5, base: 0, epoch: 1_000_000, intervalMs: 10_000 };
      await store.put(keys.driverProgress, JSON.stringify(before));
      const config = { intervalMs: 60_000, inputPartitions: 1, maxSplitBytes: 1 << 20, scheduler: { ...defaultSchedulerOptions, pollMs: 2 }, retainIntervals: 1 };
      const driver = new StreamingDriver(echo, { store, queue, clock: { now: () => 2_000_000, sleep: async (ms) => void (await new Promise((r) => setTimeout(r, ms))) } }, config);
      // Looking (as a watchdog does before it holds the lease) changes nothing.
      expect(await driver.progress()).toEqual(before);
      await driver.runInterval(5);
      const progress = await driver.progress();
      expect(progress).toEqual({ next: 6, base: 5, epoch: 1_050_000, intervalMs: 60_000 });
      expect(intervalEnd(progress, 6)).toBe(1_170_000);
    } finally {
      await runner.stop();
      await queue.close();
      await removeDir(root);
    }
  });

  it('a driver that finds the interval committed but the pointer behind it moves the pointer on', async () => {
    const root = await tempDir();
    const store = new FsObjectStore(root);
    const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 4 });
    try {
      const echo = definePipeline({ name: 'echo' }, (ctx) => ctx.textStream().saveAsTextFiles('lines'));
      // The driver that committed interval 5 died before it moved the pointer.
      await store.put(keys.driverProgress, JSON.stringify({ next: 5, base: 0, epoch: 1_000_000, intervalMs: 10_000 }));
      await store.put(keys.committed(intervalScope(5)), JSON.stringify({ interval: 5 }));
      const config = { intervalMs: 10_000, inputPartitions: 1, maxSplitBytes: 1 << 20, scheduler: defaultSchedulerOptions, retainIntervals: 1 };
      const driver = new StreamingDriver(echo, { store, queue, clock: { now: () => 2_000_000, sleep: async () => {} } }, config);
      expect(await driver.runInterval(5)).toEqual({ interval: 5 });
      expect((await driver.progress()).next).toBe(6);
    } finally {
      await queue.close();
      await removeDir(root);
    }
  });

  it('reads a pointer written before the clock had a base as counting from interval 0', async () => {
    const root = await tempDir();
    try {
      const store = new FsObjectStore(root);
      await store.put(keys.driverProgress, JSON.stringify({ next: 3, epoch: 1_000_000, intervalMs: 10_000 }));
      const progress = await readProgress(store, 5_000_000, 10_000);
      expect(intervalEnd(progress, 3)).toBe(1_040_000);
      expect(intervalAt(progress, 1_035_000)).toBe(3);
    } finally {
      await removeDir(root);
    }
  });
});
