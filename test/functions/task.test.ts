/**
 * The task function runs each message of a batch and reports exactly the ones that failed, so
 * that only those return to the queue; a message delivered again after its task completed
 * changes nothing.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import path from 'node:path';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { StreamingDriver, type DriverConfig } from '../../core/streaming/driver.ts';
import { admitUpload } from '../../core/streaming/intake.ts';
import { defaultSchedulerOptions, TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { QueueMessage } from '../../core/ports/task-queue.ts';
import { keys } from '../../core/layout.ts';
import type { TaskRecord } from '../../core/exec/task.ts';
import wordcount from '../../examples/wordcount.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { readOutput, removeDir, tempDir } from '../support/stream-harness.ts';
import { countingWrites, eventSourceMapping, loggedJson, sqsBatchEvent, sqsEvent } from './support.ts';

const config: DriverConfig = {
  intervalMs: 1000,
  inputPartitions: 2,
  maxSplitBytes: 1 << 20,
  scheduler: { ...defaultSchedulerOptions, pollMs: 5 },
  retainIntervals: 2,
};

let base: string;
let store: FsObjectStore;
let queue: FsTaskQueue;
let errors: ReturnType<typeof vi.spyOn>;

beforeEach(async () => {
  base = await tempDir();
  store = new FsObjectStore(path.join(base, 'bucket'));
  queue = new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: 3 });
  errors = vi.spyOn(console, 'error').mockImplementation(() => {});
});

afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await queue.close();
  await removeDir(base);
});

/** Interval 0 of wordcount under way, and the first batch of its real task messages. */
async function intervalWithTasks() {
  const text = 'a b a\nc a b\n';
  await store.put('incoming/words.txt', text);
  await admitUpload(store, { key: 'incoming/words.txt', name: 'words.txt', size: Buffer.byteLength(text), version: 'v1' }, 0);
  const driver = new StreamingDriver(wordcount, { store, queue, clock: systemClock }, config);
  const run = driver.runInterval(0);
  const batch: QueueMessage[] = [];
  while (batch.length === 0) batch.push(...(await queue.receive(10, 60_000, 1000)));
  return { run, batch };
}

/** Stands in for the queue: records the retry delays the handler asks for. */
function retryRecorder() {
  const hidden: [string, number][] = [];
  return { hidden, changeVisibility: async (receipt: string, ms: number) => void hidden.push([receipt, ms]) };
}

/** A syntactically valid task of wordcount whose interval has no lineage record: running it throws. */
function orphanTask(): TaskRecord {
  return {
    v: 1,
    pipeline: wordcount.options.name,
    fingerprint: wordcount.fingerprint,
    scope: 'interval=000042',
    planHash: 'none',
    stage: 'map-r3',
    kind: 'shuffle-map',
    rdd: 'r3',
    partition: 0,
    attempt: 0,
    copy: 0,
  };
}

