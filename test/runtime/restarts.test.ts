/**
 * Deliveries count failures of a task, not restarts of the runtime that ran it: the `dstream`
 * process killed while a task runs, more times than a task may be delivered, and the run still
 * ends with the outputs of a run that was never interrupted.
 */
import { spawn } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { outputFiles, removeDir, runCli, stage, tempDir } from '../support/stream-harness.ts';

const fixture = path.resolve('test/fixtures/sleepy.ts');
const maxAttempts = 2;
const replayArgs = (staged: string, root: string) => ['replay', fixture, '--staged', staged, '--root', root, '--workers', '1', '--partitions', '1', '--max-attempts', String(maxAttempts)];

/** Starts `dstream replay`, waits until the slow task has started `runs` times in all, and kills the process with SIGKILL. */
async function killWhileTaskRuns(args: string[], beacon: string, runs: number): Promise<void> {
  const child = spawn(process.execPath, [path.resolve('bin/dstream.js'), ...args], { env: { ...process.env, DSTREAM_TEST_BEACON: beacon }, stdio: 'ignore' });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  const deadline = Date.now() + 30_000;
  while ((await readFile(beacon, 'utf8').catch(() => '')).length < runs) {
    if (child.exitCode !== null) throw new Error(`dstream exited with ${child.exitCode} before the task started`);
    if (Date.now() > deadline) throw new Error('the slow task did not start within 30 s');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  child.kill('SIGKILL');
  await exited;
}

describe('a runtime killed while a task runs', () => {
  it(`more than ${maxAttempts} times (the delivery bound) neither dead-letters the task nor changes the outputs`, async () => {
    const base = await tempDir();
    try {
      const staged = await stage(path.join(base, 'staged'), [{ 'in.txt': 'a\nslow\nb\n' }, { 'next.txt': 'c\n' }]);
      const uninterrupted = path.join(base, 'uninterrupted');
      expect((await runCli(replayArgs(staged, uninterrupted))).code).toBe(0);

      const root = path.join(base, 'killed');
      const beacon = path.join(base, 'beacon');
      for (let kill = 1; kill <= maxAttempts + 1; kill++) await killWhileTaskRuns(replayArgs(staged, root), beacon, kill);

      const finished = await runCli(replayArgs(staged, root), { DSTREAM_TEST_BEACON: beacon });
      expect(finished.stderr).toBe('');
      expect(finished.code).toBe(0);
      // The task ran to the end once more after the kills, and was never dead-lettered, in any run.
      expect((await readFile(beacon, 'utf8')).length).toBe(maxAttempts + 2);
      expect(await readdir(path.join(root, 'errors')).catch(() => [])).toEqual([]);
      expect(await outputFiles(root)).toEqual(await outputFiles(uninterrupted));
      expect((await outputFiles(root)).get('output/lines/interval=000000/part-00000')).toBe('a\nSLOW\nb\n');
    } finally {
      await removeDir(base);
    }
  }, 120_000);
});
