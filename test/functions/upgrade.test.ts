/**
 * On AWS, deploying changed code is the upgrade: the three functions of the new code, over the
 * bucket the old code's functions ran, take the stream over at the boundary after its last
 * committed interval, and its outputs from there are what the new code gives started from the old
 * code's state. Drivers of the new code racing or crashing mid-upgrade, and a driver of the old
 * code still running, change nothing of that; state the new code would lose is refused unless the
 * deployment drops it (DSTREAM_DROP_STATE).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import path from 'node:path';
import { VersionedMemoryStore } from '../support/versioned-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { readJson } from '../../core/ports/object-store.ts';
import { intervalScope, keys } from '../../core/layout.ts';
import { definePipeline } from '../../core/index.ts';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import type { StreamOwner, UpgradeRecord } from '../../core/streaming/upgrade.ts';
import { readLineageRecord } from '../../core/streaming/lineage.ts';
import wordcount from '../../examples/wordcount.ts';
import wordcountV2 from '../fixtures/wordcount-v2.ts';
import { createDriverHandler } from '../../functions/driver/handler.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { createTaskHandler } from '../../functions/task/handler.ts';
import { driverConfig, functionConfig } from '../../functions/config.ts';
import { bag, readOutput, removeDir, tempDir } from '../support/stream-harness.ts';
import { eventSourceMapping, FakeClock, s3Event, upload } from './support.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const MINUTE = 60_000;
const lines = ['the quick brown fox', 'the lazy dog', 'fox and dog and fox', 'the end', 'a dog a fox', 'the the'];
const wordsOf = (line: string) => line.split(/\s+/).filter(Boolean);

let base: string;
let store: VersionedMemoryStore;
let clock: FakeClock;
let ingested: number;

beforeEach(async () => {
  base = await tempDir();
  store = new VersionedMemoryStore();
  clock = new FakeClock(T0);
  ingested = 0;
  vi.spyOn(console, 'info').mockImplementation(() => {});
  vi.spyOn(console, 'error').mockImplementation(() => {});
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
  await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: MINUTE }));
});

afterEach(async () => {
  vi.restoreAllMocks();
  await removeDir(base);
});

/** The functions of one deployment, as the stack configures them, `env` added to their environment. */
function deploy(pipeline: Pipeline, env: Record<string, string> = {}, driverStore: ObjectStore = store) {
  const production = driverConfig(functionConfig({ DSTREAM_BUCKET: 'bucket', DSTREAM_INTERVAL_MS: String(MINUTE), DSTREAM_PARTITIONS: '2', ...env }));
  // Polling every 10 ms of the fake clock, so that polls move time on by little next to a minute.
  const config = { ...production, scheduler: { ...production.scheduler, pollMs: 10 } };
  const queue = new FsTaskQueue({ dir: path.join(base, `queue-${Math.random().toString(36).slice(2)}`), maxReceives: 3 });
  const driver = createDriverHandler(pipeline, { store: driverStore, queue, clock, config, stayAwakeMs: Infinity, dormantAfterIntervals: Infinity, wake: async () => {} });
  /** Invokes the driver once intervals before `n` are due, with time to run them and not interval `n`. */
  const runUntil = async (n: number) => {
    await ingestUntil(n);
    clock.time = Math.max(clock.time, T0 + n * MINUTE + 5_000);
    const deadline = clock.time + 120_000;
    const mapping = eventSourceMapping(queue, createTaskHandler(pipeline, { store, queue }));
    try {
      return await driver({ source: 'aws.events' }, { getRemainingTimeInMillis: () => deadline - clock.now() });
    } finally {
      await mapping.stop();
    }
  };
  return { runUntil, close: () => queue.close() };
}

/** Uploads line k in interval k, for each interval before `n` not yet given its line. */
async function ingestUntil(n: number): Promise<void> {
  const ingest = createIngestHandler({ store, now: () => clock.now(), intervalMs: MINUTE });
  for (; ingested < n; ingested++) {
    const at = T0 + ingested * MINUTE + 1_000;
    clock.time = Math.max(clock.time, at + 100);
    await ingest(s3Event([upload(store, `incoming/${ingested}.txt`, `${lines[ingested]}\n`, at)]));
  }
}

/** WordCount's totals, in memory: each word counts 1 before the boundary and 10 from it. */
function expectedTotals(boundary: number): [string, number][][] {
  const totals = new Map<string, number>();
  return lines.map((line, k) => {
    for (const w of wordsOf(line)) totals.set(w, (totals.get(w) ?? 0) + (k < boundary ? 1 : 10));
    return [...totals];
  });
}

