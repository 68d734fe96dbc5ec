/**
 * What the scheduler asks the store and the queue for, stage by stage: a stage of an interval
 * planned a moment ago is sent without listing its empty task folder first, while a resumed
 * interval's stages are listed, so that what an earlier driver completed is not sent again; and
 * the looks for lost inputs and dead letters that no longer come on every poll still find them.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { StreamingDriver, type DriverStep } from '../../core/streaming/driver.ts';
import { admitUpload } from '../../core/streaming/intake.ts';
import { TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { TaskQueue } from '../../core/ports/task-queue.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { InProcessRunner } from '../../local/runtime/in-process-runner.ts';
import wordcount from '../../examples/wordcount.ts';
import { outputFiles, removeDir, tempDir, testDriverConfig, wordcountRoot } from '../support/stream-harness.ts';
import { recordedStore } from '../support/recorded-store.ts';

const config = testDriverConfig({ inputPartitions: 3 });

/** `queue`, writing each batch sent to `requests` as `send <stage>`, and each drain of dead letters as `drain`. */
function recordedQueue(queue: TaskQueue, requests: string[]): TaskQueue {
  return new Proxy(queue, {
    get(target, name, receiver) {
      const value = Reflect.get(target, name, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        if (name === 'send') for (const stage of new Set((args[0] as string[]).map((body) => (JSON.parse(body) as { stage: string }).stage))) requests.push(`send ${stage}`);
        if (name === 'drainDeadLetters') requests.push('drain');
        return value.apply(target, args);
      };
    },
  });
}

const tasksFolder = (stage: string) => `list lineage/interval=000000/tasks/${stage}/`;

/**
 * Runs interval 0 of WordCount over one upload with tasks in this process, the scheduler told by
 * the runner which tasks settled; with `lose`, the first read of a shuffle block finds it gone, so
 * the reading task records a fetch failure and settles without a completion record.
 */
async function runTold(lose: boolean) {
  const root = await tempDir();
  const store = new FsObjectStore(root);
  const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 4 });
  let lost: string | undefined;
  const tasks: ObjectStore = Object.create(store);
  tasks.getRange = (key, start, end, options) =>
    (async function* () {
      if (lose && lost === undefined && key.includes('/shuffle/')) {
        lost = key;
        await store.delete(key);
      }
      yield* store.getRange(key, start, end, options);
    })();
  const runner = InProcessRunner.for(wordcount, tasks, queue, 2);
  await runner.start();
  try {
    const text = 'the fox and the dog\nthe end of the fox\na dog again\n';
    await store.put('incoming/a.txt', text);
    await admitUpload(store, { key: 'incoming/a.txt', name: 'a.txt', size: Buffer.byteLength(text) }, 0);
    const report = await new StreamingDriver(wordcount, { store, queue, clock: systemClock, notices: runner.notices }, config).runInterval(0);
    return { report, lost, outputs: await outputFiles(root) };
  } finally {
    await runner.stop();
    await queue.close();
    await removeDir(root);
  }
}

