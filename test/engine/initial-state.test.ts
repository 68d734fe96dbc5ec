/**
 * State may start from given pairs instead of empty, as Spark's updateStateByKey(initialRDD) and
 * StateSpec.initialState, or from a JSON-lines object in the store (ctx.jsonFile): keys in the
 * initial state carry on from it, and a seeded key with no values behaves as any key with state.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline, type State } from '../../core/index.ts';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { EmbeddedRuntime } from '../../local/runtime/embedded-runtime.ts';
import { bag, readOutput, removeDir, replayInProcess, stage, tempDir } from '../support/stream-harness.ts';

const pipeline = definePipeline({ name: 'initial-state', partitions: 2 }, (ctx) => {
  const words = ctx
    .textStream()
    .flatMap((line) => line.split(' ').filter(Boolean))
    .map((w) => [w, 1] as [string, number]);
  words
    .updateStateByKey<string, number, number>((ones, total) => (total ?? 0) + ones.length, { initial: [['a', 100], ['z', 7]] })
    .saveAsJsonFiles('totals');
  words
    .mapWithState({
      timeout: 2,
      initial: [['z', 50]] as [string, number][],
      update: (_word: string, one: number | undefined, state: State<number>) => {
        if (!state.isTimingOut()) state.update((state.exists() ? state.get() : 0) + one!);
        return undefined;
      },
    })
    .stateSnapshots()
    .saveAsJsonFiles('snapshots');
});

it('updateStateByKey and mapWithState carry on from the initial state', async () => {
  const run = await replayInProcess(pipeline, [{ 'u.txt': 'a b\n' }, { 'u.txt': 'a\n' }, { 'u.txt': 'b\n' }, { 'u.txt': 'b\n' }], { partitions: 2 });
  try {
    expect(bag(await run.output('totals', 0))).toEqual(bag([['a', 101], ['b', 1], ['z', 7]]));
    expect(bag(await run.output('totals', 2))).toEqual(bag([['a', 102], ['b', 2], ['z', 7]]));
    expect(bag(await run.output('snapshots', 0))).toEqual(bag([['a', 1], ['b', 1], ['z', 50]]));
    // z, seeded at interval 0 and silent since, times out like any key last updated at 0: once
    // more than `timeout` (2) intervals have passed, at interval 3, as in Spark.
    expect(bag(await run.output('snapshots', 2))).toEqual(bag([['a', 2], ['b', 2], ['z', 50]]));
    expect(bag(await run.output('snapshots', 3))).toEqual(bag([['a', 2], ['b', 3]]));
  } finally {
    await removeDir(path.dirname(run.root));
  }
});

it('refuses an initial state that is not [key, state] pairs', () => {
  expect(() =>
    definePipeline({ name: 'bad-initial' }, (ctx) => {
      ctx.jsonStream<[string, number]>().updateStateByKey<string, number, number>((v, s) => s, { initial: [['a']] as never }).saveAsJsonFiles('x');
    }),
  ).toThrow('initial state must be an array of [key, state] pairs, or a store object (ctx.jsonFile)');
});

/** Seeds read from a JSON-lines object in the store, as Spark's initialRDD: `ctx.jsonFile(key)`. */
const fromStore = definePipeline({ name: 'initial-from-store', partitions: 2 }, (ctx) => {
  const words = ctx
    .textStream()
    .flatMap((line) => line.split(' ').filter(Boolean))
    .map((w) => [w, 1] as [string, number]);
  const seeds = ctx.jsonFile<[string, number]>('seeds/totals.jsonl');
  words.updateStateByKey<string, number, number>((ones, total) => (total ?? 0) + ones.length, { initial: seeds }).saveAsJsonFiles('totals');
  words
    .mapWithState({
      initial: seeds,
      update: (_word: string, one: number | undefined, state: State<number>) => {
        state.update((state.exists() ? state.get() : 0) + one!);
        return undefined;
      },
    })
    .stateSnapshots()
    .saveAsJsonFiles('snapshots');
});

/** Replays `intervals` into a fresh root under `base` that holds `objects` (key -> content) beforehand. */
async function replayWithObjects(base: string, objects: Record<string, string>, intervals: Record<string, string>[]) {
  const root = path.join(base, 'root');
  for (const [key, content] of Object.entries(objects)) {
    await mkdir(path.dirname(path.join(root, key)), { recursive: true });
    await writeFile(path.join(root, key), content);
  }
  const staged = await stage(path.join(base, 'staged'), intervals);
  const runtime = await EmbeddedRuntime.open({ pipelinePath: 'in-process', inProcess: fromStore, root, workers: 1, partitions: 2, scheduler: { pollMs: 2 } });
  try {
    await runtime.replay(staged);
  } finally {
    await runtime.close();
  }
  return root;
}

it('updateStateByKey and mapWithState carry on from an initial state read from a store object, pinned in interval 0 lineage', async () => {
  const seeds = '["a",100]\n["z",7]\n';
  const base = await tempDir();
  try {
    const root = await replayWithObjects(base, { 'seeds/totals.jsonl': seeds }, [{ 'u.txt': 'a b\n' }, { 'u.txt': 'a\n' }]);
    expect(bag(await readOutput(root, 'totals', 0))).toEqual(bag([['a', 101], ['b', 1], ['z', 7]]));
    expect(bag(await readOutput(root, 'totals', 1))).toEqual(bag([['a', 102], ['b', 1], ['z', 7]]));
    expect(bag(await readOutput(root, 'snapshots', 1))).toEqual(bag([['a', 102], ['b', 1], ['z', 7]]));
    // The bytes read are a copy kept in interval 0's lineage, so later changes to the object reach nothing.
    const pinned = await readdir(path.join(root, 'lineage', 'interval=000000', 'objects'));
    expect(pinned).toHaveLength(1);
    expect(await readFile(path.join(root, 'lineage', 'interval=000000', 'objects', pinned[0]!), 'utf8')).toBe(seeds);
  } finally {
    await removeDir(base);
  }
});

it('a missing initial state object stops the stream before interval 0 runs, not an empty state', async () => {
  const base = await tempDir();
  try {
    await expect(replayWithObjects(base, {}, [{ 'u.txt': 'a\n' }])).rejects.toThrow(
      'pipeline initial-from-store starts its state from seeds/totals.jsonl (ctx.jsonFile), which does not exist in the store',
    );
    expect(await readOutput(path.join(base, 'root'), 'totals', 0)).toBeUndefined();
  } finally {
    await removeDir(base);
  }
});