describe('task handler', () => {
  it('runs real tasks, and settles bodies that are not tasks at once: kept under errors/, not returned to the queue', async () => {
    const retries = retryRecorder();
    const handler = createTaskHandler(wordcount, { store, queue: retries });
    const { run, batch } = await intervalWithTasks();
    const junk = [
      { id: 'junk-1', body: 'not json at all', receipt: 'r1', receiveCount: 1 },
      { id: 'junk-2', body: '{"hello":"world"}', receipt: 'r2', receiveCount: 3 },
    ];
    const response = await handler(sqsEvent([junk[0]!, ...batch, junk[1]!]));
    expect(response).toEqual({ batchItemFailures: [] });
    expect(retries.hidden).toEqual([]);
    for (const { id, body, receiveCount } of junk) {
      const kept = JSON.parse(Buffer.from((await store.get(keys.unreadableDeadLetter(id)))!).toString());
      expect(kept).toMatchObject({ id, body, receiveCount, error: expect.stringMatching(/MalformedTaskMessageError/) });
    }
    for (const m of batch) await queue.delete(m.receipt);

    // The tasks of the batch completed: the interval finishes with the rest of its tasks.
    const mapping = eventSourceMapping(queue, handler);
    await run;
    await mapping.stop();
    expect((await readOutput(store.root, 'counts', 0))?.sort()).toEqual([['a', 3], ['b', 2], ['c', 1]]);

    const logged = loggedJson(errors.mock.calls);
    expect(logged.map((l) => [l.messageId, l.receiveCount, l.message])).toEqual([
      ['junk-1', 1, 'message junk-1 is not a dstream task; it is kept under errors/unreadable-dead-letters/ and deleted from the queue'],
      ['junk-2', 3, 'message junk-2 is not a dstream task; it is kept under errors/unreadable-dead-letters/ and deleted from the queue'],
    ]);
    expect(logged[0]!.error).toMatch(/task message is not JSON/);
  });

  it('runs a redelivered task whose completion record exists as a no-op: nothing is written', async () => {
    const handler = createTaskHandler(wordcount, { store });
    const { run, batch } = await intervalWithTasks();
    expect(await handler(sqsEvent(batch))).toEqual({ batchItemFailures: [] });
    for (const m of batch) await queue.delete(m.receipt);
    const mapping = eventSourceMapping(queue, handler);
    await run;
    await mapping.stop();
    const outputsBefore = await readOutput(store.root, 'counts', 0);

    const counted = countingWrites(store);
    const redelivered = batch.map((m) => ({ ...m, receiveCount: m.receiveCount + 1 }));
    expect(await createTaskHandler(wordcount, { store: counted.store })(sqsEvent(redelivered))).toEqual({ batchItemFailures: [] });
    expect(counted.writes).toEqual([]);
    expect(await readOutput(store.root, 'counts', 0)).toEqual(outputsBefore);
  });

  it('reports a task that throws, and leaves its error, with the delivery count SQS gave, where the driver looks', async () => {
    const event = sqsBatchEvent();
    const task = orphanTask();
    event.Records[0]!.body = JSON.stringify({ ...task, partition: 1 });
    // The fixture's second record is a second delivery: ApproximateReceiveCount "2".
    event.Records[1]!.body = JSON.stringify(task);
    const retries = retryRecorder();
    const response = await createTaskHandler(wordcount, { store, queue: retries })(event);
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: event.Records[0]!.messageId }, { itemIdentifier: event.Records[1]!.messageId }]);
    // Back in the queue after a short delay that doubles per delivery, not after the queue's visibility timeout.
    expect(retries.hidden).toEqual([
      [event.Records[0]!.receiptHandle, 5000],
      [event.Records[1]!.receiptHandle, 10000],
    ]);

    const recorded = JSON.parse(Buffer.from((await store.get(keys.taskError(task.scope, task.stage, task.partition)))!).toString());
    expect(recorded).toEqual({ attempt: 0, copy: 0, receiveCount: 2, error: 'Error: lineage record of interval=000042 is missing' });
    const logged = loggedJson(errors.mock.calls)[1]!;
    expect(logged).toMatchObject({ messageId: event.Records[1]!.messageId, receiveCount: 2, scope: 'interval=000042', stage: 'map-r3', partition: 0 });
    expect(logged.message).toBe('task interval=000042 map-r3 partition 0 failed on delivery 2; it is returned to the queue');
  });

  it('settles a task whose error recurs on every delivery at once: recorded for the driver, deleted, and the interval fails naming it', async () => {
    const retries = retryRecorder();
    const handler = createTaskHandler(wordcount, { store, queue: retries });
    const { run, batch } = await intervalWithTasks();
    const failing = run.catch((error: unknown) => error);
    // A copy built from other code: the pipeline fingerprint differs, on this delivery and every later one.
    const [original] = batch;
    const task = JSON.parse(original!.body) as TaskRecord;
    const foreign = { ...original!, body: JSON.stringify({ ...task, fingerprint: 'other-code' }) };
    await queue.delete(original!.receipt);

    expect(await handler(sqsEvent([foreign]))).toEqual({ batchItemFailures: [] });
    expect(retries.hidden).toEqual([]);
    const failure = JSON.parse(Buffer.from((await store.get(keys.taskFailed(task.scope, task.stage, task.partition, task.run!)))!).toString());
    expect(failure).toMatchObject({ stage: task.stage, partition: task.partition, receiveCount: 1, error: expect.stringMatching(/^PipelineMismatchError/) });

    const error = await failing;
    expect(error).toBeInstanceOf(TaskFailedError);
    expect(String(error)).toMatch(/failed on delivery 1 with an error that recurs on every delivery, so it was not retried: PipelineMismatchError/);
    for (const m of batch.slice(1)) await queue.delete(m.receipt);
  });

  it('says why before its invocation runs out of time, so a task that always times out is dead-lettered with its reason', async () => {
    const { run, batch } = await intervalWithTasks();
    // A store as slow as a hung task: each read waits until the test is done looking.
    let release!: () => void;
    const hung = new Promise<void>((resolve) => (release = resolve));
    const slow = Object.create(store) as FsObjectStore;
    slow.get = async (key: string) => (key.startsWith('lineage/') && key.endsWith('record.json') ? (await hung, store.get(key)) : store.get(key));
    const handler = createTaskHandler(wordcount, { store: slow, queue: retryRecorder() });
    const [message] = batch;
    const invocation = handler(sqsEvent([message!]), { getRemainingTimeInMillis: () => 2_050 });
    const task = JSON.parse(message!.body) as TaskRecord;
    const errorKey = keys.taskError(task.scope, task.stage, task.partition);
    while (!(await store.head(errorKey))) await new Promise((r) => setTimeout(r, 10));
    expect(JSON.parse(Buffer.from((await store.get(errorKey))!).toString())).toMatchObject({
      receiveCount: 1,
      error: "Error: the task function's invocation ran out of time after 2050 ms",
    });
    release();
    await invocation;
    // The rest of the batch goes back to the queue, for the interval to finish.
    await queue.delete(message!.receipt);
    for (const m of batch.slice(1)) await queue.changeVisibility(m.receipt, 0);
    const mapping = eventSourceMapping(queue, handler);
    await run;
    await mapping.stop();
  });

  it('fails the whole batch on an envelope that is not an SQS event, naming what is wrong', async () => {
    const handler = createTaskHandler(wordcount, { store });
    await expect(handler({} as never)).rejects.toThrow('not an SQS event: it has no Records array (got {})');
    const event = sqsBatchEvent();
    delete (event.Records[1] as Partial<(typeof event.Records)[number]>).messageId;
    await expect(handler(event)).rejects.toThrow(/SQS event record 1 has no messageId, so its failure could not be reported/);
  });

  it('reads its configuration on the first event, so that an entry module can create it at load without any', async () => {
    vi.stubEnv('DSTREAM_BUCKET', '');
    const handler = createTaskHandler(wordcount);
    await expect(handler(sqsBatchEvent())).rejects.toThrow('environment variable DSTREAM_BUCKET is not set');
  });
});
