/**
 * The embedded runtime with real worker processes: the examples' outputs are right for any
 * staged input, replays are byte-for-byte deterministic, and bad input gets a clear error that
 * loses nothing already committed.
 */
import { describe, expect, it } from 'vitest';
import path from 'node:path';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { EmbeddedRuntime } from '../../local/runtime/embedded-runtime.ts';
import { sampleLines } from '../../local/sample/generate.ts';
import { definePipeline } from '../../core/index.ts';
import { main } from '../../local/cli/main.ts';
import { UsageError } from '../../local/cli/args.ts';
import { bag, outputFiles, runCli, readAllLines, readOutput, readTextOutput, removeDir, stage, tempDir } from '../support/stream-harness.ts';

const example = (name: string) => path.resolve('examples', name);
const fixture = (name: string) => path.resolve('test/fixtures', name);

/** `dstream replay`; resolves with its output, rejects with its error message. */
async function replay(pipelinePath: string, staged: string, root: string, options: { workers?: number; partitions?: number } = {}) {
  const args = ['replay', pipelinePath, '--staged', staged, '--root', root, '--workers', String(options.workers ?? 2), '--partitions', String(options.partitions ?? 3)];
  const result = await runCli(args);
  if (result.code !== 0) throw new Error(`exit ${result.code}: ${result.stderr}`);
  return result.stdout.split('\n').filter((l) => l.startsWith('interval '));
}

const words = (text: string) => text.split(/\s+/).filter(Boolean);
const countWords = (texts: string[]) => {
  const m = new Map<string, number>();
  for (const t of texts) for (const w of words(t)) m.set(w, (m.get(w) ?? 0) + 1);
  return [...m];
};

describe('examples in the embedded runtime', () => {
  it('wordcount writes each interval\'s counts and running totals, including across an empty interval', async () => {
    const base = await tempDir();
    const files: Record<string, string>[] = [
      { 'a.txt': sampleLines(300, 1), 'b.txt': sampleLines(200, 2) },
      {},
      { 'c.txt': sampleLines(250, 3), 'nested/d.txt': 'the the the\n' },
    ];
    const staged = await stage(path.join(base, 'staged'), files);
    try {
      const progress = await replay(example('wordcount.ts'), staged, path.join(base, 'root'));
      expect(progress.map((l) => l.split(':')[0])).toEqual(['interval 0', 'interval 1', 'interval 2']);
      const texts = files.map((f) => Object.values(f));
      for (let k = 0; k < 3; k++) {
        expect(bag(await readOutput(path.join(base, 'root'), 'counts', k))).toEqual(bag(countWords(texts[k]!)));
        expect(bag(await readOutput(path.join(base, 'root'), 'totals', k))).toEqual(bag(countWords(texts.slice(0, k + 1).flat())));
      }
    } finally {
      await removeDir(base);
    }
  });

  it('windowed-counts gives the counts of the last three intervals', async () => {
    const base = await tempDir();
    const files = [0, 1, 2, 3, 4].map((k): Record<string, string> => (k === 2 ? {} : { 'x.txt': sampleLines(150, 10 + k) }));
    const staged = await stage(path.join(base, 'staged'), files);
    try {
      await replay(example('windowed-counts.ts'), staged, path.join(base, 'root'));
      for (let k = 0; k < 5; k++) {
        const window = files.slice(Math.max(0, k - 2), k + 1).flatMap((f) => Object.values(f));
        expect(bag(await readOutput(path.join(base, 'root'), 'windowed', k)), `interval ${k}`).toEqual(bag(countWords(window)));
      }
    } finally {
      await removeDir(base);
    }
  });

  it('grep writes matching lines and their count per interval', async () => {
    const base = await tempDir();
    const files = [{ 'log.txt': 'ok\nan error here\nfine\nerror again\n' }, { 'log.txt': 'nothing\n' }];
    const staged = await stage(path.join(base, 'staged'), files);
    const root = path.join(base, 'root');
    try {
      await replay(example('grep.ts'), staged, root);
      expect((await readTextOutput(root, 'matches', 0))?.sort()).toEqual(['an error here', 'error again']);
      expect(await readOutput(root, 'match-count', 0)).toEqual([2]);
      expect(await readTextOutput(root, 'matches', 1)).toEqual([]);
      expect(await readOutput(root, 'match-count', 1)).toEqual([0]);
    } finally {
      await removeDir(base);
    }
  });
});

