/**
 * State may start from given pairs instead of empty, as Spark's updateStateByKey(initialRDD) and
 * StateSpec.initialState: keys in the initial state carry on from it, and a seeded key with no
 * values behaves as any key with state.
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline, type State } from '../../core/index.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';

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
  const run = await replayInProcess(pipeline, [{ 'u.txt': 'a b\n' }, { 'u.txt': 'a\n' }, { 'u.txt': 'b\n' }], { partitions: 2 });
  try {
    expect(bag(await run.output('totals', 0))).toEqual(bag([['a', 101], ['b', 1], ['z', 7]]));
    expect(bag(await run.output('totals', 2))).toEqual(bag([['a', 102], ['b', 2], ['z', 7]]));
    expect(bag(await run.output('snapshots', 0))).toEqual(bag([['a', 1], ['b', 1], ['z', 50]]));
    // z, seeded at interval 0 and silent since, times out at interval 2 like any silent key.
    expect(bag(await run.output('snapshots', 2))).toEqual(bag([['a', 2], ['b', 2]]));
  } finally {
    await removeDir(path.dirname(run.root));
  }
});

it('refuses an initial state that is not [key, state] pairs', () => {
  expect(() =>
    definePipeline({ name: 'bad-initial' }, (ctx) => {
      ctx.jsonStream<[string, number]>().updateStateByKey<string, number, number>((v, s) => s, { initial: [['a']] as never }).saveAsJsonFiles('x');
    }),
  ).toThrow('initial state must be an array of [key, state] pairs');
});
