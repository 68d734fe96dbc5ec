/**
 * `dstream query` and `dstream shell` as a user runs them (dist/, built by `npm test`): queries run
 * on worker processes over a replayed root and answer what the pipeline computes in memory; the
 * shell, on a pseudo-terminal, answers at its prompt, and Ctrl-C cancels a running query without
 * leaving it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import { listAll } from '../../core/ports/object-store.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { bag, removeDir, replayInProcess, runCli, stage, tempDir } from '../support/stream-harness.ts';

type Pair = [string, number];

const pipeline = definePipeline({ name: 'shelled', partitions: 2 }, (ctx) => {
  const counts = ctx.textStream().flatMap((l) => l.split(' ')).map((w) => [w, 1] as const).reduceByKey((a, b) => a + b);
  counts.updateStateByKey((vs, total: number | undefined) => (total ?? 0) + vs.reduce((a, b) => a + b, 0)).saveAsJsonFiles('totals');
});
const batches = ['x y x', 'y z', 'x x w'];
/** Running totals after the last interval, in memory. */
const totals = (): Pair[] => {
  const m = new Map<string, number>();
  for (const w of batches.join(' ').split(' ')) m.set(w, (m.get(w) ?? 0) + 1);
  return [...m];
};

let base: string;
let root: string;

beforeAll(async () => {
  base = await tempDir();
  root = (await replayInProcess(pipeline, batches.map((b) => ({ 'u.txt': `${b}\n` })))).root;
}, 60_000);
afterAll(async () => {
  await removeDir(base);
  await removeDir(path.dirname(root));
});

describe('dstream query', () => {
  it('runs a TypeScript script on the workers and prints its answer as JSON or a table; the root keeps no scratch', async () => {
    const script = path.join(base, 'top.ts');
    await writeFile(script, `const last: number = (await sc.intervals())!.last;\nsc.output('totals', { from: last }).filter(([, n]: [string, number]) => n > 1)\n`);
    const json = await runCli(['query', script, '--root', root, '--workers', '1', '--json']);
    expect(json.stderr).toBe('');
    expect((JSON.parse(json.stdout) as Pair[]).sort()).toEqual(totals().filter(([, n]) => n > 1).sort());
    const table = await runCli(['query', script, '--root', root, '--workers', '1']);
    expect(table.stdout).toMatch(/^key\s+value\n-+\s+-+\nx\s+4\ny\s+2\n\(2 records\)/m);
    expect(await readdir(root)).not.toContain('queries');
  }, 60_000);

  it('refuses a script that is not there, and a command without a store', async () => {
    expect((await runCli(['query', path.join(base, 'none.ts'), '--root', root])).stderr).toMatch(/query script .*none\.ts does not exist/);
    const usage = await runCli(['query', 'x.ts']);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/query reads one stream: give --root <dir> or --bucket <name>/);
  });

  it('fails with the error a script throws or awaits, naming the script', async () => {
    await writeFile(path.join(base, 'throws.ts'), "throw new Error('boom');\n");
    await writeFile(path.join(base, 'rejects.ts'), "await Promise.reject(new Error('boom later'));\n");

    const [thrown, rejected] = [await runCli(['query', path.join(base, 'throws.ts'), '--root', root]), await runCli(['query', path.join(base, 'rejects.ts'), '--root', root])];

    expect([thrown.code, rejected.code]).toEqual([1, 1]);
    expect(thrown.stderr).toMatch(/^dstream: query .*throws\.ts failed: Error: boom/);
    expect(rejected.stderr).toMatch(/^dstream: query .*rejects\.ts failed: Error: boom later/);
  }, 60_000);
});

