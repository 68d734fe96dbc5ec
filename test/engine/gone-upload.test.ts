/**
 * An admitted upload whose bytes are gone when a task reads them (a version deleted by hand, or
 * expired while its interval stayed failed) is a bad record of the whole upload, the same on every
 * read: under 'fail' the interval fails at once naming it, and `quarantine` gets past it, with
 * every other upload counted.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { InProcessRunner } from '../../local/runtime/in-process-runner.ts';
import { StreamingDriver } from '../../core/streaming/driver.ts';
import { admitUpload } from '../../core/streaming/intake.ts';
import { quarantineInterval } from '../../core/streaming/lineage.ts';
import { TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { systemClock } from '../../core/ports/clock.ts';
import { listAll } from '../../core/ports/object-store.ts';
import wordcount from '../../examples/wordcount.ts';
import { readOutput, removeDir, tempDir, testDriverConfig } from '../support/stream-harness.ts';

const config = testDriverConfig();

it('fails the interval at once naming the upload, and dstream quarantine goes on with the rest counted', async () => {
  const root = await tempDir();
  const store = new FsObjectStore(root);
  const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 4 });
  const runner = InProcessRunner.for(wordcount, store, queue, 2);
  await runner.start();
  try {
    await store.put('incoming/kept.txt', 'red green\n');
    await admitUpload(store, { key: 'incoming/kept.txt', name: 'kept.txt', size: 10 }, 0);
    // Admitted, then its bytes went: no task can read them again.
    await store.put('incoming/gone.txt', 'blue blue\n');
    await admitUpload(store, { key: 'incoming/gone.txt', name: 'gone.txt', size: 10 }, 0);
    await store.delete('incoming/gone.txt');

    const driver = () => new StreamingDriver(wordcount, { store, queue, clock: systemClock }, config);
    const failure = await driver().runInterval(0).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(TaskFailedError);
    expect(String(failure)).toMatch(/not retried: .*reading gone\.txt at byte 0: the upload incoming\/gone\.txt is gone/);

    await quarantineInterval(store, 0);
    const report = await driver().runInterval(0);
    expect(report.quarantined).toBe(1);
    expect((await readOutput(root, 'counts', 0))?.slice().sort()).toEqual([['green', 1], ['red', 1]]);
    expect(await listAll(store, 'errors/interval=000000/records/')).toHaveLength(1);
  } finally {
    await runner.stop();
    await queue.close();
    await removeDir(root);
  }
});
