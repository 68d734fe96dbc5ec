/**
 * A running stream takes new code at an interval boundary without losing its state: after the
 * boundary its outputs are what the new code gives continuing from the old code's state, windows
 * run on as if nothing happened, and an upgrade that would lose named state, or change the
 * pipeline, is refused. A crash at any write of the upgrade leaves the root before or after it.
 */
import path from 'node:path';
import { rm } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { definePipeline, type State } from '../../core/index.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import type { DStream } from '../../core/graph/dstream.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { listAll, readJson } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';
import { exportSavepoint, importSavepoint, upgradeStream, type StreamOwner } from '../../core/streaming/upgrade.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { bag, readOutput, removeDir, replayInto, stage, tempDir } from '../support/stream-harness.ts';

const lines = ['a b a', 'b c', 'a', 'c c d', 'a d', 'b', 'd a', 'c'];
const uploads = lines.map((line) => ({ 'u.txt': `${line}\n` }));
const wordsOf = (line: string) => line.split(' ').filter(Boolean);

/** Runs the staged intervals `from`..`to` - 1 (those before are committed already, or another root's). */
async function run(pipeline: Pipeline, root: string, to: number): Promise<void> {
  const staged = await stage(path.join(root, '..', `staged-${to}-${Math.random().toString(36).slice(2)}`), uploads.slice(0, to));
  try {
    await replayInto(pipeline, root, staged, { partitions: 2 });
  } finally {
    await rm(staged, { recursive: true, force: true });
  }
}

const count = (ones: number[], total: number | undefined) => (total ?? 0) + ones.length;

const v1 = definePipeline({ name: 'counts', partitions: 2, checkpointEvery: 2 }, (ctx) => {
  const words = ctx
    .textStream()
    .flatMap(wordsOf)
    .map((w) => [w, 1] as [string, number]);
  words.updateStateByKey<string, number, number>(count, { name: 'totals' }).saveAsJsonFiles('totals');
  words
    .mapWithState({
      name: 'sessions',
      update: (_w: string, _one: number | undefined, state: State<number>) => {
        state.update((state.exists() ? state.get() : 0) + 1);
        return undefined;
      },
    })
    .stateSnapshots()
    .saveAsJsonFiles('sessions');
});

/**
 * The changes a user may make at once: an operator added before the state (every id shifts), a
 * changed update function, other partitions, a state type migrated, an added output, and another
 * bad-record policy.
 */
const v2 = definePipeline({ name: 'counts', partitions: 3, checkpointEvery: 2, badRecords: 'quarantine' }, (ctx) => {
  const words = ctx
    .textStream()
    .map((line) => line.trim())
    .flatMap(wordsOf)
    .map((w) => [w, 1] as [string, number]);
  words
    .updateStateByKey<string, number, number>((ones, total) => (total ?? 0) + 10 * ones.length, { name: 'totals', partitions: 3 })
    .saveAsJsonFiles('totals');
  words
    .mapWithState({
      name: 'sessions',
      migrate: (old: number) => ({ n: old }),
      update: (_w: string, _one: number | undefined, state: State<{ n: number }>) => {
        state.update({ n: (state.exists() ? state.get().n : 0) + 1 });
        return undefined;
      },
    })
    .stateSnapshots()
    .saveAsJsonFiles('sessions');
  words.map(([w]) => w.length).saveAsJsonFiles('lengths');
});

/** In memory: v1 up to the boundary, v2 from it, from the state v1 left. */
function reference(boundary: number) {
  const totals = new Map<string, number>();
  const sessions = new Map<string, number>();
  const at: { totals: [string, number][]; sessions: [string, unknown][] }[] = [];
  lines.forEach((line, k) => {
    for (const w of wordsOf(line)) {
      totals.set(w, (totals.get(w) ?? 0) + (k < boundary ? 1 : 10));
      sessions.set(w, (sessions.get(w) ?? 0) + 1);
    }
    at.push({ totals: [...totals], sessions: [...sessions].map(([w, n]) => [w, k < boundary ? n : { n }]) });
  });
  return at;
}

async function withRoot(test: (root: string, store: ObjectStore) => Promise<void>): Promise<void> {
  const base = await tempDir();
  try {
    const root = path.join(base, 'root');
    await test(root, new FsObjectStore(root));
  } finally {
    await removeDir(base);
  }
}

