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
import { readLineageRecord } from '../../core/streaming/lineage.ts';
import { defaultSchedulerOptions, TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { QueueMessage } from '../../core/ports/task-queue.ts';
import { keys, parseTaskStarted, partitionOfTaskDone } from '../../core/layout.ts';
import { listAll } from '../../core/ports/object-store.ts';
import type { TaskRecord } from '../../core/exec/task.ts';
import type { StageSpec } from '../../core/scheduler/stages.ts';
import wordcount from '../../examples/wordcount.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { readOutput, removeDir, tempDir } from '../support/stream-harness.ts';
import { countingWrites, eventSourceMapping, logged, sqsBatchEvent, sqsEvent } from './support.ts';

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
  await admitUpload(store, { key: 'incoming/words.txt', name: 'words.txt', size: Buffer.byteLength(text) }, 0);
  const driver = new StreamingDriver(wordcount, { store, queue, clock: systemClock }, config);
  const run = driver.runInterval(0);
  const batch: QueueMessage[] = [];
  while (batch.length === 0) batch.push(...(await queue.receive(10, 60_000, 1000)));
  return { run, batch };
}

/** Stands in for the queue: records the retry delays the handler asks for and the messages it dead-letters. */
function retryRecorder() {
  const hidden: [string, number][] = [];
  const deadLettered: [string, number, string][] = [];
  return {
    hidden,
    deadLettered,
    changeVisibility: async (receipt: string, ms: number) => void hidden.push([receipt, ms]),
    deadLetter: async (m: QueueMessage, reason: string) => void deadLettered.push([m.id, m.receiveCount, reason]),
  };
}

/** The store, but reading uploads fails as S3 does under a burst of throttling: every task that reads one throws. */
function throttledUploads(): FsObjectStore {
  const throttled = Object.create(store) as FsObjectStore;
  throttled.getRange = (key, start, end) => {
    if (key.startsWith('incoming/')) throw new Error('SlowDown: Please reduce your request rate.');
    return store.getRange(key, start, end);
  };
  return throttled;
}

/** A real map task of interval 0, as the driver sent it, and the interval left running. */
async function mapTaskMessage() {
  const { run, batch } = await intervalWithTasks();
  const message = batch.find((m) => (JSON.parse(m.body) as TaskRecord).stage.startsWith('map-'))!;
  return { run, batch, message, task: JSON.parse(message.body) as TaskRecord };
}

/** Lets the interval's tasks run to its commit. */
async function finish(run: Promise<unknown>, batch: QueueMessage[]): Promise<void> {
  for (const m of batch) await queue.changeVisibility(m.receipt, 0);
  const mapping = eventSourceMapping(queue, createTaskHandler(wordcount, { store, queue, maxTaskAttempts: 3 }));
  await run;
  await mapping.stop();
}

