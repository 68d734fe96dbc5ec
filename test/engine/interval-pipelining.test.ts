/**
 * Intervals run at once, in order (DriverConfig.maxIntervalsInFlight): interval k+1's stages over
 * its own uploads run while k finishes, its stages reading k's state wait for k's stages, its
 * commit waits for k's, and the outputs are byte for byte those of one interval after another,
 * whatever fails in between.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { StreamingDriver, type IntervalReport } from '../../core/streaming/driver.ts';
import { IntervalPipeline, SharedDeadLetters } from '../../core/streaming/interval-pipeline.ts';
import { queueChangeFeed } from '../../core/ports/change-feed.ts';
import { listAll } from '../../core/ports/object-store.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { intervalScope, keys, partitionOfTaskDone } from '../../core/layout.ts';
import { planFromRecord, readLineageRecord } from '../../core/streaming/lineage.ts';
import { stagesRun } from '../../core/scheduler/stages.ts';
import wordcount from '../../examples/wordcount.ts';
import grep from '../../examples/grep.ts';
import windowedCounts from '../../examples/windowed-counts.ts';
import typedSessions from '../../examples/typed-sessions.ts';
import { sampleLines } from '../../local/sample/generate.ts';
import { outputFiles, removeDir, replayInProcess, testDriverConfig, wordcountRoot } from '../support/stream-harness.ts';

const examples: [string, Pipeline, (k: number) => string][] = [
  ['wordcount', wordcount, (k) => sampleLines(300, 7 + k)],
  ['windowed-counts', windowedCounts, (k) => sampleLines(300, 70 + k)],
  ['grep', grep, (k) => `error code=${k} disk\ninfo fine\nerror code=${k + 1} net\nwarn code=9\n`.repeat(20)],
  ['typed-sessions', typedSessions, (k) => `ann buy ${100 * (k + 1)}\nbob view 0\ncat buy 250\n`.repeat(10)],
];

/** Six intervals, one of them without uploads. */
const intervalsOf = (text: (k: number) => string) => [0, 1, 2, 3, 4, 5].map((k): Record<string, string> => (k === 3 ? {} : { 'u.txt': text(k) }));

describe('intervals in flight', () => {
  it.each(examples)('%s: replayed with 1 and with 2 intervals in flight, the output files are byte-identical', async (_name, pipeline, text) => {
    const one = await replayInProcess(pipeline, intervalsOf(text), { maxIntervalsInFlight: 1 });
    const two = await replayInProcess(pipeline, intervalsOf(text), { maxIntervalsInFlight: 2 });
    try {
      expect(two.reports.map((r) => r.interval)).toEqual([0, 1, 2, 3, 4, 5]);
      expect(two.reports.map((r) => r.outputs)).toEqual(one.reports.map((r) => r.outputs));
      // No earlier interval's state or window was recomputed because it had not finished yet.
      expect(two.reports.flatMap((r) => r.recoveredIntervals)).toEqual([]);
      expect(await two.files()).toEqual(await one.files());
    } finally {
      await removeDir(path.dirname(one.root));
      await removeDir(path.dirname(two.root));
    }
  }, 60_000);

  it('a bound outside 1 to 16 is refused when the runtime opens', async () => {
    await expect(replayInProcess(wordcount, [{}], { maxIntervalsInFlight: 0 })).rejects.toThrow('--intervals-in-flight must be a whole number from 1 to 16, got 0');
  });
});

/** A root with wordcount uploads for `intervals` intervals, tasks run in this process, two intervals in flight. */
async function setup(intervals: number) {
  const env = await wordcountRoot(intervals, testDriverConfig({ inputPartitions: 3, maxIntervalsInFlight: 2 }));
  /** Runs intervals from..to-1 through a pipeline, as the runtimes' loops do; the reports in commit order. */
  const run = async (d: StreamingDriver, from: number, to: number) => {
    const reports: IntervalReport[] = [];
    const intervals = new IntervalPipeline(d, (r) => reports.push(r));
    for (let k = from; k < to; k++) await intervals.start(k);
    await intervals.drain();
    return reports;
  };
  return { ...env, run };
}

/** The ids of interval k's stages that read its state of k-1 (the stateful reduce side), and of the rest. */
async function stagesOf(store: FsObjectStore, k: number) {
  const plan = planFromRecord(wordcount, (await readLineageRecord(store, k))!);
  const run = stagesRun(plan.stages);
  const stateful = run.filter((s) => s.storedReads.some((r) => !r.location.includes(intervalScope(k)))).map((s) => s.id);
  return { stateful, rest: run.map((s) => s.id).filter((id) => !stateful.includes(id)) };
}