describe('an upgrade at an interval boundary', () => {
  it('goes on from the old state with the new code: changed function, partitions, state type, outputs and policy', () =>
    withRoot(async (root, store) => {
      await run(v1, root, 3);
      const done = await upgradeStream(store, v2);
      expect(done?.boundary).toBe(3);
      expect(done?.mapped.map((m) => m.name).sort()).toEqual(['sessions', 'totals']);
      await run(v2, root, lines.length);

      const expected = reference(3);
      for (let k = 0; k < lines.length; k++) {
        expect(bag(await readOutput(root, 'totals', k))).toEqual(bag(expected[k]!.totals));
        expect(bag(await readOutput(root, 'sessions', k))).toEqual(bag(expected[k]!.sessions));
      }
      expect(await readOutput(root, 'lengths', 2)).toBeUndefined();
      expect(bag(await readOutput(root, 'lengths', 3))).toEqual(bag([1, 1, 1]));
      // Intervals before the boundary keep the old code's identity; those after, the new code's.
      expect((await readJson<{ fingerprint: string }>(store, 'lineage/interval=000002/record.json'))?.fingerprint).toBe(v1.fingerprint);
      expect((await readJson<{ fingerprint: string }>(store, 'lineage/interval=000003/record.json'))?.fingerprint).toBe(v2.fingerprint);
    }));

  it('starts a state operator the new code adds from its initial state at the boundary, inline or from the store', () =>
    withRoot(async (root, store) => {
      const v3 = definePipeline({ name: 'counts', partitions: 2, checkpointEvery: 2 }, (ctx) => {
        const words = ctx.textStream().flatMap(wordsOf).map((w) => [w, 1] as [string, number]);
        words.updateStateByKey<string, number, number>(count, { name: 'totals' }).saveAsJsonFiles('totals');
        words.updateStateByKey<string, number, number>(count, { name: 'inline', initial: [['a', 100]] }).saveAsJsonFiles('inline');
        words.updateStateByKey<string, number, number>(count, { name: 'stored', initial: ctx.jsonFile('seeds/stored.jsonl') }).saveAsJsonFiles('stored');
      });
      await run(v1, root, 3);
      await store.put('seeds/stored.jsonl', '["z",7]\n');
      const done = await upgradeStream(store, v3, { dropState: ['sessions'] });
      expect(done?.starting.length).toBe(2);
      await run(v3, root, 5);
      // Intervals 3 and 4: 'c c d' and 'a d'.
      expect(bag(await readOutput(root, 'inline', 4))).toEqual(bag([['a', 101], ['c', 2], ['d', 2]]));
      expect(bag(await readOutput(root, 'stored', 4))).toEqual(bag([['a', 1], ['c', 2], ['d', 2], ['z', 7]]));
      expect(bag(await readOutput(root, 'totals', 4))).toEqual(bag(reference(99)[4]!.totals));
    }));

  it('can be made again with code fixed before the boundary ran, from the same state', () =>
    withRoot(async (root, store) => {
      await run(v1, root, 3);
      const withoutSessions = definePipeline({ name: 'counts', partitions: 2 }, (ctx) => {
        ctx.textStream().flatMap(wordsOf).map((w) => [w, 1] as [string, number]).updateStateByKey<string, number, number>(count, { name: 'totals' }).saveAsJsonFiles('totals');
      });
      await upgradeStream(store, withoutSessions, { dropState: ['sessions'] });
      expect((await upgradeStream(store, v2))?.mapped.map((m) => m.name).sort()).toEqual(['sessions', 'totals']);
      await run(v2, root, lines.length);
      for (let k = 3; k < lines.length; k++) expect(bag(await readOutput(root, 'sessions', k))).toEqual(bag(reference(3)[k]!.sessions));
    }));

  it('is a no-op for the same code, and done once however often it is run', () =>
    withRoot(async (root, store) => {
      await run(v1, root, 2);
      expect(await upgradeStream(store, v1)).toBeUndefined();
      expect(await upgradeStream(store, v2)).toBeDefined();
      expect(await upgradeStream(store, v2)).toBeUndefined();
    }));

  it('refuses changed code run without an upgrade, naming the way on', () =>
    withRoot(async (root) => {
      await run(v1, root, 2);
      await expect(run(v2, root, 3)).rejects.toThrow('stop it and run dstream upgrade <pipeline>');
    }));

  it('refuses a different pipeline name, named state lost without --drop-state, and a state kept by another kind of operator', () =>
    withRoot(async (root, store) => {
      await run(v1, root, 2);
      const other = definePipeline({ name: 'other' }, (ctx) => ctx.textStream().saveAsTextFiles('x'));
      await expect(upgradeStream(store, other)).rejects.toThrow('this stream is pipeline counts, not other');

      const withoutSessions = definePipeline({ name: 'counts', partitions: 2 }, (ctx) => {
        const words = ctx.textStream().flatMap(wordsOf).map((w) => [w, 1] as [string, number]);
        words.updateStateByKey<string, number, number>(count, { name: 'totals' }).saveAsJsonFiles('totals');
      });
      await expect(upgradeStream(store, withoutSessions)).rejects.toThrow('the new code has no state named sessions (a mapWithState)');
      await expect(upgradeStream(store, withoutSessions, { dropState: ['session'] })).rejects.toThrow('--drop-state session (on AWS, dropState): the stream has no state of that name (it has totals, sessions)');

      const totalsAsSessions = definePipeline({ name: 'counts', partitions: 2 }, (ctx) => {
        const words = ctx.textStream().flatMap(wordsOf).map((w) => [w, 1] as [string, number]);
        words.mapWithState({ name: 'totals', update: (_w: string, _o: number | undefined, _s: State<number>) => undefined }).saveAsJsonFiles('totals');
      });
      await expect(upgradeStream(store, totalsAsSessions, { dropState: ['sessions'] })).rejects.toThrow('state totals was kept by a updateStateByKey and the new code keeps it with a mapWithState');
      // Nothing was switched by the refusals.
      expect((await readJson<StreamOwner>(store, keys.pipelineOwner))?.fingerprint).toBe(v1.fingerprint);

      const done = await upgradeStream(store, withoutSessions, { dropState: ['sessions'] });
      expect(done?.keptAside.map((s) => s.name)).toEqual(['sessions']);
      expect(await store.head(keys.persisted(keys.keptAsideState(2, 'sessions', 1), 0))).toBeDefined();
      await run(withoutSessions, root, 3);
      expect(bag(await readOutput(root, 'totals', 2))).toEqual(bag(reference(99)[2]!.totals));
    }));

  it('refuses while an interval planned by the old code has not committed', () =>
    withRoot(async (root, store) => {
      await run(v1, root, 2);
      await store.put(keys.lineageRecord('interval=000002'), JSON.stringify({ v: 2 }));
      await expect(upgradeStream(store, v2)).rejects.toThrow('interval 2 has been planned by the running code and is not committed');
    }));

  it('refuses state gone from the cache, naming it, and takes the next boundary once the old code has run an interval more', () =>
    withRoot(async (root, store) => {
      await run(v1, root, 3);
      // The cache tier expired: interval 2's state lived there, between checkpoints.
      for (const o of await listAll(store, 'cache/')) await store.delete(o.key);
      await expect(upgradeStream(store, v2)).rejects.toThrow(
        /^state (totals|sessions) of interval 2 is gone from the store \(cache\/interval=000002\/persist\/d\d+\/part-\d+ is missing\): an upgrade cannot recompute it, which would take the code that wrote it\. Run the stream one more interval with that code/,
      );
      expect((await readJson<StreamOwner>(store, keys.pipelineOwner))?.fingerprint).toBe(v1.fingerprint);

      // The way on the error names: interval 3 recomputes from lineage the state it reads.
      await run(v1, root, 4);
      expect((await upgradeStream(store, v2))?.boundary).toBe(4);
      await run(v2, root, lines.length);
      const expected = reference(4);
      for (let k = 0; k < lines.length; k++) expect(bag(await readOutput(root, 'totals', k))).toEqual(bag(expected[k]!.totals));
    }));

  it('never recomputes across the boundary with the new code: a lost checkpoint of the boundary is a clear error', () =>
    withRoot(async (root, store) => {
      await run(v1, root, 3);
      await upgradeStream(store, v2);
      await store.delete(keys.persisted(keys.boundaryState(3, 'totals', 2), 0));
      await expect(run(v2, root, 4)).rejects.toThrow('interval 2 ran under the code before the upgrade at interval 3');
    }));

  it('leaves the root before or after the upgrade when it crashes at any write, and finishes when run again', async () => {
    const base = await tempDir();
    try {
      const clean = path.join(base, 'clean');
      await run(v1, clean, 3);
      await upgradeStream(new FsObjectStore(clean), v2);
      await run(v2, clean, lines.length);
      const writes = await countWrites(async (store) => void (await upgradeStream(store, v2)), path.join(base, 'count'));

      for (let crashAt = 1; crashAt <= writes; crashAt += Math.max(1, Math.floor(writes / 6))) {
        const root = path.join(base, `crash-${crashAt}`);
        await run(v1, root, 3);
        await expect(upgradeStream(crashingStore(new FsObjectStore(root), crashAt), v2)).rejects.toThrow('crash');
        const owner = await readJson<StreamOwner>(new FsObjectStore(root), keys.pipelineOwner);
        // Before: the old code runs on as if nothing happened. After: the whole upgrade is there.
        if (owner?.fingerprint === v1.fingerprint) {
          await run(v1, root, 4);
          expect(bag(await readOutput(root, 'totals', 3))).toEqual(bag(reference(99)[3]!.totals));
          continue;
        }
        expect(owner?.fingerprint).toBe(v2.fingerprint);
        expect(await upgradeStream(new FsObjectStore(root), v2)).toBeUndefined();
        await run(v2, root, lines.length);
        for (let k = 3; k < lines.length; k++) expect(bag(await readOutput(root, 'totals', k))).toEqual(bag(await readOutput(clean, 'totals', k)));
      }
      // And an upgrade that crashed before its switch simply runs again to the end.
      const again = path.join(base, 'again');
      await run(v1, again, 3);
      await expect(upgradeStream(crashingStore(new FsObjectStore(again), writes - 1), v2)).rejects.toThrow('crash');
      await upgradeStream(new FsObjectStore(again), v2);
      await run(v2, again, lines.length);
      for (let k = 0; k < lines.length; k++) expect(bag(await readOutput(again, 'sessions', k))).toEqual(bag(await readOutput(clean, 'sessions', k)));
    } finally {
      await removeDir(base);
    }
  }, 120_000);
});

