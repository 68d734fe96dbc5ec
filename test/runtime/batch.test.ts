/**
 * `dstream batch`: each run is a run of its own, as a Spark job is, reading the store as it is
 * then and writing its own outputs; a path that holds nothing is an error; a run that stopped
 * can be finished with --resume.
 */
import { afterEach, beforeEach, expect, it } from 'vitest';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { removeDir, runCli, tempDir } from '../support/stream-harness.ts';

let base: string;
let root: string;

beforeEach(async () => {
  base = await tempDir();
  root = path.join(base, 'root');
  await mkdir(path.join(root, 'logs'), { recursive: true });
});

afterEach(async () => {
  await removeDir(base);
});

const batch = (...extra: string[]) => runCli(['batch', 'test/fixtures/error-report.ts', '--root', root, '--workers', '1', ...extra]);
const runOf = (stdout: string) => /batch run (\S+)/.exec(stdout)?.[1];

async function errorsOf(run: string): Promise<unknown[]> {
  const dir = path.join(root, 'output', 'errors', `batch=error-report.run-${run}`);
  const files = (await readdir(dir)).filter((f) => f.startsWith('part-'));
  const lines = (await Promise.all(files.map((f) => readFile(path.join(dir, f), 'utf8')))).join('').split('\n').filter(Boolean);
  return lines.map((l) => JSON.parse(l)).sort();
}

it('runs anew each time over the store as it is then, each run in folders of its own', async () => {
  await writeFile(path.join(root, 'logs', 'a.txt'), 'ok\nerror: disk\nerror: disk\n');
  const first = await batch();
  expect(first.code, first.stderr).toBe(0);
  expect(first.stdout).toMatch(/total \(1 records\):\n {2}2/);

  await writeFile(path.join(root, 'logs', 'b.txt'), 'error: net\n');
  const second = await batch();
  expect(second.code, second.stderr).toBe(0);
  expect(second.stdout).toMatch(/total \(1 records\):\n {2}3/);

  const [run1, run2] = [runOf(first.stdout)!, runOf(second.stdout)!];
  expect(run1).not.toBe(run2);
  expect(await errorsOf(run1)).toEqual([['error: disk', 2]]);
  expect(await errorsOf(run2)).toEqual([['error: disk', 2], ['error: net', 1]].sort());

  // A finished run resumed is done already: the same answer, nothing run again.
  const resumed = await batch('--resume', run1);
  expect(resumed.code, resumed.stderr).toBe(0);
  expect(resumed.stdout).toMatch(/total \(1 records\):\n {2}2/);
});

it('refuses a path that holds nothing, as Spark does, and a run that does not exist', async () => {
  const empty = await batch();
  expect(empty.code).toBe(1);
  expect(empty.stderr).toContain('batch job error-report reads "logs/", which holds no objects');
  const unknown = await batch('--resume', '20260101T000000Zabcd');
  expect(unknown.code).toBe(1);
  expect(unknown.stderr).toContain('batch job error-report has no run 20260101T000000Zabcd to resume');
});
