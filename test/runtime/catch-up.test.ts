/**
 * After downtime the live runtime runs the intervals it missed back to back, in order, and an
 * interval with no upload commits without tasks whatever holds no record: the outputs are those
 * of running every interval on time, with every task, byte for byte.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EmbeddedRuntime } from '../../local/runtime/embedded-runtime.ts';
import wordcount from '../../examples/wordcount.ts';
import { outputFiles, removeDir, replayInProcess, tempDir } from '../support/stream-harness.ts';

const intervalMs = 2_000;
const missed = 25;

let base: string;
beforeEach(async () => {
  base = await tempDir();
});
afterEach(async () => {
  await removeDir(base);
});

/** Moves a file into incoming/ with a rename, as an atomic upload. */
async function upload(root: string, name: string, text: string): Promise<void> {
  await mkdir(path.join(root, 'incoming'), { recursive: true });
  await writeFile(path.join(base, name), text);
  await rename(path.join(base, name), path.join(root, 'incoming', name));
}

describe('a live stream down for many intervals', () => {
  it('catches them up in order, with the outputs of running each on time, and no more tasks than on time', async () => {
    // A clock the test moves: sleeping moves it on, and the downtime jumps it.
    let now = 1_000_000;
    const clock = { now: () => now, sleep: async (ms: number) => void (now += ms) };
    const root = path.join(base, 'root');
    const open = () => EmbeddedRuntime.open({ pipelinePath: 'wordcount.ts', inProcess: wordcount, root, workers: 1, partitions: 2, intervalMs, clock });

    let runtime = await open();
    await upload(root, 'a.txt', 'to be or not to be\n');
    const [first] = await runtime.live({ intervals: 1 });
    await runtime.close();
    // Down for `missed` intervals; an upload arrives meanwhile, into the interval open when the stream is back.
    now += missed * intervalMs;
    await upload(root, 'b.txt', 'to see\n');
    runtime = await open();
    // Until b's interval commits (catching up takes time too, in which intervals go on opening).
    const stop = new AbortController();
    const reports = await runtime.live({ signal: stop.signal, intervals: 10 * missed, onInterval: (r) => r.uploads > 0 && stop.abort() });
    await runtime.close();

    // Every interval once, in order, b in one opened after the restart, all before it empty.
    const all = [first!, ...reports];
    expect(all.map((r) => r.interval)).toEqual(all.map((_, k) => k));
    const withB = all.length - 1;
    expect(withB).toBeGreaterThan(missed);
    const caughtUp = all.slice(1, withB);
    expect(caughtUp.every((r) => r.uploads === 0)).toBe(true);

    const onTime = await replayInProcess(
      wordcount,
      all.map((_, k): Record<string, string> => (k === 0 ? { 'a.txt': 'to be or not to be\n' } : k === withB ? { 'b.txt': 'to see\n' } : {})),
      { partitions: 2, runEmptyStages: true },
    );
    try {
      // The interval after b's was in flight when the run stopped: stopped before its commit, its
      // part files (no _SUCCESS) stay for the run that resumes it, as after a crash.
      const upToB = (files: Map<string, string>) => new Map([...files].filter(([key]) => Number(/interval=(\d+)/.exec(key)?.[1]) <= withB));
      expect(upToB(await outputFiles(root))).toEqual(await onTime.files());
      // The state still runs every interval (update is called for every key, as Spark's), in the
      // one reduce stage that also writes the empty counts and the totals: no more tasks than on time.
      for (const r of caughtUp) {
        expect(r.outputs).toEqual({ counts: 0, totals: 4 });
        expect(r.tasks).toBeLessThanOrEqual(onTime.reports[r.interval]!.tasks);
      }
    } finally {
      await removeDir(path.dirname(onTime.root));
    }
  }, 120_000);
});
