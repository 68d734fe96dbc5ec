/**
 * Any number of copies of a task may run at once (redelivery, speculation): the first completion
 * record wins, and a losing copy that sees it stops early instead of holding its worker.
 */
import { afterEach, describe, expect, it } from 'vitest';
import path from 'node:path';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { InProcessRunner } from '../../local/runtime/in-process-runner.ts';
import { StreamingDriver } from '../../core/streaming/driver.ts';
import { admitUpload } from '../../core/streaming/intake.ts';
import { defaultSchedulerOptions } from '../../core/scheduler/dag-scheduler.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { TaskHandler } from '../../core/runtime/task-handler.ts';
import type { TaskRecord } from '../../core/exec/task.ts';
import { keys } from '../../core/layout.ts';
import wordcount from '../../examples/wordcount.ts';
import { sampleLines } from '../../local/sample/generate.ts';
import { removeDir, tempDir } from '../support/stream-harness.ts';

let root: string | undefined;
afterEach(async () => {
  if (root) await removeDir(root);
  root = undefined;
});

/** Runs interval 0 of WordCount over one large upload and returns a map task it sent. */
async function committedMapTask(): Promise<{ store: FsObjectStore; task: TaskRecord }> {
  root = await tempDir();
  const store = new FsObjectStore(root);
  const fsQueue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 4 });
  const sent: string[] = [];
  const queue: TaskQueue = {
    send: (bodies) => (sent.push(...bodies), fsQueue.send(bodies)),
    receive: (...a) => fsQueue.receive(...a),
    delete: (r) => fsQueue.delete(r),
    changeVisibility: (r, ms) => fsQueue.changeVisibility(r, ms),
    deadLetter: (m, reason) => fsQueue.deadLetter(m, reason),
    drainDeadLetters: (max) => fsQueue.drainDeadLetters(max),
  };
  const runner = InProcessRunner.for(wordcount, store, queue, 2);
  await runner.start();
  try {
    const text = sampleLines(40_000, 3);
    await store.put('incoming/big.txt', text);
    await admitUpload(store, { key: 'incoming/big.txt', name: 'big.txt', size: Buffer.byteLength(text) }, 0);
    const config = { intervalMs: 1000, inputPartitions: 1, maxSplitBytes: 64 << 20, scheduler: { ...defaultSchedulerOptions, pollMs: 2 }, retainIntervals: 1 };
    await new StreamingDriver(wordcount, { store, queue, clock: systemClock }, config).runInterval(0);
  } finally {
    await runner.stop();
    await fsQueue.close();
  }
  const handler = new TaskHandler(wordcount, store);
  for (const body of sent) {
    const task = await handler.decode(body);
    if (task.stage.startsWith('map-')) return { store, task };
  }
  throw new Error('the interval sent no map task');
}

const PIECE = 16 * 1024;

/** The same store, but reading in small pieces, slowly, as on a slow machine; counts the pieces. */
function slowReads(store: ObjectStore, delayMs: number): ObjectStore & { chunks: number } {
  const slow = Object.create(store) as ObjectStore & { chunks: number };
  slow.chunks = 0;
  slow.getRange = async function* (key, start, end) {
    for await (const chunk of store.getRange(key, start, end)) {
      for (let at = 0; at < chunk.length; at += PIECE) {
        await new Promise((r) => setTimeout(r, delayMs));
        slow.chunks++;
        yield chunk.subarray(at, at + PIECE);
      }
    }
  };
  return slow;
}

describe('copies of one task', () => {
  it('a losing copy stops once another copy has committed, and the winner’s record stands', async () => {
    const { store, task } = await committedMapTask();
    const doneKey = keys.taskDone(task.scope, task.stage, task.partition);
    const original = await store.get(doneKey);
    await store.delete(doneKey);

    const slowStore = slowReads(store, 10);
    const straggler = new TaskHandler(wordcount, slowStore, { supersededCheckMs: 5, executor: 'straggler' }).handle(task, 1);
    const winner = await new TaskHandler(wordcount, store, { executor: 'winner' }).handle({ ...task, copy: 1 }, 1);
    expect(winner.status).toBe('done');
    expect(await straggler).toEqual({ status: 'superseded' });

    // The straggler read only part of its split before it stopped.
    const allChunks = Math.ceil((await store.head('incoming/big.txt'))!.size / PIECE);
    expect(slowStore.chunks).toBeGreaterThan(0);
    expect(slowStore.chunks).toBeLessThan(allChunks);

    const committed = JSON.parse(Buffer.from((await store.get(doneKey))!).toString('utf8'));
    expect(committed.copy).toBe(1);
    expect(committed.executor).toBe('winner');
    const { copy: _c, durationMs: _d, executor: _e, ...rest } = committed;
    const { copy: _c0, durationMs: _d0, executor: _e0, ...before } = JSON.parse(Buffer.from(original!).toString('utf8'));
    expect(rest).toEqual(before);
  });

  it('without looking, a losing copy runs to its end and still leaves the winner’s record', async () => {
    const { store, task } = await committedMapTask();
    const doneKey = keys.taskDone(task.scope, task.stage, task.partition);
    await store.delete(doneKey);

    const slowStore = slowReads(store, 1);
    const straggler = new TaskHandler(wordcount, slowStore).handle(task, 1);
    await new TaskHandler(wordcount, store).handle({ ...task, copy: 1 }, 1);
    expect(await straggler).toEqual({ status: 'superseded' });
    expect(JSON.parse(Buffer.from((await store.get(doneKey))!).toString('utf8')).copy).toBe(1);
  });
});
