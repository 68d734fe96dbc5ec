/**
 * A query beside a running stream sees a consistent set of committed intervals: while a stream
 * commits interval after interval on a root, every answer counts whole committed intervals only,
 * never the parts of an interval still being written, and answers never go back in time.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { definePipeline } from '../../core/index.ts';
import { EmbeddedRuntime } from '../../local/runtime/embedded-runtime.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { QuerySession } from '../../local/shell/session.ts';
import { removeDir, stage, tempDir } from '../support/stream-harness.ts';

const pipeline = definePipeline({ name: 'live-queried', partitions: 3 }, (ctx) => {
  ctx.textStream().map((w) => [w, 1] as const).reduceByKey((a, b) => a + b).saveAsJsonFiles('counts');
});

/** Interval k holds k + 3 distinct words, so the records committed after interval k tell k apart. */
const INTERVALS = 14;
const wordsOf = (k: number) => Array.from({ length: k + 3 }, (_, i) => `w${k}-${i}`);
const committedAfter = (k: number) => Array.from({ length: k + 1 }, (_, j) => wordsOf(j).length).reduce((a, b) => a + b, 0);

it('counts only whole committed intervals while the stream commits more', async () => {
  const base = await tempDir();
  try {
    const staged = await stage(path.join(base, 'staged'), Array.from({ length: INTERVALS }, (_, k) => ({ 'u.txt': wordsOf(k).join('\n') + '\n' })));
    const root = path.join(base, 'root');
    const runtime = await EmbeddedRuntime.open({ pipelinePath: 'in-process', inProcess: pipeline, root, workers: 2, scheduler: { pollMs: 2 } });
    // The stream commits its first interval before the queries begin: a query needs one.
    const streaming = runtime.replay(staged).finally(() => runtime.close());
    const session = new QuerySession({ store: new FsObjectStore(root), workers: 1 });
    let done = false;
    void streaming.then(() => (done = true), () => (done = true));
    const answers: number[] = [];
    while (!done) {
      // None committed yet: nothing to ask about.
      if (!(await session.sc.intervals())) {
        await sleep(5);
        continue;
      }
      answers.push(await session.sc.output('counts').count());
    }
    await streaming;

    const whole = new Set(Array.from({ length: INTERVALS }, (_, k) => committedAfter(k)));
    expect(answers.length).toBeGreaterThan(1);
    expect(answers.filter((n) => !whole.has(n))).toEqual([]);
    expect(answers).toEqual([...answers].sort((a, b) => a - b));
    expect(await session.sc.output('counts').count()).toBe(committedAfter(INTERVALS - 1));
  } finally {
    await removeDir(base);
  }
}, 120_000);