/** Windows of every form, each named so that adding an operator before them keeps their state. */
const windows = (extra: boolean, partitions: number) =>
  definePipeline({ name: 'windows', partitions: 2 }, (ctx) => {
    const text = ctx.textStream();
    const words = (extra ? text.filter((l) => l.length > 0) : text).flatMap(wordsOf);
    const pairs = words.map((w) => [w, 1] as [string, number]);
    words.window(3).name('recent').countByValue().saveAsJsonFiles('recent');
    pairs
      .reduceByKeyAndWindow((a, b) => a + b, 3, 1, { inverse: (a, b) => a - b, partitions })
      .name('inverse')
      .saveAsJsonFiles('inverse');
    pairs.reduceByKeyAndWindow((a, b) => a + b, 4, 2).name('plain').saveAsJsonFiles('plain');
    words.countByValueAndWindow(3, 1, partitions).name('byValue').saveAsJsonFiles('byValue');
  });

describe('windows across an upgrade', () => {
  it('run on as in a stream never upgraded (window, both reduceByKeyAndWindow forms, countByValueAndWindow)', async () => {
    const base = await tempDir();
    try {
      const straight = path.join(base, 'straight');
      await run(windows(false, 2), straight, lines.length);
      const upgraded = path.join(base, 'upgraded');
      await run(windows(false, 2), upgraded, 4);
      // Mid-slide for the plain form (it slides every 2), with the operators' ids shifted and partitions changed.
      await upgradeStream(new FsObjectStore(upgraded), windows(true, 3));
      await run(windows(true, 3), upgraded, lines.length);
      for (const output of ['recent', 'inverse', 'plain', 'byValue']) {
        for (let k = 0; k < lines.length; k++) expect(bag(await readOutput(upgraded, output, k)), `${output} at ${k}`).toEqual(bag(await readOutput(straight, output, k)));
      }
    } finally {
      await removeDir(base);
    }
  }, 60_000);
});