async function expectUpgradedAt(boundary: number): Promise<void> {
  const expected = expectedTotals(boundary);
  for (let k = 0; k < lines.length; k++) {
    expect(bag(await readOutput(store, 'totals', k)), `totals of interval ${k}`).toEqual(bag(expected[k]));
    const repeated = [...new Set(wordsOf(lines[k]!))].map((w) => [w, wordsOf(lines[k]!).filter((x) => x === w).length]).filter(([, n]) => (n as number) > 1);
    expect(bag(await readOutput(store, 'repeated', k)), `repeated of interval ${k}`).toEqual(k < boundary ? undefined : bag(repeated));
    expect((await readLineageRecord(store, k))?.fingerprint).toBe(k < boundary ? wordcount.fingerprint : wordcountV2.fingerprint);
  }
}

const owner = () => readJson<StreamOwner>(store, keys.pipelineOwner);
/** A store in which the driver never sees another's lease: a driver that outlived its own, racing the one that took it. */
const leaseBlind = (s: ObjectStore): ObjectStore => ({ ...bound(s), get: (key) => (key === keys.driverLease ? Promise.resolve(undefined) : s.get(key)) });
const bound = (s: ObjectStore): ObjectStore => ({
  get: (key) => s.get(key),
  getRange: (key, start, end) => s.getRange(key, start, end),
  head: (key) => s.head(key),
  list: (prefix) => s.list(prefix),
  put: (key, body) => s.put(key, body),
  putIfAbsent: (key, body) => s.putIfAbsent(key, body),
  delete: (key) => s.delete(key),
});

describe('deploying changed code on AWS', () => {
  it('upgrades the stream at the boundary after its last committed interval, carrying the old state', async () => {
    const a = deploy(wordcount);
    expect(await a.runUntil(2)).toMatchObject({ intervalsRun: 2, next: 2 });
    await a.close();

    const b = deploy(wordcountV2);
    expect(await b.runUntil(lines.length)).toMatchObject({ intervalsRun: lines.length - 2, next: lines.length });
    await b.close();

    await expectUpgradedAt(2);
    expect(await owner()).toMatchObject({ name: 'wordcount', fingerprint: wordcountV2.fingerprint, since: 2 });
    const record = await readJson<UpgradeRecord>(store, keys.upgradeRecord(2));
    // WordCount's totals are unnamed: they keep their operator's id, as the new code adds its output after them.
    expect(record?.mapped).toEqual([{ name: 'd4', from: 'd4', to: 'd4' }]);
  });

  it('leaves a driver of the old code still running unable to plan past the boundary', async () => {
    const a = deploy(wordcount);
    await a.runUntil(2);
    const b = deploy(wordcountV2);
    await b.runUntil(3);

    // The old code's warm container, invoked again (by a hand-over sent before the deploy).
    await expect(a.runUntil(4)).rejects.toThrow(
      `the stream of pipeline wordcount was upgraded to fingerprint ${wordcountV2.fingerprint} from interval 2: this code (fingerprint ${wordcount.fingerprint}) plans no interval from 3 on`,
    );
    expect(await readLineageRecord(store, 3)).toBeUndefined();

    await b.runUntil(lines.length);
    await Promise.all([a.close(), b.close()]);
    await expectUpgradedAt(2);
  });

  it('upgrades once, the same, with two drivers of the new code racing, or one crashing mid-upgrade', async () => {
    const a = deploy(wordcount);
    await a.runUntil(2);

    // The first new driver dies as it switches the owner, its boundary checkpoints written.
    let crash = true;
    const crashing: ObjectStore = {
      ...bound(store),
      put: (key, body) => {
        if (crash && key === keys.pipelineOwner) return Promise.reject(new Error('the invocation died'));
        return store.put(key, body);
      },
    };
    await expect(deploy(wordcountV2, {}, crashing).runUntil(3)).rejects.toThrow('the invocation died');
    expect(await owner()).toMatchObject({ fingerprint: wordcount.fingerprint });
    crash = false;

    // Two more, each blind to the other's lease, run the same intervals at once.
    const [one, two] = [deploy(wordcountV2, {}, leaseBlind(store)), deploy(wordcountV2, {}, leaseBlind(store))];
    await ingestUntil(lines.length);
    await Promise.all([one.runUntil(lines.length), two.runUntil(lines.length)]);
    await Promise.all([a.close(), one.close(), two.close()]);

    await expectUpgradedAt(2);
    expect(await owner()).toMatchObject({ fingerprint: wordcountV2.fingerprint, since: 2 });
  });

  it('lets the old code keep an interval it planned while the upgrade ran, and upgrades after it', async () => {
    const a = deploy(wordcount);
    await a.runUntil(2);

    // The new driver switches the owner, then dies before planning interval 2.
    const dying: ObjectStore = {
      ...bound(store),
      putIfAbsent: (key, body) => (key === keys.lineageRecord(intervalScope(2)) ? Promise.reject(new Error('the invocation died')) : store.putIfAbsent(key, body)),
    };
    await expect(deploy(wordcountV2, {}, dying).runUntil(3)).rejects.toThrow('the invocation died');
    expect(await owner()).toMatchObject({ fingerprint: wordcountV2.fingerprint, since: 2 });

    // Meanwhile an old driver, past its lease, read the owner before the switch and ran interval 2.
    const stale: ObjectStore = {
      ...leaseBlind(store),
      get: async (key) => (key === keys.pipelineOwner ? Buffer.from(JSON.stringify({ name: 'wordcount', fingerprint: wordcount.fingerprint })) : leaseBlind(store).get(key)),
    };
    await deploy(wordcount, {}, stale).runUntil(3);
    expect((await readLineageRecord(store, 2))?.fingerprint).toBe(wordcount.fingerprint);

    // The interval's record decides: the new code withdraws its upgrade at 2 and upgrades at 3.
    const b = deploy(wordcountV2);
    await b.runUntil(lines.length);
    await Promise.all([a.close(), b.close()]);
    await expectUpgradedAt(3);
    expect(await owner()).toMatchObject({ fingerprint: wordcountV2.fingerprint, since: 3 });
  });

  it('waits, failing visibly, while an interval the old code planned has not committed', async () => {
    const a = deploy(wordcount);
    await a.runUntil(2);
    // The old code planned interval 2 and died before it committed.
    const dying: ObjectStore = {
      ...bound(store),
      putIfAbsent: (key, body) => (key === keys.committed(intervalScope(2)) ? Promise.reject(new Error('the invocation died')) : store.putIfAbsent(key, body)),
    };
    await expect(deploy(wordcount, {}, dying).runUntil(3)).rejects.toThrow('the invocation died');

    const b = deploy(wordcountV2);
    await expect(b.runUntil(3)).rejects.toThrow(
      `interval 2 was planned by the code this stream ran before (fingerprint ${wordcount.fingerprint}) and has not committed: this code (fingerprint ${wordcountV2.fingerprint}) takes the stream over at the boundary after it`,
    );
    expect(await owner()).toMatchObject({ fingerprint: wordcount.fingerprint });

    // The old code, deployed again, commits it; the new code then upgrades after it.
    await a.runUntil(3);
    await b.runUntil(lines.length);
    await Promise.all([a.close(), b.close()]);
    await expectUpgradedAt(3);
  });

  it('upgrades after an interval the old code committed without moving the progress pointer past it', async () => {
    const a = deploy(wordcount);
    await a.runUntil(2);
    // The old driver dies between committing interval 2 and moving the pointer past it.
    const dying: ObjectStore = {
      ...bound(store),
      put: async (key, body) => {
        if (key === keys.driverProgress && (await store.head(keys.committed(intervalScope(2))))) throw new Error('the invocation died');
        return store.put(key, body);
      },
    };
    await expect(deploy(wordcount, {}, dying).runUntil(3)).rejects.toThrow('the invocation died');

    const b = deploy(wordcountV2);
    await b.runUntil(lines.length);
    await Promise.all([a.close(), b.close()]);
    await expectUpgradedAt(3);
  });
});

