/**
 * What a user may do to an upload after dropping it in, and what survives: in the embedded
 * runtime an upload is pinned when it is taken (moved out of incoming/), so a replaced, appended
 * or deleted file never changes an admitted interval; what cannot be read is refused with a record
 * under errors/, counted, and the stream goes on; an interval failed on a bad record goes on with
 * `dstream quarantine`, without a change of code.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendFile, link, mkdir, readdir, readFile, rename, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { EmbeddedRuntime } from '../../local/runtime/embedded-runtime.ts';
import lines from '../fixtures/lines.ts';
import { readTextOutput, removeDir, runCli, stage, tempDir } from '../support/stream-harness.ts';

let base: string;
let root: string;

beforeEach(async () => {
  base = await tempDir();
  root = path.join(base, 'root');
});

afterEach(async () => {
  await removeDir(base);
});

/** The live runtime with a clock we move by hand: each `tick` lets the scanner look once. */
async function liveRuntime() {
  let now = 1_000_000;
  const clock = { now: () => now, sleep: async (ms: number) => void (now += ms) };
  const runtime = await EmbeddedRuntime.open({ pipelinePath: 'lines.ts', inProcess: lines, root, workers: 1, partitions: 2, intervalMs: 1_000, clock });
  return { runtime, incoming: path.join(root, 'incoming'), advance: (ms: number) => (now += ms) };
}

async function refusedRecords(k: number): Promise<{ name: string; reason: string }[]> {
  const dir = path.join(root, 'errors', `interval=${String(k).padStart(6, '0')}`, 'uploads');
  const files = await readdir(dir).catch(() => [] as string[]);
  return Promise.all(files.map(async (f) => JSON.parse(await readFile(path.join(dir, f), 'utf8'))));
}

describe('the embedded runtime pins each upload when it takes it', () => {
  it('a file replaced, appended to or deleted after it was taken changes nothing admitted; a file written again is a second upload, counted once', async () => {
    const { runtime, incoming } = await liveRuntime();
    try {
      await mkdir(incoming, { recursive: true });
      await writeFile(path.join(incoming, 'a.txt'), 'one\n');
      await writeFile(path.join(incoming, 'b.txt'), 'two\n');
      const [first] = await runtime.live({ intervals: 1 });
      expect(first!.uploads).toBe(2);
      // Taken: incoming/ holds nothing any more, and what happens to the names touches no admitted byte.
      expect(await readdir(incoming)).toEqual([]);
      await writeFile(path.join(base, 'new.txt'), 'three\n');
      await rename(path.join(base, 'new.txt'), path.join(incoming, 'a.txt'));
      await appendFile(path.join(incoming, 'b.txt'), 'four\n');
      const [second] = await runtime.live({ intervals: 1 });
      expect(second!.uploads).toBe(2);
      // Deleting what a user dropped in deletes nothing an interval needs: it is no longer there.
      expect(await readdir(incoming)).toEqual([]);
    } finally {
      await runtime.close();
    }
    expect((await readTextOutput(root, 'lines', 0))?.sort()).toEqual(['one', 'two']);
    expect((await readTextOutput(root, 'lines', 1))?.sort()).toEqual(['four', 'three']);
  });

  it('copies a file that has another name elsewhere (a hard link), so editing it there changes nothing admitted', async () => {
    const { runtime, incoming } = await liveRuntime();
    const original = path.join(base, 'kept-by-the-user.txt');
    try {
      await mkdir(incoming, { recursive: true });
      await writeFile(original, 'as uploaded\n');
      await link(original, path.join(incoming, 'linked.txt'));
      await runtime.live({ intervals: 1 });
      await writeFile(original, 'edited afterwards\n');
    } finally {
      await runtime.close();
    }
    expect(await readTextOutput(root, 'lines', 0)).toEqual(['as uploaded']);
    // The admitted bytes, which any recomputation of interval 0 reads, are still the uploaded ones.
    const [pinned] = (await readdir(path.join(root, 'intake', 'uploads'), { recursive: true })).filter((f) => String(f).endsWith('linked.txt'));
    expect(await readFile(path.join(root, 'intake', 'uploads', String(pinned)), 'utf8')).toBe('as uploaded\n');
    expect(await readFile(original, 'utf8')).toBe('edited afterwards\n');
  });

  it('refuses what it cannot read (a symbolic link, a backslash, a name that is not UTF-8), records why, and reads the rest', async () => {
    const { runtime, incoming } = await liveRuntime();
    try {
      await mkdir(incoming, { recursive: true });
      await writeFile(path.join(base, 'target.txt'), 'linked\n');
      await symlink(path.join(base, 'target.txt'), path.join(incoming, 'link.txt'));
      await writeFile(path.join(incoming, 'back\\slash.txt'), 'slashed\n');
      await writeFile(Buffer.concat([Buffer.from(incoming + '/latin-'), Buffer.from([0xe9]), Buffer.from('.txt')]), 'latin\n');
      await writeFile(path.join(incoming, 'good.txt'), 'good\n');
      // Still being written, by the convention Spark's file streams share: left alone.
      await writeFile(path.join(incoming, '.partial.txt'), 'partial\n');
      const [report] = await runtime.live({ intervals: 1 });
      expect(report).toMatchObject({ uploads: 1, refusedUploads: 3 });
    } finally {
      await runtime.close();
    }
    expect(await readTextOutput(root, 'lines', 0)).toEqual(['good']);
    const refused = await refusedRecords(0);
    expect(refused.map((r) => [r.name, r.reason]).sort()).toEqual([
      ['back\\slash.txt', expect.stringMatching(/its name cannot be a key: .*backslash/)],
      ['latin-\\xe9.txt', expect.stringMatching(/not valid UTF-8/)],
      ['link.txt', expect.stringMatching(/symbolic link/)],
    ]);
    // Moved aside with their bytes, so they are not offered again; the partial file is untouched.
    expect((await readdir(incoming)).sort()).toEqual(['.partial.txt']);
  });

  it('a file whose clock is an hour ahead is taken at once, into the interval open now', async () => {
    const { runtime, incoming } = await liveRuntime();
    try {
      await mkdir(incoming, { recursive: true });
      const file = path.join(incoming, 'ahead.txt');
      await writeFile(file, 'ahead\n');
      const hourAhead = new Date(Date.now() + 3_600_000);
      await utimes(file, hourAhead, hourAhead);
      const [report] = await runtime.live({ intervals: 1 });
      expect(report!.uploads).toBe(1);
    } finally {
      await runtime.close();
    }
    expect(await readTextOutput(root, 'lines', 0)).toEqual(['ahead']);
  });
});