describe('dstream lineage', () => {
  it('prints an interval\'s uploads and stages as a readable graph, lists the uploads on request, or says there is none', async () => {
    const base = await tempDir();
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'x y\n' }, { 'b.txt': 'y z\n' }]);
    const root = path.join(base, 'root');
    try {
      await replay(example('wordcount.ts'), staged, root);
      const shown = await runCli(['lineage', '1', '--root', root]);
      expect(shown.code).toBe(0);
      expect(shown.stdout).toContain('interval=000001 of pipeline wordcount');
      expect(shown.stdout).toContain('uploads: 1 (4 B); --uploads lists them');
      expect(shown.stdout).toMatch(/textStream \[(\d+) partitions\] \1 splits of \d+ byte ranges \(4 B\)/);
      expect(shown.stdout).toMatch(/map-r\d+: \d+ tasks, writes shuffle blocks/);
      expect(shown.stdout).toMatch(/result-\S+: .* persists to cache\/interval=000001\/persist\//);
      expect(shown.stdout).toContain('reads cache/interval=000000/persist/');
      expect(shown.stdout).toMatch(/result-\S+: .* writes output totals \(json\)/);
      const listed = await runCli(['lineage', '1', '--root', root, '--uploads']);
      expect(listed.stdout).toMatch(/uploads: 1 \(4 B\)\n  \S*b\.txt \(4 B\)\n/);
      const json = await runCli(['lineage', '1', '--root', root, '--json']);
      expect(JSON.parse(json.stdout)).toMatchObject({ interval: 1, uploads: { count: 1, bytes: 4 } });
      const jsonListed = await runCli(['lineage', '1', '--root', root, '--json', '--uploads']);
      expect(JSON.parse(jsonListed.stdout).uploads).toMatchObject([{ name: 'b.txt', size: 4 }]);
      const missing = await runCli(['lineage', '7', '--root', root]);
      expect(missing.code).toBe(1);
      expect(missing.stderr).toContain('no lineage record for interval 7');
    } finally {
      await removeDir(base);
    }
  });
});

describe('determinism', () => {
  it('two replays of the same input give byte-identical output files, whatever the number of workers', async () => {
    const base = await tempDir();
    const files = [0, 1, 2, 3].map((k) => ({ 'a.txt': sampleLines(400, 20 + k), 'b.txt': sampleLines(100, 30 + k) }));
    const staged = await stage(path.join(base, 'staged'), files);
    try {
      await replay(example('wordcount.ts'), staged, path.join(base, 'one'), { workers: 1 });
      await replay(example('wordcount.ts'), staged, path.join(base, 'two'), { workers: 2 });
      const one = await outputFiles(path.join(base, 'one'));
      const two = await outputFiles(path.join(base, 'two'));
      expect(one.size).toBeGreaterThan(8);
      expect([...two.entries()]).toEqual([...one.entries()]);
    } finally {
      await removeDir(base);
    }
  });
});