describe('state the new code would lose', () => {
  const named = (keep: boolean) =>
    definePipeline({ name: 'named', partitions: 2 }, (ctx) => {
      const pairs = ctx
        .textStream()
        .flatMap(wordsOf)
        .map((w) => [w, 1] as [string, number]);
      if (keep) pairs.updateStateByKey((ones: number[], total: number | undefined) => (total ?? 0) + ones.length, { name: 'totals' }).saveAsJsonFiles('totals');
      pairs.saveAsJsonFiles('pairs');
    });

  it('is refused, the stream left as it was, unless the deployment drops it', async () => {
    const a = deploy(named(true));
    await a.runUntil(2);
    const before = await owner();

    const refused = deploy(named(false));
    await expect(refused.runUntil(3)).rejects.toThrow(
      "the new code has no state named totals (a updateStateByKey): its state would be lost. Name the operator that keeps it totals, or set it aside with --drop-state totals (on AWS, the DStreamPipeline's dropState: ['totals'])",
    );
    expect(await owner()).toEqual(before);
    expect(await readLineageRecord(store, 2)).toBeUndefined();

    const dropping = deploy(named(false), { DSTREAM_DROP_STATE: 'totals' });
    await dropping.runUntil(lines.length);
    await Promise.all([a.close(), refused.close(), dropping.close()]);
    const record = await readJson<UpgradeRecord>(store, keys.upgradeRecord(2));
    expect(record?.keptAside.map((k) => k.name)).toEqual(['totals']);
    expect(bag(await readOutput(store, 'pairs', lines.length - 1))).toEqual(bag(wordsOf(lines.at(-1)!).map((w) => [w, 1])));
  });
});