describe('the scheduler, stage by stage', () => {
  it('sends the tasks of a stage of an interval planned now without listing its task folder first', async () => {
    const env = await wordcountRoot(1, config);
    try {
      const requests: string[] = [];
      const driver = new StreamingDriver(wordcount, { store: recordedStore(env.store, requests), queue: recordedQueue(env.queue, requests), clock: systemClock }, config);

      await driver.runInterval(0);

      const sent = requests.filter((r) => r.startsWith('send ')).map((r) => r.slice('send '.length));
      expect(sent.length).toBeGreaterThanOrEqual(2);
      for (const stage of sent) {
        const firstSend = requests.indexOf(`send ${stage}`);
        expect(requests.slice(0, firstSend)).not.toContain(tasksFolder(stage));
      }
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  });

  it('lists the task folders of an interval it resumes, and sends nothing an earlier driver completed', async () => {
    const env = await wordcountRoot(1, config);
    try {
      // The first driver dies once every stage is done, before its commit.
      const died = new Error('the driver died');
      await expect(env.driver({ step: (step: DriverStep) => { if (step === 'stages-done') throw died; } }).runInterval(0)).rejects.toBe(died);
      const requests: string[] = [];
      const driver = new StreamingDriver(wordcount, { store: recordedStore(env.store, requests), queue: recordedQueue(env.queue, requests), clock: systemClock }, config);

      const report = await driver.runInterval(0);

      expect(requests.filter((r) => r.startsWith('list lineage/interval=000000/tasks/')).length).toBeGreaterThanOrEqual(2);
      expect(requests.filter((r) => r.startsWith('send '))).toEqual([]);
      expect(report.interval).toBe(0);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  });

  it("sends a stage that waits for nothing while it looks whether the earlier interval's state it reads later is all there", async () => {
    // Empty stages run as any other, so the scheduler alone lists the state of interval 0.
    const runAll = testDriverConfig({ inputPartitions: 3, runEmptyStages: true });
    const env = await wordcountRoot(2, runAll);
    try {
      await env.driver().runInterval(0);
      const requests: string[] = [];
      let mapSent!: () => void;
      const sent = new Promise<void>((resolve) => (mapSent = resolve));
      const queue = recordedQueue(env.queue, requests);
      const sending: TaskQueue = Object.create(queue);
      sending.send = async (bodies) => {
        await queue.send(bodies);
        if (bodies.some((body) => (JSON.parse(body) as { stage: string }).stage.startsWith('map-'))) mapSent();
      };
      // The listing of interval 0's state answers once the map stage is sent, or after 2 s (the order then shows it was not).
      const store: ObjectStore = Object.create(env.store);
      store.list = (prefix) =>
        (async function* () {
          if (prefix.startsWith('cache/interval=000000/persist/')) await Promise.race([sent, new Promise((resolve) => setTimeout(resolve, 2_000))]);
          yield* env.store.list(prefix);
          requests.push(`listed ${prefix}`);
        })();

      await new StreamingDriver(wordcount, { store, queue: sending, clock: systemClock }, runAll).runInterval(1);

      const listed = requests.findIndex((r) => r.startsWith('listed cache/interval=000000/persist/'));
      const mapSend = requests.findIndex((r) => r.startsWith('send map-'));
      expect(listed).toBeGreaterThan(-1);
      expect(mapSend).toBeGreaterThan(-1);
      expect(mapSend).toBeLessThan(listed);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  });

  it('with the runner telling which tasks settled, still reruns what wrote an input a task found gone, and commits the clean output', async () => {
    const clean = await runTold(false);

    const lossy = await runTold(true);

    expect(lossy.lost).toMatch(/\/shuffle\//);
    // Every reduce task reads a block of the lost map output: each records its fetch failure.
    expect(lossy.report.fetchFailures).toBeGreaterThan(0);
    expect(lossy.report.recomputed).toBeGreaterThan(0);
    expect(lossy.outputs).toEqual(clean.outputs);
  });

  it('with the runner telling which tasks settled, fails the interval on a task dead-lettered on its last delivery', async () => {
    const root = await tempDir();
    const store = new FsObjectStore(root);
    const queue = new FsTaskQueue({ dir: path.join(root, '.dstream', 'queue'), maxReceives: 1 });
    // Every read of the upload fails: its task fails its one allowed delivery and is dead-lettered.
    const tasks: ObjectStore = Object.create(store);
    tasks.getRange = (key) =>
      (async function* () {
        throw new Error(`the disk holding ${key} is unavailable`);
      })();
    const runner = InProcessRunner.for(wordcount, tasks, queue, 2);
    await runner.start();
    try {
      await store.put('incoming/a.txt', 'to be or not to be\n');
      await admitUpload(store, { key: 'incoming/a.txt', name: 'a.txt', size: 19 }, 0);
      const driver = new StreamingDriver(wordcount, { store, queue, clock: systemClock, notices: runner.notices }, config);

      const failure = await driver.runInterval(0).catch((error: unknown) => error);

      expect(failure).toBeInstanceOf(TaskFailedError);
      expect((failure as TaskFailedError).settled).toBe(false);
      expect((failure as TaskFailedError).lastError).toContain('is unavailable');
    } finally {
      await runner.stop();
      await queue.close();
      await removeDir(root);
    }
  });
});
