/**
 * The runner's notices of which tasks started and settled are hints: the scheduler reads those
 * tasks' records by key instead of listing every task folder on each poll, and still lists now
 * and then, so notices that never come change how soon it learns, never what.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { StreamingDriver } from '../../core/streaming/driver.ts';
import { admitUpload } from '../../core/streaming/intake.ts';
import { definePipeline } from '../../core/index.ts';
import { keys } from '../../core/layout.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { TaskNotices } from '../../core/ports/task-runner.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { InProcessRunner } from '../../local/runtime/in-process-runner.ts';
import { bag, readOutput, removeDir, tempDir, testDriverConfig } from '../support/stream-harness.ts';

const wordcount = definePipeline({ name: 'notices-wordcount', partitions: 3 }, (ctx) => {
  ctx
    .textStream()
    .flatMap((line) => line.split(' '))
    .map((w) => [w, 1])
    .reduceByKey((a, b) => a + b)
    .saveAsJsonFiles('counts');
});

/** Runs interval 0 over `lines`, the scheduler told of tasks by `notices` (the runner's own when undefined). */
async function runWith(lines: string[], notices?: (runner: InProcessRunner) => TaskNotices) {
  const root = await tempDir();
  const store = new FsObjectStore(root);
  const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 4 });
  const runner = InProcessRunner.for(wordcount, store, queue, 2);
  await runner.start();
  try {
    for (const [i, text] of lines.entries()) {
      const key = keys.pinnedUpload('test', `in-${i}.txt`);
      await store.put(key, text + '\n');
      await admitUpload(store, { key, name: `in-${i}.txt`, size: Buffer.byteLength(text + '\n') }, 0);
    }
    const driver = new StreamingDriver(wordcount, { store, queue, clock: systemClock, notices: notices?.(runner) ?? runner.notices }, testDriverConfig());
    const report = await driver.runInterval(0);
    return { report, counts: bag(await readOutput(store, 'counts', 0)) };
  } finally {
    await runner.stop();
    await queue.close();
    await removeDir(root);
  }
}

describe('task notices', () => {
  const lines = ['a b c a', 'b a d', 'c c c e'];
  const expected = bag([['a', 3], ['b', 2], ['c', 4], ['d', 1], ['e', 1]]);

  it("with the runner's notices, the interval commits what the input says", async () => {
    const { report, counts } = await runWith(lines);

    expect(counts).toEqual(expected);
    expect(report.tasks).toBe(2 + 3);
  });

  it('with every notice lost, the interval still commits the same, from the listings the scheduler makes anyway', async () => {
    const { report, counts } = await runWith(lines, () => ({ takeNotices: () => [] }));

    expect(counts).toEqual(expected);
    expect(report.tasks).toBe(2 + 3);
  });

  it('notices of tasks the scheduler does not run (another scope, a stage it never planned) are ignored', async () => {
    const stray: TaskNotices = {
      takeNotices: () => [
        { scope: 'interval=000099', stage: 'out-counts', partition: 0, event: 'settled' },
        { scope: 'interval=000000', stage: 'no-such-stage', partition: 7, event: 'started' },
      ],
    };
    const { counts } = await runWith(lines, () => stray);

    expect(counts).toEqual(expected);
  });
});