describe('task handler', () => {
  it('runs real tasks, and dead-letters bodies that are not tasks at once, with the reason, instead of retrying them', async () => {
    const recorder = retryRecorder();
    const handler = createTaskHandler(wordcount, { store, queue: recorder, maxTaskAttempts: 5 });
    const { run, batch } = await intervalWithTasks();
    const junk = [
      { id: 'junk-1', body: 'not json at all', receipt: 'r1', receiveCount: 1 },
      { id: 'junk-2', body: '{"hello":"world"}', receipt: 'r2', receiveCount: 3 },
    ];
    const response = await handler(sqsEvent([junk[0]!, ...batch, junk[1]!]));
    expect(response).toEqual({ batchItemFailures: [] });
    expect(recorder.hidden).toEqual([]);
    expect(recorder.deadLettered).toEqual([
      ['junk-1', 1, 'InvalidTaskMessageError: task message is not JSON: not json at all'],
      ['junk-2', 3, expect.stringMatching(/^InvalidTaskMessageError: not a dstream task record: field "hello" is not part of a task message/)],
    ]);
    for (const m of batch) await queue.delete(m.receipt);

    // The tasks of the batch completed: the interval finishes with the rest of its tasks.
    const mapping = eventSourceMapping(queue, handler);
    await run;
    await mapping.stop();
    expect((await readOutput(store.root, 'counts', 0))?.sort()).toEqual([['a', 3], ['b', 2], ['c', 1]]);

    const records = logged(errors.mock.calls);
    expect(records.map((l) => [l.messageId, l.receiveCount, l.msg])).toEqual([
      ['junk-1', 1, 'message junk-1 is not a dstream task; it is dead-lettered at once'],
      ['junk-2', 3, 'message junk-2 is not a dstream task; it is dead-lettered at once'],
    ]);
    expect(String(records[0]!.error)).toMatch(/task message is not JSON/);
  });

  it('records the Lambda execution environment that ran each task, for the UI\'s task timeline', async () => {
    vi.stubEnv('AWS_LAMBDA_LOG_STREAM_NAME', '2026/12/01/[$LATEST]0123456789abcdef');
    const { run, batch } = await intervalWithTasks();
    await finish(run, batch);
    vi.unstubAllEnvs();

    const done = (await listAll(store, 'lineage/interval=000000/tasks/')).filter((info) => partitionOfTaskDone(info.key) !== undefined);
    expect(done.length).toBeGreaterThan(0);
    for (const { key } of done) expect(JSON.parse(Buffer.from((await store.get(key))!).toString('utf8')).executor).toBe('lambda-01234567');
  });

  it('runs a redelivered task whose completion record exists as a no-op: nothing in the store changes', async () => {
    const handler = createTaskHandler(wordcount, { store });
    const { run, batch } = await intervalWithTasks();
    expect(await handler(sqsEvent(batch))).toEqual({ batchItemFailures: [] });
    for (const m of batch) await queue.delete(m.receipt);
    const mapping = eventSourceMapping(queue, handler);
    await run;
    await mapping.stop();
    const outputsBefore = await readOutput(store.root, 'counts', 0);
    const objectsBefore = await listAll(store, '');

    const counted = countingWrites(store);
    const redelivered = batch.map((m) => ({ ...m, receiveCount: m.receiveCount + 1 }));
    expect(await createTaskHandler(wordcount, { store: counted.store })(sqsEvent(redelivered))).toEqual({ batchItemFailures: [] });
    // Its one write is its start marker, made with the look for its completion record: the first
    // delivery left it, and it is created only if absent.
    expect(counted.writes.length).toBe(batch.length);
    expect(counted.writes.every((key) => parseTaskStarted(key) !== undefined)).toBe(true);
    expect(await listAll(store, '')).toEqual(objectsBefore);
    expect(await readOutput(store.root, 'counts', 0)).toEqual(outputsBefore);
  });

  it('reports a task that throws, and leaves its error, with the delivery count SQS gave, where the driver looks', async () => {
    const { run, batch, message, task } = await mapTaskMessage();
    const retries = retryRecorder();
    const handler = createTaskHandler(wordcount, { store: throttledUploads(), queue: retries, maxTaskAttempts: 5 });
    const response = await handler(sqsEvent([{ ...message, receiveCount: 2 }]));
    expect(response.batchItemFailures).toEqual([{ itemIdentifier: message.id }]);
    // Back in the queue after a short delay that doubles per delivery, not after the queue's visibility timeout.
    expect(retries.hidden).toEqual([[message.receipt, 10000]]);
    expect(retries.deadLettered).toEqual([]);

    const recorded = JSON.parse(Buffer.from((await store.get(keys.taskError(task.scope, task.stage, task.partition)))!).toString());
    expect(recorded).toEqual({ attempt: 0, copy: 0, receiveCount: 2, error: 'Error: SlowDown: Please reduce your request rate.' });
    const record = logged(errors.mock.calls)[0]!;
    expect(record).toMatchObject({ messageId: message.id, receiveCount: 2, scope: 'interval=000000', stage: task.stage, partition: task.partition });
    expect(record.msg).toBe(`task interval=000000 ${task.stage} partition ${task.partition} failed on delivery 2; it is returned to the queue`);
    await finish(run, batch);
  });

  it('acknowledges a task planned before its interval was rerun to quarantine (dstream quarantine), writing nothing', async () => {
    const { run, batch, task } = await mapTaskMessage();
    const counted = countingWrites(store);
    const recorder = retryRecorder();
    const handler = createTaskHandler(wordcount, { store: counted.store, queue: recorder, maxTaskAttempts: 5 });
    const stale = { id: 'stale', body: JSON.stringify({ ...task, planHash: 'an-older-plan' }), receipt: 'r', receiveCount: 1 };
    expect(await handler(sqsEvent([stale]))).toEqual({ batchItemFailures: [] });
    expect(counted.writes).toEqual([]);
    expect(recorder.deadLettered).toEqual([]);
    await finish(run, batch);
  });

  it('dead-letters a task that fails its last allowed delivery at once, with its error, rather than after its visibility timeout', async () => {
    const { run, batch, message, task } = await mapTaskMessage();
    const recorder = retryRecorder();
    const handler = createTaskHandler(wordcount, { store: throttledUploads(), queue: recorder, maxTaskAttempts: 3 });
    // Not reported: the event source mapping deletes the original, now in the dead-letter queue.
    expect(await handler(sqsEvent([{ ...message, receiveCount: 3 }]))).toEqual({ batchItemFailures: [] });
    expect(recorder.hidden).toEqual([]);
    expect(recorder.deadLettered).toEqual([
      [message.id, 3, 'failed its last allowed delivery (3 of 3): Error: SlowDown: Please reduce your request rate.'],
    ]);
    expect(logged(errors.mock.calls)[0]!.msg).toBe(`task interval=000000 ${task.stage} partition ${task.partition} failed on delivery 3; it is dead-lettered at once`);
    await finish(run, batch);
  });

  it('refuses a forged message before writing anything, names why, and settles it at once', async () => {
    const { run, batch, task } = await mapTaskMessage();
    await store.put('output/elsewhere/victim', 'committed');
    // An output task as the driver would send it once the map stage is done: it reads a shuffle.
    const record = (await readLineageRecord(store, 0))!;
    const mapStage = record.stages.find((st) => st.id === task.stage)!;
    const outStage = record.stages.find((st) => st.kind === 'result' && st.parents.length > 0)!;
    const shuffle = (record.stages.find((st) => st.id === outStage.parents[0]) as Extract<StageSpec, { kind: 'shuffle-map' }>).rdd;
    const blocks = Array.from({ length: record.stages.find((st) => st.id === outStage.parents[0])!.tasks }, (_, m): [string, number, number] => [keys.shuffleMap(task.scope, shuffle, m), 0, 10]);
    const outputTask: TaskRecord = { ...task, stage: outStage.id, shuffleInputs: { [shuffle]: blocks } };
    const forged: [string, unknown, RegExp][] = [
      ['an output of its choosing', { ...task, kind: 'output', rdd: 'r1', output: { name: 'elsewhere', format: 'text' } }, /field "kind" is not part of a task message; a task takes what it computes and writes from its scope's lineage record/],
      ['a location of its choosing', { ...task, location: 'output/elsewhere' }, /field "location" is not part of a task message/],
      ['a stage the lineage does not have', { ...task, stage: 'out-elsewhere' }, /stage out-elsewhere partition 0: the lineage record has no such stage \(its stages: .*map-/],
      ['a partition beyond its stage', { ...task, partition: mapStage.tasks }, new RegExp(`partition ${mapStage.tasks}: the stage has ${mapStage.tasks} tasks, numbered from 0`)],
      ['a scope that is no scope', { ...task, scope: 'interval=000000/../../output' }, /scope must be interval=<6\+ digits> or batch=<name>/],
      ['a scope with no lineage', { ...task, scope: 'interval=000042' }, /its scope has no lineage record/],
      ['a negative attempt', { ...task, attempt: -1 }, /attempt must be a non-negative integer, got -1/],
      ['a copy that is no integer', { ...task, copy: 0.5 }, /copy must be a non-negative integer, got 0.5/],
      ['other code', { ...task, fingerprint: 'f0rged' }, /it is for pipeline wordcount \(fingerprint f0rged\), but this worker runs wordcount/],
      ['a record stored anywhere', { ref: 'output/elsewhere/victim' }, /a task message by reference must be exactly/],
      ['blocks of a shuffle its stage does not read', { ...task, shuffleInputs: { r9: [['output/elsewhere/victim', 0, 9]] } }, /it lists blocks of shuffle r9, which this task does not read/],
      ['no blocks of the shuffle it reads', { ...outputTask, shuffleInputs: {} }, new RegExp(`it lists no blocks of shuffle ${shuffle}, which this task reads`)],
      ['a block that is no map output', { ...outputTask, shuffleInputs: { [shuffle]: [['output/elsewhere/victim', 0, 10], ...blocks.slice(1)] } }, new RegExp(`block 0 of shuffle ${shuffle} must be read from cache/interval=000000/shuffle/${shuffle}/map-00000, not "output/elsewhere/victim"`)],
      ['a block range backwards', { ...outputTask, shuffleInputs: { [shuffle]: [[blocks[0]![0], 5, 1], ...blocks.slice(1)] } }, /must be a list of \[key, start, end\] with 0 <= start <= end/],
      ['blocks of map tasks that do not exist', { ...outputTask, shuffleInputs: { [shuffle]: [...blocks, [keys.shuffleMap(task.scope, shuffle, blocks.length), 0, 1]] } }, new RegExp(`shuffle ${shuffle} has ${blocks.length} map outputs, the message lists ${blocks.length + 1}`)],
    ];

    const counted = countingWrites(store);
    const recorder = retryRecorder();
    const handler = createTaskHandler(wordcount, { store: counted.store, queue: recorder, maxTaskAttempts: 5 });
    const messages = forged.map(([, body], i) => ({ id: `forged-${i}`, body: JSON.stringify(body), receipt: `r${i}`, receiveCount: 1 }));
    expect(await handler(sqsEvent(messages))).toEqual({ batchItemFailures: [] });

    // No start marker, no error record, no output: not one write.
    expect(counted.writes).toEqual([]);
    expect(Buffer.from((await store.get('output/elsewhere/victim'))!).toString()).toBe('committed');
    expect(recorder.deadLettered.map(([id]) => id)).toEqual(messages.map((m) => m.id));
    recorder.deadLettered.forEach(([, , reason], i) => {
      expect(reason, forged[i]![0]).toMatch(/^InvalidTaskMessageError: /);
      expect(reason, forged[i]![0]).toMatch(forged[i]![2]);
    });
    await finish(run, batch);
  });

  it('dead-letters a copy built from other code at once, with the reason, and the interval fails naming it', async () => {
    const handler = createTaskHandler(wordcount, { store, queue });
    const { run, batch } = await intervalWithTasks();
    const failing = run.catch((error: unknown) => error);
    // The same delivery, as if the sender ran other code: the fingerprint differs on every delivery.
    const [original] = batch;
    const task = JSON.parse(original!.body) as TaskRecord;
    const foreign = { ...original!, body: JSON.stringify({ ...task, fingerprint: 'other-code' }) };

    expect(await handler(sqsEvent([foreign]))).toEqual({ batchItemFailures: [] });
    expect(await store.head(keys.taskError(task.scope, task.stage, task.partition))).toBeUndefined();
    const error = await failing;
    expect(error).toBeInstanceOf(TaskFailedError);
    expect(String(error)).toMatch(/dead-lettered: InvalidTaskMessageError: .*fingerprint other-code/);
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