describe('savepoints', () => {
  it('move a stream to a fresh root, where it goes on as it would have in place, with the same or upgraded code', async () => {
    const base = await tempDir();
    try {
      const inPlace = path.join(base, 'in-place');
      await run(v1, inPlace, 3);
      await upgradeStream(new FsObjectStore(inPlace), v2);
      await run(v2, inPlace, lines.length);

      const old = path.join(base, 'old');
      await run(v1, old, 3);
      const saved = path.join(base, 'savepoint');
      expect((await exportSavepoint(new FsObjectStore(old), new FsObjectStore(saved))).boundary).toBe(3);

      const moved = path.join(base, 'moved');
      await importSavepoint(new FsObjectStore(moved), new FsObjectStore(saved), v2, Date.now());
      await run(v2, moved, lines.length);
      expect(await readOutput(moved, 'totals', 2)).toBeUndefined();
      for (let k = 3; k < lines.length; k++) expect(bag(await readOutput(moved, 'totals', k))).toEqual(bag(await readOutput(inPlace, 'totals', k)));

      const same = path.join(base, 'same');
      await importSavepoint(new FsObjectStore(same), new FsObjectStore(saved), v1, Date.now());
      await run(v1, same, lines.length);
      for (let k = 3; k < lines.length; k++) expect(bag(await readOutput(same, 'totals', k))).toEqual(bag(reference(99)[k]!.totals));

      await expect(importSavepoint(new FsObjectStore(same), new FsObjectStore(saved), v1, Date.now())).rejects.toThrow('import a savepoint into a fresh root');
      await expect(importSavepoint(new FsObjectStore(path.join(base, 'x')), new FsObjectStore(path.join(base, 'nothing')), v1, Date.now())).rejects.toThrow('no savepoint here');
    } finally {
      await removeDir(base);
    }
  }, 60_000);
});

