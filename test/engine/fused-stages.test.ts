/**
 * The reduce side is one stage, as Spark's result stage: every output and persisted RDD after the
 * same shuffle, over the same partitions, is written by one task per partition in one pass. A
 * persisted partition lost later is rebuilt by a stage that writes it alone (what the reduce
 * stage's other sinks read may be lost too), and the outputs stay as they were.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { readLineageRecord } from '../../core/streaming/lineage.ts';
import { keys } from '../../core/layout.ts';
import { stageIds } from '../../core/scheduler/stages.ts';
import { definePipeline } from '../../core/index.ts';
import wordcount from '../../examples/wordcount.ts';
import { bag, outputFiles, removeDir, replayInProcess } from '../support/stream-harness.ts';

const intervals = Array.from({ length: 4 }, (_, k) => ({ 'u.txt': `the cat ${k}\nthe dog\n${'ab '.repeat(k)}\n` }));

describe('WordCount after the shuffle', () => {
  it('runs an interval in two stages: the map, and one reduce stage writing counts, the state and totals', async () => {
    const run = await replayInProcess(wordcount, intervals.slice(0, 2));
    try {
      const record = (await readLineageRecord(new FsObjectStore(run.root), 1))!;
      const stages = record.stages.map((s) => (s.kind === 'shuffle-map' ? ['shuffle-map', s.tasks] : ['result', s.tasks, s.sinks.map((k) => (k.kind === 'output' ? k.output.name : 'state'))]));

      expect(stages).toEqual([
        ['shuffle-map', 4],
        ['result', 4, ['state', 'counts', 'totals']],
      ]);
      expect(record.stages[1]!.parents).toEqual([record.stages[0]!.id]);
      expect(bag(await run.output('totals', 1))).toEqual(bag([['the', 4], ['cat', 2], ['0', 1], ['1', 1], ['dog', 2], ['ab', 1]]));
      expect(run.reports[1]!.outputs).toEqual({ counts: 5, totals: 6 });
    } finally {
      await removeDir(path.dirname(run.root));
    }
  });

  it('rebuilds a lost state partition by a stage of its own, and leaves the outputs byte for byte as they were', async () => {
    const clean = await replayInProcess(wordcount, intervals);
    const lost = await replayInProcess(wordcount, intervals.slice(0, 3));
    try {
      const store = new FsObjectStore(lost.root);
      const record = (await readLineageRecord(store, 2))!;
      const state = record.persists[0]!.location;
      const reduceStage = record.stages[1]!.id;
      const part = keys.persisted(state, 1);
      const written = await store.get(part);
      const outputsBefore = await lost.files();
      await store.delete(part);

      const resumed = await replayInProcess(wordcount, intervals, { root: lost.root });
      await removeDir(path.dirname(resumed.root));

      expect(resumed.reports.flatMap((r) => r.recoveredIntervals)).toEqual([2]);
      expect(await store.get(part)).toEqual(written);
      expect(await store.head(keys.taskDone(record.scope, stageIds.recover(state), 1))).toBeDefined();
      expect(await store.head(keys.taskDone(record.scope, stageIds.recover(state), 0))).toBeUndefined();
      expect(await store.head(keys.taskDone(record.scope, reduceStage, 1))).toBeDefined();
      const outputsAfter = await outputFiles(lost.root);
      for (const [file, bytes] of outputsBefore) expect(outputsAfter.get(file), file).toBe(bytes);
      expect(outputsAfter).toEqual(await clean.files());
    } finally {
      await removeDir(path.dirname(clean.root));
      await removeDir(path.dirname(lost.root));
    }
  });
});

describe('sinks that stay apart', () => {
  it('keeps a sink over other partitions in a stage of its own, reading the persisted RDD from the store', async () => {
    const pipeline = definePipeline({ name: 'apart', partitions: 2 }, (ctx) => {
      const sums = ctx
        .textStream()
        .map((w) => [w, 1] as [string, number])
        .updateStateByKey<string, number, number>((ones, total) => (total ?? 0) + ones.length);
      sums.saveAsJsonFiles('totals');
      sums.repartition(1).saveAsJsonFiles('gathered');
    });
    const run = await replayInProcess(pipeline, [{ 'u.txt': 'a\nb\na\n' }]);
    try {
      const record = (await readLineageRecord(new FsObjectStore(run.root), 0))!;
      const results = record.stages.flatMap((s) => (s.kind === 'result' ? [s.sinks.map((k) => (k.kind === 'output' ? k.output.name : 'state'))] : []));

      expect(results).toEqual([['state', 'totals'], ['gathered']]);
      expect(bag(await run.output('gathered', 0))).toEqual(bag([['a', 2], ['b', 1]]));
    } finally {
      await removeDir(path.dirname(run.root));
    }
  });
});