const doneTasks = async (store: FsObjectStore, k: number, stage: string) =>
  (await listAll(store, keys.taskDonePrefix(intervalScope(k), stage))).filter((o) => partitionOfTaskDone(o.key) !== undefined).length;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('an interval run while the one before it is in flight', () => {
  it("runs its map stage while the one before it has not finished its stages, its state stage only after, and commits after it", async () => {
    const expected = await (async () => {
      const env = await setup(2);
      try {
        for (let k = 0; k < 2; k++) await env.driver().runInterval(k);
        return await outputFiles(env.root);
      } finally {
        await env.close();
        await removeDir(env.root);
      }
    })();
    const env = await setup(2);
    try {
      const seen: string[] = [];
      let heldOnce = false;
      const driver = env.driver({
        step: async (step, k) => {
          seen.push(`${step} ${k}`);
          // Interval 0's scheduler stops looking (its tasks run on) until interval 1's map stage is done.
          if (step === 'mid-stage' && k === 0 && !heldOnce) {
            heldOnce = true;
            const { rest, stateful } = await waitFor(async () => (await readLineageRecord(env.store, 1)) && stagesOf(env.store, 1));
            for (const stage of rest) await waitFor(async () => (await doneTasks(env.store, 1, stage)) > 0);
            await sleep(100);
            // Interval 0 has not seen its stages done: interval 1's stateful stage has sent nothing.
            for (const stage of stateful) expect(await doneTasks(env.store, 1, stage)).toBe(0);
          }
        },
      });
      const reports = await env.run(driver, 0, 2);
      expect(heldOnce).toBe(true);
      expect(reports.map((r) => r.interval)).toEqual([0, 1]);
      expect(seen.indexOf('committed 1')).toBeGreaterThan(seen.indexOf('committed 0'));
      expect(reports.flatMap((r) => r.recoveredIntervals)).toEqual([]);
      expect(await outputFiles(env.root)).toEqual(expected);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  }, 60_000);

  it("hands on each interval's report once its commit record is written, before the pointer moves past it, and in interval order", async () => {
    const env = await setup(3);
    try {
      const reports: IntervalReport[] = [];
      const handedOnBeforeStep: number[] = [];
      // The 'committed' step comes after the pointer has moved and garbage was collected.
      const driver = env.driver({ step: async (step, k) => void (step === 'committed' && reports.some((r) => r.interval === k) && handedOnBeforeStep.push(k)) });
      const intervals = new IntervalPipeline(driver, (r) => reports.push(r));
      for (let k = 0; k < 3; k++) await intervals.start(k);
      await intervals.drain();
      expect(reports.map((r) => r.interval)).toEqual([0, 1, 2]);
      expect(handedOnBeforeStep).toEqual([0, 1, 2]);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  }, 60_000);

  it('does not commit when the one before it fails; a new driver resumes both from their lineage, reusing what was done, with the same outputs', async () => {
    const expected = await (async () => {
      const env = await setup(3);
      try {
        for (let k = 0; k < 3; k++) await env.driver().runInterval(k);
        return await outputFiles(env.root);
      } finally {
        await env.close();
        await removeDir(env.root);
      }
    })();
    const env = await setup(3);
    try {
      // The driver dies as interval 0 is about to write its outputs' _SUCCESS, once interval 1 has run its stages.
      class Died extends Error {}
      const doomed = env.driver({
        step: async (step, k) => {
          if (step === 'stages-done' && k === 0) await waitFor(async () => (await readLineageRecord(env.store, 1)) !== undefined);
          if (step === 'stages-done' && k === 1) expect(await env.store.head(keys.committed(intervalScope(0)))).toBeUndefined();
          if (step === 'outputs-committed' && k === 0) {
            await waitFor(async () => (await Promise.all((await stagesOf(env.store, 1)).rest.map((s) => doneTasks(env.store, 1, s)))).every((n) => n > 0));
            throw new Died();
          }
        },
      });
      await expect(env.run(doomed, 0, 3)).rejects.toBeInstanceOf(Died);
      // Neither interval committed, and interval 2 was never started: the pipeline stopped at the failure.
      for (const k of [0, 1]) expect(await env.store.head(keys.committed(intervalScope(k)))).toBeUndefined();
      expect(await readLineageRecord(env.store, 2)).toBeUndefined();

      const reports = await env.run(env.driver(), 0, 3);
      expect(reports.map((r) => r.interval)).toEqual([0, 1, 2]);
      // Interval 1's tasks done before the failure were not run again.
      expect(reports[1]!.tasksSkipped).toBeGreaterThan(0);
      expect(await outputFiles(env.root)).toEqual(expected);
    } finally {
      await env.close();
      await removeDir(env.root);
    }
  }, 60_000);
});

describe('what the schedulers of intervals in flight share', () => {
  it('one long poll of the events queue wakes every waiter, whichever the notice was for', async () => {
    let receives = 0;
    let deliver!: () => void;
    const feed = queueChangeFeed({
      receive: async () => {
        receives++;
        await new Promise<void>((resolve) => (deliver = resolve));
        return [{ id: '1', body: '{}', receipt: 'r1', receiveCount: 1 }];
      },
      delete: async () => {},
    });
    const woken: string[] = [];
    const a = feed.waitForChange(5000).then(() => woken.push('a'));
    const b = feed.waitForChange(5000).then(() => woken.push('b'));
    deliver();
    await Promise.all([a, b]);
    expect(receives).toBe(1);
    expect(woken.sort()).toEqual(['a', 'b']);
  });

  it('every dead letter reaches every scheduler, whichever drained it from the queue', async () => {
    const letter = { id: 'l1', body: 'task', receiveCount: 4 };
    let queued = [letter];
    const queue = { drainDeadLetters: async () => queued.splice(0) } as unknown as ConstructorParameters<typeof SharedDeadLetters>[0];
    const shared = new SharedDeadLetters(queue);
    const first = shared.reader();
    const second = shared.reader();
    expect(await first.drainDeadLetters(10)).toEqual([letter]);
    expect(await second.drainDeadLetters(10)).toEqual([letter]);
    queued = [];
    expect(await second.drainDeadLetters(10)).toEqual([]);
  });
});

async function waitFor<T>(check: () => Promise<T | undefined | false>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error('timed out waiting');
    await sleep(5);
  }
}
