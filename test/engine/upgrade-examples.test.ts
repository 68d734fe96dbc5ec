/**
 * Each example upgraded mid-stream to a changed copy of itself (test/fixtures/*-v2.ts): a changed
 * update function, an added output, changed partitions, a switched bad-record policy, a migrated
 * state type. Before the boundary the outputs are the old code's; from it, what the new code
 * gives started from the old code's state, computed here in memory.
 */
import path from 'node:path';
import { rm } from 'node:fs/promises';
import { expect, it } from 'vitest';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { upgradeStream } from '../../core/streaming/upgrade.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { bag, readOutput, readTextOutput, removeDir, replayInto, stage, tempDir } from '../support/stream-harness.ts';
import wordcount from '../../examples/wordcount.ts';
import grep from '../../examples/grep.ts';
import windowedCounts from '../../examples/windowed-counts.ts';
import typedSessions from '../../examples/typed-sessions.ts';
import wordcountV2 from '../fixtures/wordcount-v2.ts';
import grepV2 from '../fixtures/grep-v2.ts';
import windowedCountsV2 from '../fixtures/windowed-counts-v2.ts';
import typedSessionsV2 from '../fixtures/typed-sessions-v2.ts';

const BOUNDARY = 3;

/**
 * Runs `before` over the first BOUNDARY intervals of `lines` (one upload each), upgrades the root
 * to `after`, runs it over the rest, and hands the root to `check`.
 */
async function upgradedMidStream(before: Pipeline, after: Pipeline, lines: string[], check: (root: string) => Promise<void>): Promise<void> {
  const base = await tempDir();
  const root = path.join(base, 'root');
  const runTo = async (pipeline: Pipeline, to: number) => {
    const staged = await stage(path.join(base, `staged-${to}`), lines.slice(0, to).map((text) => ({ 'u.txt': `${text}\n` })));
    try {
      await replayInto(pipeline, root, staged);
    } finally {
      await rm(staged, { recursive: true, force: true });
    }
  };
  try {
    await runTo(before, BOUNDARY);
    expect((await upgradeStream(new FsObjectStore(root), after))?.boundary).toBe(BOUNDARY);
    await runTo(after, lines.length);
    await check(root);
  } finally {
    await removeDir(base);
  }
}

const wordsOf = (line: string) => line.split(/\s+/).filter(Boolean);
/** Each distinct value with how often it occurs. */
const tally = (values: string[]) => [...new Set(values)].map((v) => [v, values.filter((x) => x === v).length] as [string, number]);

it('wordcount: a changed update function, other partitions and an added output, its unnamed totals carried', async () => {
  const lines = ['the quick fox', 'the lazy dog', 'fox and dog and fox', 'the end', 'a dog a fox', 'the the'];
  await upgradedMidStream(wordcount, wordcountV2, lines, async (root) => {
    const totals = new Map<string, number>();
    for (let k = 0; k < lines.length; k++) {
      const counts = tally(wordsOf(lines[k]!));
      for (const [w, n] of counts) totals.set(w, (totals.get(w) ?? 0) + (k < BOUNDARY ? n : 10 * n));
      expect(bag(await readOutput(root, 'totals', k))).toEqual(bag([...totals]));
      expect(bag(await readOutput(root, 'repeated', k))).toEqual(k < BOUNDARY ? undefined : bag(counts.filter(([, n]) => n > 1)));
    }
  });
});

it('grep: bad records quarantined from the boundary on, other partitions, and an added output', async () => {
  const lines = ['error code=1 disk', 'info fine', 'error code=2 net\nerror no code', 'error code=3 cpu\nerror nothing', 'warn code=9', 'error code=4 again'];
  await upgradedMidStream(grep, grepV2, lines, async (root) => {
    for (let k = 0; k < lines.length; k++) {
      const matches = lines[k]!.split('\n').filter((l) => l.includes('error'));
      expect(bag(await readTextOutput(root, 'matches', k))).toEqual(bag(matches));
      const codes = matches.flatMap((l) => /code=(\d+)/.exec(l)?.slice(1).map(Number) ?? []);
      // A match without a code is a bad record of the new output, quarantined, not fatal.
      expect(bag(await readOutput(root, 'codes', k))).toEqual(k < BOUNDARY ? undefined : bag(codes));
    }
  });
});

it('windowed-counts: a changed function before the window and other partitions, the window continuous across the boundary', async () => {
  const lines = ['A a b', 'b B c', 'a c', 'A b', 'C c a', 'a'];
  await upgradedMidStream(windowedCounts, windowedCountsV2, lines, async (root) => {
    // Each interval's words as its own code read them: case-blind from the boundary on.
    const perInterval = lines.map((line, k) => wordsOf(k < BOUNDARY ? line : line.toLowerCase()));
    for (let k = 0; k < lines.length; k++) {
      const windowed = tally(perInterval.slice(Math.max(0, k - 2), k + 1).flat());
      // An incremental window may keep a word whose count fell to 0 (as Spark does without a filter function): compared without it.
      const nonZero = (pairs: unknown[] | undefined) => bag(pairs?.filter((p) => (p as [string, number])[1] !== 0));
      expect(nonZero(await readOutput(root, 'windowed', k))).toEqual(bag(windowed));
      expect(bag(await readOutput(root, 'frequent', k))).toEqual(k < BOUNDARY ? undefined : bag(windowed.filter(([, n]) => n >= 3)));
    }
  });
});

it('typed-sessions: a session state migrated to another type and another bad-record policy, spending and its window carried', async () => {
  const users = ['ann', 'bob', 'cat'];
  // Every user acts in every interval, so no session times out; ann and cat buy.
  const lines = [0, 1, 2, 3, 4, 5].map((k) => `ann buy ${100 * (k + 1)}\nbob view 0\ncat buy 250`);
  await upgradedMidStream(typedSessions, typedSessionsV2, lines, async (root) => {
    for (let k = 0; k < lines.length; k++) {
      const cents = (user: string) => (user === 'ann' ? (100 * (k + 1) * (k + 2)) / 2 : user === 'cat' ? 250 * (k + 1) : 0);
      const open = users.map((user) => [user, k < BOUNDARY ? { actions: k + 1, cents: cents(user) } : { events: k + 1, spent: cents(user) / 100 }]);
      expect(bag(await readOutput(root, 'open-sessions', k))).toEqual(bag(open));
      const spending = ['ann', 'cat'].map((user) => ({ user, actionsInLast3: Math.min(k + 1, 3), totalSpent: cents(user) }));
      expect(bag(await readOutput(root, 'spending', k))).toEqual(bag(spending));
    }
  });
});
