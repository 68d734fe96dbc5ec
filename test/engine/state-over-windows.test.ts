/**
 * State over a windowed stream slides with it, as Spark's StateDStream and MapWithStateDStream
 * do: the update runs at each of the window's slides, with the state of the previous slide; the
 * state has an RDD (and its outputs a part) only at those slides. (Its state used to start empty
 * at every slide.)
 */
import { expect, it } from 'vitest';
import path from 'node:path';
import { definePipeline, type State } from '../../core/index.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';

/** Interval k's uploads: one line of words each. */
const intervals = [['a'], ['a b'], ['b'], ['a'], [], ['c'], ['a a']];

const pipeline = definePipeline({ name: 'state-over-windows', partitions: 2, checkpointEvery: 3 }, (ctx) => {
  const windows = ctx
    .textStream()
    .flatMap((line) => line.split(' ').filter(Boolean))
    .map((w) => [w, 1] as [string, number])
    .window(2, 2);
  windows.updateStateByKey<string, number, number>((ones, total) => (total ?? 0) + ones.length).saveAsJsonFiles('totals');
  const sessions = windows.mapWithState({
    update: (word: string, one: number | undefined, state: State<number>) => {
      state.update((state.exists() ? state.get() : 0) + one!);
      return [word, state.get()] as [string, number];
    },
  });
  sessions.saveAsJsonFiles('emitted');
  sessions.stateSnapshots().saveAsJsonFiles('snapshots');
});

it('updateStateByKey and mapWithState over window(2, 2) carry their state from one slide to the next', async () => {
  const run = await replayInProcess(pipeline, intervals.map((lines) => Object.fromEntries(lines.map((l, i) => [`u${i}.txt`, `${l}\n`]))), { partitions: 2 });
  try {
    // Windows end at intervals 1, 3 and 5: [a, a b], [b, a], [(none), c]; interval 6 ends no window.
    const totals = [undefined, [['a', 2], ['b', 1]], undefined, [['a', 3], ['b', 2]], undefined, [['a', 3], ['b', 2], ['c', 1]], undefined];
    for (let k = 0; k < intervals.length; k++) {
      expect(bag(await run.output('totals', k)), `totals at ${k}`).toEqual(bag(totals[k]));
      expect(bag(await run.output('snapshots', k)), `snapshots at ${k}`).toEqual(bag(totals[k]));
    }
    // mapWithState is called once per value, at the slides only.
    expect(bag(await run.output('emitted', 1))).toEqual(bag([['a', 1], ['a', 2], ['b', 1]]));
    expect(bag(await run.output('emitted', 3))).toEqual(bag([['b', 2], ['a', 3]]));
    expect(bag(await run.output('emitted', 5))).toEqual(bag([['c', 1]]));
    expect(await run.output('emitted', 4)).toBeUndefined();
  } finally {
    await removeDir(path.dirname(run.root));
  }
});
