/**
 * A task dead-lettered for a cause that is then fixed (here, an input its tasks cannot read for a
 * while) does not fail the next driver run: that run sends the interval's unfinished tasks afresh,
 * and a dead letter an earlier run left in the queue is kept as history, not taken as a failure.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { readdir } from 'node:fs/promises';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { InProcessRunner } from '../../local/runtime/in-process-runner.ts';
import { StreamingDriver } from '../../core/streaming/driver.ts';
import { admitUpload } from '../../core/streaming/intake.ts';
import { TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import wordcount from '../../examples/wordcount.ts';
import { outputFiles, removeDir, tempDir, testDriverConfig } from '../support/stream-harness.ts';

const config = testDriverConfig();
const uploads = { 'a.txt': 'to be or not to be\n', 'b.txt': 'that is the question\n' };

/** Tasks read their input through this: while `broken`, a.txt fails at once and b.txt once `release` is called. */
function flakyInputs(store: ObjectStore) {
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const state = { broken: true, release };
  const tasks: ObjectStore = Object.create(store);
  tasks.getRange = (key, start, end) =>
    (async function* () {
      if (state.broken && key.endsWith('b.txt')) await released;
      if (state.broken) throw new Error(`the disk holding ${key} is unavailable`);
      yield* store.getRange(key, start, end);
    })();
  return { tasks, state };
}

async function run(root: string, flaky: boolean) {
  const store = new FsObjectStore(root);
  const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 1 });
  const inputs = flakyInputs(store);
  if (!flaky) inputs.state.broken = false;
  const runner = InProcessRunner.for(wordcount, inputs.tasks, queue, 2);
  await runner.start();
  for (const [name, text] of Object.entries(uploads)) {
    await store.put(`incoming/${name}`, text);
    await admitUpload(store, { key: `incoming/${name}`, name, size: Buffer.byteLength(text), version: 'v1' }, 0);
  }
  const driver = () => new StreamingDriver(wordcount, { store, queue, clock: systemClock }, config);
  return { store, queue, runner, inputs, driver };
}

describe('dead letters of an earlier driver run', () => {
  it('do not fail the run after the cause is fixed; the interval commits as a clean run would, and the letters are kept', async () => {
    const cleanRoot = await tempDir();
    const root = await tempDir();
    try {
      const clean = await run(cleanRoot, false);
      await clean.driver().runInterval(0);
      await clean.runner.stop();
      await clean.queue.close();

      const env = await run(root, true);
      // The first run fails on a.txt's dead letter, while b.txt's task is still failing.
      await expect(env.driver().runInterval(0)).rejects.toBeInstanceOf(TaskFailedError);
      // Then b.txt's task fails too and is dead-lettered: a letter left for whoever drains next.
      env.inputs.state.release();
      while (env.runner.errors.length < 2) await new Promise((resolve) => setTimeout(resolve, 5));

      // The cause is fixed, and a new driver run starts.
      env.inputs.state.broken = false;
      await env.driver().runInterval(0);
      await env.runner.stop();
      await env.queue.close();

      expect(await outputFiles(root)).toEqual(await outputFiles(cleanRoot));
      // Both failures are on record: the one the first run failed on, and the leftover the second drained.
      const letters = (await readdir(path.join(root, 'errors', 'interval=000000', 'dead-letters'), { recursive: true })).map(String).filter((f) => f.endsWith('.json'));
      expect(letters.filter((f) => /part-\d+\.json$/.test(f))).toHaveLength(1);
      expect(letters.filter((f) => /part-\d+\.earlier-[\w-]+\.json$/.test(f))).toHaveLength(1);
    } finally {
      await removeDir(cleanRoot);
      await removeDir(root);
    }
  });
});
