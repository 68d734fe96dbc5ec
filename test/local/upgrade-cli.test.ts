/**
 * `dstream upgrade` and `dstream savepoint` as a user runs them: a stopped stream goes on with
 * changed code from its state, faults injected after the upgrade change no byte of its outputs,
 * and a savepoint moves the stream to a fresh root where it goes on identically.
 */
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { bag, outputFiles, readOutput, removeDir, runCli, stage, tempDir } from '../support/stream-harness.ts';

const before = path.resolve('test/fixtures/upgrade-before.ts');
const after = path.resolve('test/fixtures/upgrade-after.ts');
const intervals = [{ 'u.txt': 'a b a\n' }, { 'u.txt': 'b c\n' }, { 'u.txt': 'a\n' }, { 'u.txt': 'C d\n' }, { 'u.txt': 'a A\n' }];
const replay = (pipeline: string, staged: string, root: string, ...extra: string[]) =>
  runCli(['replay', pipeline, '--staged', staged, '--root', root, '--workers', '2', '--partitions', '2', ...extra]);

describe('dstream upgrade and savepoint', () => {
  it('carry a stream on with changed code, identically under faults and on a fresh root', async () => {
    const base = await tempDir();
    try {
      const early = await stage(path.join(base, 'early'), intervals.slice(0, 3));
      const all = await stage(path.join(base, 'all'), intervals);
      const root = path.join(base, 'root');
      expect((await replay(before, early, root)).code).toBe(0);

      const unchanged = await replay(after, all, root);
      expect(unchanged.code).toBe(1);
      expect(unchanged.stderr).toContain('run dstream upgrade <pipeline>');
      const other = await runCli(['upgrade', path.resolve('test/fixtures/sleepy.ts'), '--root', root]);
      expect([other.code, other.stderr]).toEqual([1, expect.stringContaining('this stream is pipeline totals, not sleepy')]);

      const upgraded = await runCli(['upgrade', after, '--root', root]);
      expect(upgraded.stderr).toBe('');
      expect(upgraded.stdout).toContain('from interval 3 on');
      expect(upgraded.stdout).toContain('state carried: totals');
      expect((await replay(after, all, root)).code).toBe(0);
      // a: 3 before the boundary, then 10 for each of the two at interval 4; c and C are one word from then on.
      expect(bag(await readOutput(root, 'totals', 4))).toEqual(bag([['a', 23], ['b', 2], ['c', 11], ['d', 10]]));

      // The same upgrade with faults injected after it: byte for byte the same outputs.
      const chaotic = path.join(base, 'chaotic');
      expect((await replay(before, early, chaotic)).code).toBe(0);
      expect((await runCli(['upgrade', after, '--root', chaotic])).code).toBe(0);
      // Attempts to spare, as in the chaos suite: a task failing 4 deliveries in a row is a dead letter, not what this checks.
      const faults = await replay(after, all, chaotic, '--chaos', 'seed=3,task-error=0.2,task-crash=0.1,duplicate=0.2,lose-cache=0.3,driver-crash=0.1', '--max-attempts', '12');
      expect(faults.stderr).toBe('');
      expect(await outputFiles(chaotic)).toEqual(await outputFiles(root));

      // A savepoint of the old stream, imported with the new code into a fresh root.
      const old = path.join(base, 'old');
      expect((await replay(before, early, old)).code).toBe(0);
      const savepoint = path.join(base, 'savepoint');
      const exported = await runCli(['savepoint', 'export', '--root', old, '--out', savepoint]);
      expect([exported.code, exported.stdout]).toEqual([0, expect.stringContaining('savepoint of totals at interval 3 (totals)')]);
      const fresh = path.join(base, 'fresh');
      const imported = await runCli(['savepoint', 'import', after, '--from', savepoint, '--root', fresh]);
      expect([imported.code, imported.stderr]).toEqual([0, '']);
      expect((await replay(after, all, fresh)).code).toBe(0);
      const moved = [...(await outputFiles(fresh))];
      expect(moved.length).toBeGreaterThan(0);
      for (const [file, bytes] of moved) expect([file, bytes]).toEqual([file, (await outputFiles(root)).get(file)]);
    } finally {
      await removeDir(base);
    }
  }, 180_000);
});