describe('dstream query --pipeline', () => {
  it('recomputes on the workers the state a query asks for that the cache lost, leaving the root as it was; without it, names the option', async () => {
    const lines = ['to be or not', 'to be', 'not to be'];
    // Replayed by the CLI: a pipeline's fingerprint covers its functions' source, which vitest's transform changes.
    const dir = await tempDir();
    const root = path.join(dir, 'root');
    const replayed = await runCli(['replay', 'examples/wordcount.ts', '--root', root, '--staged', await stage(path.join(dir, 'staged'), lines.map((l) => ({ 'u.txt': `${l}\n` }))), '--workers', '1']);
    expect(replayed.stderr).toBe('');
    try {
      await rm(path.join(root, 'cache/interval=000002'), { recursive: true });
      const script = path.join(base, 'state.ts');
      await writeFile(script, `(await sc.state('totals', 2)).collect()\n`);
      const listing = async () => (await listAll(new FsObjectStore(root), '')).map((o) => `${o.key} ${o.size}`);
      const before = await listing();

      const [without, recomputed] = [
        await runCli(['query', script, '--root', root, '--workers', '1', '--json']),
        await runCli(['query', script, '--root', root, '--workers', '2', '--json', '--pipeline', 'examples/wordcount.ts']),
      ];

      expect(without.code).toBe(1);
      expect(without.stderr).toMatch(/partitions of cache\/interval=000002\/persist\/\w+ are gone .*give the stream's pipeline \(--pipeline <file>\)/);
      expect(recomputed.stderr).toBe('');
      const words = lines.join(' ').split(' ');
      expect(bag(JSON.parse(recomputed.stdout) as Pair[])).toEqual(bag([...new Set(words)].map((w) => [w, words.filter((x) => x === w).length])));
      expect(await listing()).toEqual(before);
    } finally {
      await removeDir(dir);
    }
  }, 60_000);
});

const hasScript = spawnSync('script', ['--version']).status === 0;

describe.runIf(hasScript)('dstream shell on a terminal', () => {
  it('answers a query at its prompt, and Ctrl-C cancels a running query without leaving the shell', async () => {
    const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const command = [process.execPath, path.resolve('bin/dstream.js'), 'shell', '--root', root, '--workers', '1'].map(quote).join(' ');
    const child = spawn('script', ['-qfec', command, '/dev/null'], {
      env: { ...process.env, DSTREAM_HISTORY: path.join(base, 'history'), NO_COLOR: '1' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let screen = '';
    // What the terminal shows, without the escape sequences that move its cursor.
    let raw = '';
    child.stdout.on('data', (d) => ((raw += d), (screen = raw.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, ''))));
    const closed = new Promise<number>((resolve) => child.on('close', (code) => resolve(code ?? -1)));
    /** Waits until the terminal shows `pattern` after what it showed before. */
    const shows = async (pattern: RegExp, from: number) => {
      for (let waited = 0; !pattern.test(screen.slice(from)); waited += 50) {
        if (waited > 45_000) throw new Error(`the terminal never showed ${pattern}; it shows:\n${screen}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const type = async (text: string, expect: RegExp) => {
      const from = screen.length;
      child.stdin.write(text);
      await shows(expect, from);
    };

    await shows(/dstream> \s*$/, 0);
    // TypeScript at the prompt; the answer is a table.
    await type(`const min: number = 2\r`, /dstream> \s*$/);
    await type(`sc.output('totals').filter(([, n]: [string, number]) => n >= min).count()\r`, /\n5\r?\n[\s\S]*dstream> \s*$/);
    // A query that would run for a minute, cancelled.
    await type(`sc.parallelize([1]).map((x) => { const end = Date.now() + 60000; while (Date.now() < end); return x }).collect()\r`, /dstream> $|$/);
    await new Promise((r) => setTimeout(r, 1500));
    await type('\x03', /query cancelled[\s\S]*dstream> \s*$/);
    // The shell is still there, and answers.
    await type(`sc.output('totals', { from: 2 }).top(1, (a: [string, number], b: [string, number]) => a[1] - b[1])\r`, /key\s+value[\s\S]*x\s+4[\s\S]*dstream> \s*$/);
    await type('.exit\r', /$/);
    expect(await closed).toBe(0);
    // History kept; the cancelled query's scratch removed.
    expect(await readFile(path.join(base, 'history'), 'utf8')).toContain('const min: number = 2');
    expect(await readdir(root)).not.toContain('queries');
  }, 120_000);
});