describe('bad input gets a clear error and loses nothing', () => {
  it('a pipeline module that is missing, throws, or exports no pipeline', async () => {
    const root = await tempDir();
    try {
      await expect(EmbeddedRuntime.open({ pipelinePath: fixture('nope.ts'), root })).rejects.toThrow(/nope\.ts does not exist/);
      await expect(EmbeddedRuntime.open({ pipelinePath: fixture('throws-on-load.ts'), root })).rejects.toThrow(/failed to load: boom while loading \(at .*throws-on-load\.ts:1:7\)/);
      await expect(EmbeddedRuntime.open({ pipelinePath: fixture('no-pipeline.ts'), root })).rejects.toThrow(/exports no pipeline.*no default export/);
    } finally {
      await removeDir(root);
    }
  });

  it('a staged directory with a gap or a folder that is not a number, before anything runs', async () => {
    const base = await tempDir();
    try {
      await stage(path.join(base, 'gap'), [{ 'a.txt': 'x\n' }, { 'b.txt': 'y\n' }]);
      await mkdir(path.join(base, 'gap', '3'));
      await expect(replay(example('wordcount.ts'), path.join(base, 'gap'), path.join(base, 'root'))).rejects.toThrow(/gap: interval 2 is missing/);
      await stage(path.join(base, 'names'), [{ 'a.txt': 'x\n' }]);
      await mkdir(path.join(base, 'names', 'first'));
      await expect(replay(example('wordcount.ts'), path.join(base, 'names'), path.join(base, 'root'))).rejects.toThrow(/not interval numbers: first/);
      expect(existsSync(path.join(base, 'root', 'lineage'))).toBe(false);
    } finally {
      await removeDir(base);
    }
  });

  it('a mistyped option, a duration with no unit, or an extra argument, before anything runs', async () => {
    await expect(main(['replay', 'p.ts', '--staged', 's', '--root', 'r', '--partition', '8'])).rejects.toThrow('replay has no option --partition; did you mean --partitions?');
    await expect(main(['run', 'p.ts', '--root', 'r', '--interval', '500'])).rejects.toThrow('cannot read "500" as a duration: give a unit, as in 500ms, 2s or 1m');
    await expect(main(['replay', 'p.ts', 'q.ts', '--root', 'r'])).rejects.toThrow("replay takes 1 argument before its options; unexpected 'q.ts'");
    await expect(main(['replay', 'p.ts', '--root', 'r'])).rejects.toThrow(new UsageError('replay needs --staged', 'replay'));
  });

  it('a staged file outside the interval folders', async () => {
    const base = await tempDir();
    try {
      const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'x\n' }]);
      await writeFile(path.join(staged, 'stray.txt'), 'y\n');
      const result = await runCli(['replay', example('wordcount.ts'), '--staged', staged, '--root', path.join(base, 'root')]);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('has files outside the interval folders: stray.txt');
      expect(existsSync(path.join(base, 'root', 'output'))).toBe(false);
    } finally {
      await removeDir(base);
    }
  });

  it('a root that holds another pipeline\'s stream, before anything runs on it', async () => {
    const base = await tempDir();
    try {
      const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'error here\nfine\n' }]);
      const root = path.join(base, 'root');
      await replay(example('wordcount.ts'), staged, root);
      const before = await outputFiles(root);
      const other = await runCli(['replay', example('grep.ts'), '--staged', staged, '--root', root]);
      expect(other.code).toBe(1);
      expect(other.stderr).toMatch(/this store holds the stream of pipeline wordcount \(fingerprint \w+\), not of grep/);
      expect(await outputFiles(root)).toEqual(before);
    } finally {
      await removeDir(base);
    }
  });

  it('a task whose worker dies every time is dead-lettered, with how it died as its last error', async () => {
    const base = await tempDir();
    try {
      const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'fine\ndie\n' }]);
      const root = path.join(base, 'root');
      const result = await runCli(['replay', fixture('exits.ts'), '--staged', staged, '--root', root, '--max-attempts', '2', '--workers', '1']);
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('its worker process died (exit code 3)');
      const [letter] = (await readdir(path.join(root, 'errors', 'interval=000000', 'dead-letters'), { recursive: true })).filter((f) => String(f).endsWith('.json'));
      const record = JSON.parse(await readFile(path.join(root, 'errors', 'interval=000000', 'dead-letters', String(letter)), 'utf8'));
      expect(record).toMatchObject({ receiveCount: 2, lastError: 'WorkerDied: its worker process died (exit code 3)' });
    } finally {
      await removeDir(base);
    }
  });

  it('an output name that would escape the root', () => {
    for (const name of ['../escape', 'a/b', '', '.hidden', 'x'.repeat(200)]) {
      expect(() => definePipeline({ name: 'escape' }, (ctx) => ctx.textStream().saveAsTextFiles(name)), name).toThrow(/invalid output name/);
    }
  });

  it('bytes that are not UTF-8 fail the interval at once, naming the upload, offset and way on, after earlier intervals committed', async () => {
    const base = await tempDir();
    const bad = Buffer.concat([Buffer.from('fine\n'), Buffer.from([0xc3, 0x28, 0x0a])]);
    const staged = await stage(path.join(base, 'staged'), [{ 'ok.txt': 'hello\n' }, { 'bad.txt': bad }]);
    const root = path.join(base, 'root');
    try {
      const failure = replay(fixture('lines.ts'), staged, root);
      await expect(failure).rejects.toThrow(/failed on delivery 1 with an error that recurs on every delivery, so it was not retried: BadRecordError: source failed/);
      await expect(failure).rejects.toThrow(/reading bad\.txt at byte 5: not valid UTF-8/);
      await expect(failure).rejects.toThrow(/run dstream quarantine 1 --root <dir>/);
      expect(await readTextOutput(root, 'lines', 0)).toEqual(['hello']);
      expect(await readTextOutput(root, 'lines', 1)).toBeUndefined();
      // Not retried, so never dead-lettered: the final failure sits beside the completion records.
      const tasks = await readdir(path.join(root, 'lineage', 'interval=000001', 'tasks'), { recursive: true });
      expect(tasks.filter((f) => /\.failed-\w+\.json$/.test(String(f)))).toHaveLength(1);
    } finally {
      await removeDir(base);
    }
  });

  it('an unstorable value returned by a user function fails the interval at once, naming the operator, upload and offset', async () => {
    const base = await tempDir();
    const staged = await stage(path.join(base, 'staged'), [{ 'in.txt': 'a\nhole 1\nbb\n' }]);
    const root = path.join(base, 'root');
    try {
      const failure = replay(fixture('holes.ts'), staged, root, { partitions: 1 });
      await expect(failure).rejects.toThrow(
        /failed on delivery 1 with an error that recurs on every delivery, so it was not retried: BadRecordError: map @d1 map failed on a record in interval=000000, stage \S+, partition 0, reading in\.txt at byte 2: record\[1\] is undefined/,
      );
      await expect(failure).rejects.toThrow(/run dstream quarantine 0 --root <dir>/);
      expect(await readOutput(root, 'pairs', 0)).toBeUndefined();
    } finally {
      await removeDir(base);
    }
  });

  it('with quarantine, an unstorable value is kept under errors/ with its operator, upload and offset, and the task goes on', async () => {
    const base = await tempDir();
    const staged = await stage(path.join(base, 'staged'), [{ 'in.txt': 'a\nhole 1\nbb\n' }]);
    const root = path.join(base, 'root');
    try {
      const progress = await replay(fixture('holes-quarantine.ts'), staged, root, { partitions: 1 });
      expect(progress[0]).toMatch(/1 bad records? quarantined under errors\//);
      expect(await readOutput(root, 'pairs', 0)).toEqual([['a', 1], ['bb', 2]]);
      const quarantined = (await readAllLines(path.join(root, 'errors', 'interval=000000', 'records'))).map((l) => JSON.parse(l));
      expect(quarantined).toEqual([{ operator: 'map @d1 map', error: 'record[1] is undefined', record: ['hole 1', null], input: 'in.txt', offset: 2 }]);
    } finally {
      await removeDir(base);
    }
  });

  it('with quarantine, bad bytes, overlong lines and throwing functions are kept under errors/ and the stream goes on', async () => {
    const base = await tempDir();
    const content = Buffer.concat([Buffer.from(`a\n${'z'.repeat(100)}\nexplode me\n`), Buffer.from([0xff, 0x0a]), Buffer.from('b\n')]);
    const staged = await stage(path.join(base, 'staged'), [{ 'in.txt': content }, { 'next.txt': 'c\n' }]);
    const root = path.join(base, 'root');
    try {
      const progress = await replay(fixture('lines-quarantine.ts'), staged, root, { partitions: 1 });
      expect(progress[0]).toContain('3 bad records quarantined under errors/');
      expect((await readTextOutput(root, 'lines', 0))?.sort()).toEqual(['A', 'B']);
      expect(await readTextOutput(root, 'lines', 1)).toEqual(['C']);
      const quarantined = (await readAllLines(path.join(root, 'errors', 'interval=000000', 'records'))).map((l) => JSON.parse(l));
      expect(quarantined.map((q) => [q.error, q.input, q.offset]).sort()).toEqual([
        ['cannot handle explode me', 'in.txt', 103],
        ['line longer than 64 bytes', 'in.txt', 2],
        ['not valid UTF-8', 'in.txt', 114],
      ]);
      // The operator by its label (the map of stream d1), and the upload and byte of the line it failed on.
      expect(quarantined.find((q) => q.record === 'explode me')).toMatchObject({ operator: 'map @d1 map', input: 'in.txt', offset: 103 });
      expect(quarantined.find((q) => q.error.includes('UTF-8')).record.base64).toBe(Buffer.from([0xff]).toString('base64'));
    } finally {
      await removeDir(base);
    }
  });
});