/** How many writes `act` makes to a store: the points at which a crash can fall. */
async function countWrites(act: (store: ObjectStore) => Promise<void>, root: string): Promise<number> {
  await run(v1, root, 3);
  let writes = 0;
  const counting = crashingStore(new FsObjectStore(root), Infinity, () => writes++);
  await act(counting);
  return writes;
}

/**
 * The store as seen by a process killed before its `crashAt`-th write: the write never happens.
 * (A kill is a boundary this test cannot reach in-process; each write is atomic in the store.)
 */
function crashingStore(store: ObjectStore, crashAt: number, onWrite: () => void = () => {}): ObjectStore {
  let writes = 0;
  const write = () => {
    onWrite();
    if (++writes >= crashAt) throw new Error(`crash before write ${writes}`);
  };
  return {
    get: (key, o) => store.get(key, o),
    getRange: (key, s, e, o) => store.getRange(key, s, e, o),
    head: (key, o) => store.head(key, o),
    list: (prefix) => store.list(prefix),
    put: async (key, body) => (write(), store.put(key, body)),
    putIfAbsent: async (key, body) => (write(), store.putIfAbsent(key, body)),
    delete: async (key) => (write(), store.delete(key)),
  };
}

describe('state names', () => {
  const build = (name: (words: ReturnType<typeof pairsOf>) => void) => () => definePipeline({ name: 'names' }, (ctx) => name(pairsOf(ctx.textStream())));
  const pairsOf = (lines: DStream<string>) => lines.map((w) => [w, 1] as [string, number]);

  it('name only state, once, and are not operator ids', () => {
    expect(build((pairs) => pairs.reduceByKey((a, b) => a + b).name('sums').saveAsJsonFiles('x'))).toThrow('reduceByKey d2 holds no state; name the result of updateStateByKey, mapWithState or a window operator');
    expect(build((pairs) => pairs.window(2).name('d4').saveAsJsonFiles('x'))).toThrow('not an operator id like d3, got "d4"');
    expect(build((pairs) => pairs.window(2).name('has space').saveAsJsonFiles('x'))).toThrow('state name must be 1-64 letters');
    expect(
      build((pairs) => {
        pairs.window(2).name('a').saveAsJsonFiles('x');
        pairs.window(3).name('b').saveAsJsonFiles('y');
      }),
    ).toThrow('is named "a" already (windows over one stream share its buffer)');
    expect(
      build((pairs) => {
        pairs.updateStateByKey<string, number, number>(count, { name: 'same' }).saveAsJsonFiles('x');
        pairs.window(3).name('same').saveAsJsonFiles('y');
      }),
    ).toThrow('two operators\' state is named "same"');
  });

  it('change the fingerprint only when given, so unnamed pipelines keep theirs', () => {
    const unnamed = definePipeline({ name: 'n' }, (ctx) => pairsOf(ctx.textStream()).updateStateByKey<string, number, number>(count).saveAsJsonFiles('x'));
    const again = definePipeline({ name: 'n' }, (ctx) => pairsOf(ctx.textStream()).updateStateByKey<string, number, number>(count).saveAsJsonFiles('x'));
    const named = definePipeline({ name: 'n' }, (ctx) => pairsOf(ctx.textStream()).updateStateByKey<string, number, number>(count, { name: 't' }).saveAsJsonFiles('x'));
    expect(again.fingerprint).toBe(unnamed.fingerprint);
    expect(named.fingerprint).not.toBe(unnamed.fingerprint);
  });
});
