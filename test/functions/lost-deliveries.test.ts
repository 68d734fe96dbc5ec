/**
 * A task invocation that dies before the task writes its start marker (an init crash, out of
 * memory, throttling) leaves its message hidden for the queue's visibility timeout, half an hour
 * on AWS. The driver sends such a task again as a copy once it is past a deadline drawn from the
 * stage's start latencies, in stages of any size, and the interval commits without waiting.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import path from 'node:path';
import type { SQSEvent } from 'aws-lambda';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { StreamingDriver, type DriverConfig } from '../../core/streaming/driver.ts';
import { admitUpload } from '../../core/streaming/intake.ts';
import { defaultSchedulerOptions } from '../../core/scheduler/dag-scheduler.ts';
import { systemClock } from '../../core/ports/clock.ts';
import type { TaskRecord, TaskDone } from '../../core/exec/task.ts';
import { keys } from '../../core/layout.ts';
import { definePipeline } from '../../core/index.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import wordcount from '../../examples/wordcount.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { readOutput, readTextOutput, removeDir, tempDir } from '../support/stream-harness.ts';
import { eventSourceMapping } from './support.ts';

/** The queue's visibility timeout on AWS: a lost delivery comes back only after this. */
const VISIBILITY_MS = 30 * 60_000;

// Real time: start markers are dated by the store's clock. A short floor keeps the test quick.
const config: DriverConfig = {
  intervalMs: 1000,
  inputPartitions: 2,
  maxSplitBytes: 1 << 20,
  scheduler: { ...defaultSchedulerOptions, pollMs: 10, unstarted: { enabled: true, multiplier: 4, minMs: 300 } },
  retainIntervals: 2,
};

const upper = definePipeline({ name: 'upper', partitions: 1 }, (ctx) => {
  ctx
    .textStream()
    .map((line) => line.toUpperCase())
    .saveAsTextFiles('upper');
});

let base: string;
let store: FsObjectStore;
let queue: FsTaskQueue;

beforeEach(async () => {
  base = await tempDir();
  store = new FsObjectStore(path.join(base, 'bucket'));
  queue = new FsTaskQueue({ dir: path.join(base, 'queue'), maxReceives: 5 });
  vi.spyOn(console, 'error').mockImplementation(() => {});
});

afterEach(async () => {
  vi.restoreAllMocks();
  await queue.close();
  await removeDir(base);
});

/**
 * Runs interval 0 with the task function behind the event source mapping, except that the first
 * delivery of the task `lose` picks dies before the task starts: nothing runs, and the message
 * stays hidden for the visibility timeout.
 */
async function runLosingFirstDelivery(pipeline: Pipeline, text: string, inputPartitions: number, lose: (task: TaskRecord) => boolean) {
  await store.put('incoming/input.txt', text);
  await admitUpload(store, { key: 'incoming/input.txt', name: 'input.txt', size: Buffer.byteLength(text) }, 0);
  const tasks = createTaskHandler(pipeline, { store, queue, maxTaskAttempts: 5 });
  const lost: TaskRecord[] = [];
  const mapping = eventSourceMapping(queue, async (event: SQSEvent) => {
    const record = event.Records.find((r) => lost.length === 0 && lose(JSON.parse(r.body) as TaskRecord));
    if (!record) return tasks(event);
    lost.push(JSON.parse(record.body) as TaskRecord);
    await queue.changeVisibility(record.receiptHandle, VISIBILITY_MS);
    const rest = await tasks({ Records: event.Records.filter((r) => r !== record) });
    return { batchItemFailures: [{ itemIdentifier: record.messageId }, ...rest.batchItemFailures] };
  });
  const started = Date.now();
  try {
    const report = await new StreamingDriver(pipeline, { store, queue, clock: systemClock }, { ...config, inputPartitions }).runInterval(0);
    return { report, lost, elapsedMs: Date.now() - started };
  } finally {
    await mapping.stop();
  }
}

const completion = async (task: TaskRecord) =>
  JSON.parse(Buffer.from((await store.get(keys.taskDone(task.scope, task.stage, task.partition)))!).toString()) as TaskDone;

describe('a task whose delivery dies before it starts', () => {
  it('gets a copy within the deadline, and the interval commits, in a stage of several tasks', async () => {
    const { report, lost, elapsedMs } = await runLosingFirstDelivery(wordcount, 'a b a\nc a b\n'.repeat(50), 2, (t) => t.stage.startsWith('result-'));
    expect(lost).toHaveLength(1);
    expect(await store.head(keys.committed('interval=000000'))).toBeDefined();
    expect((await readOutput(store.root, 'counts', 0))?.sort()).toEqual([['a', 150], ['b', 100], ['c', 50]]);
    // The copy ran it, long before the lost delivery could have come back.
    expect((await completion(lost[0]!)).copy).toBe(1);
    expect(report.unstartedResent).toBe(1);
    expect(report.speculative).toBe(0);
    expect(elapsedMs).toBeLessThan(VISIBILITY_MS);
  });

  it('gets a copy in a stage of a single task, which speculation never copies', async () => {
    const { report, lost } = await runLosingFirstDelivery(upper, 'quiet\nlouder\n', 1, () => true);
    expect(lost.map((t) => t.stage)).toEqual(['out-upper']);
    const record = JSON.parse(Buffer.from((await store.get(keys.lineageRecord('interval=000000')))!).toString()) as { stages: { id: string; tasks: number }[] };
    expect(record.stages).toEqual([expect.objectContaining({ id: 'out-upper', tasks: 1 })]);
    expect(await store.head(keys.committed('interval=000000'))).toBeDefined();
    expect(await readTextOutput(store.root, 'upper', 0)).toEqual(['QUIET', 'LOUDER']);
    expect((await completion(lost[0]!)).copy).toBe(1);
    expect(report.unstartedResent).toBe(1);
  });
});