describe('replay', () => {
  it('refuses a staged symbolic link and a name too long to keep, naming why, and leaves files still being written alone', async () => {
    const long = `${'d'.repeat(200)}/${'d'.repeat(200)}/${'d'.repeat(200)}/${'d'.repeat(200)}/${'n'.repeat(200)}.txt`;
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\n', '.partial.txt': 'partial\n', [long]: 'long\n' }]);
    await writeFile(path.join(base, 'elsewhere.txt'), 'elsewhere\n');
    await symlink(path.join(base, 'elsewhere.txt'), path.join(staged, '0', 'link.txt'));
    const result = await runCli(['replay', 'test/fixtures/lines.ts', '--staged', staged, '--root', root, '--workers', '1']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('2 uploads refused, see errors/interval=000000/uploads/');
    expect(await readTextOutput(root, 'lines', 0)).toEqual(['a']);
    const refused = await refusedRecords(0);
    expect(refused.map((r) => [r.name, r.reason]).sort()).toEqual([
      [long, expect.stringMatching(/^its name is 1008 bytes, longer than the \d+ the embedded runtime can keep an upload under/)],
      ['link.txt', expect.stringMatching(/symbolic link/)],
    ]);
  });
});

describe('the runbook for an interval that failed on a bad record', () => {
  it('dstream quarantine lets the stream go on with the same code, and its output equals a run that quarantined from the start', async () => {
    const bad = Buffer.concat([Buffer.from('fine\n'), Buffer.from([0xc3, 0x28, 0x0a]), Buffer.from('also fine\n')]);
    const staged = await stage(path.join(base, 'staged'), [{ 'ok.txt': 'hello\n' }, { 'bad.txt': bad }, { 'next.txt': 'next\n' }]);
    const replay = () => runCli(['replay', 'test/fixtures/lines.ts', '--staged', staged, '--root', root, '--workers', '2', '--partitions', '2']);

    const failed = await replay();
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/bad\.txt at byte 5: not valid UTF-8/);
    expect(failed.stderr).toContain('the record: ');

    const marked = await runCli(['quarantine', '1', '--root', root]);
    expect(marked.code, marked.stderr).toBe(0);
    expect(marked.stdout).toContain('interval 1 will quarantine its bad records');

    const resumed = await replay();
    expect(resumed.code, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/interval 1: .*1 bad records quarantined/);
    expect((await readTextOutput(root, 'lines', 1))?.sort()).toEqual(['also fine', 'fine']);
    expect(await readTextOutput(root, 'lines', 2)).toEqual(['next']);

    const again = await runCli(['quarantine', '1', '--root', root]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('interval 1 is committed: there is nothing to rerun');
  });
});
