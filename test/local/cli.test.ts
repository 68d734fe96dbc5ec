/**
 * The `dstream` command's conventions, as a user meets them: help, version, mistypes, exit codes,
 * pipes and terminals, and what it does to the folders it is given.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { COMMANDS } from '../../local/cli/args.ts';
import { main } from '../../local/cli/main.ts';
import { Terminal } from '../../local/cli/terminal.ts';
import { removeDir, runCli, stage, tempDir, type CliResult } from '../support/stream-harness.ts';

let base: string;
beforeEach(async () => {
  base = await tempDir();
});
afterEach(() => removeDir(base));

/** main() in this process, its output captured as a pipe would carry it. */
async function inProcess(argv: string[]): Promise<{ code: number; stdout: string }> {
  let stdout = '';
  const sink = { write: (s: string) => ((stdout += s), true) } as unknown as NodeJS.WritableStream;
  const code = await main(argv, new Terminal({ out: sink, err: sink, env: {} }));
  return { code, stdout };
}

/** `script` gives the command a pseudo-terminal, as a user's shell does; util-linux has it. */
const hasScript = spawnSync('script', ['--version']).status === 0;

/** The command on a terminal (a pseudo-terminal through `script`), its output as the terminal got it. */
function runOnTerminal(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  const command = [process.execPath, path.resolve('bin/dstream.js'), ...args].map(quote).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qfec', command, '/dev/null'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr: '' }));
  });
}

const replayArgs = (pipeline: string, staged: string, root: string, ...extra: string[]) => ['replay', pipeline, '--staged', staged, '--root', root, '--workers', '1', ...extra];
const SGR = /\x1b\[\d+m/;

describe('help, version and usage errors', () => {
  it('every command answers -h and --help with its own usage, exit 0', async () => {
    for (const command of Object.keys(COMMANDS)) {
      for (const help of ['-h', '--help']) {
        const { code, stdout } = await inProcess([command, help]);
        expect(code).toBe(0);
        expect(stdout).toMatch(new RegExp(`^Usage: dstream ${command}\\b`));
        expect(stdout).toContain('-h, --help');
      }
    }
    expect((await inProcess(['help', 'status'])).stdout).toMatch(/^Usage: dstream status/);
    expect((await inProcess(['--help'])).stdout).toMatch(/Commands:\n {2}run/);
  });

  it('dstream run --help from the command line prints run\'s usage and exits 0', async () => {
    const result = await runCli(['run', '--help']);
    expect(result.code).toBe(0);
    expect(result.stderr).toBe('');
    expect(result.stdout).toMatch(/^Usage: dstream run <pipeline> \[options\]/);
  });

  it('--help says that --partitions are input splits, not the pipeline\'s shuffle partitions', async () => {
    for (const command of ['run', 'replay', 'batch']) {
      const { stdout } = await inProcess([command, '--help']);
      expect(stdout.replace(/\s+/g, ' ')).toContain(
        '--partitions <P> input splits: how many tasks read an interval\'s uploads (default: twice the workers). Not the pipeline\'s `partitions` option, which is the number of shuffle partitions of keyed operators',
      );
    }
  });

  it('--version prints the version of the package.json above the code', async () => {
    const result = await runCli(['--version']);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(`${JSON.parse(await readFile('package.json', 'utf8')).version}\n`);
  });

  it('a mistyped command or option gets a suggestion, a dstream: prefix and exit 2', async () => {
    const command = await runCli(['repaly', 'x.ts']);
    expect(command.code).toBe(2);
    expect(command.stderr).toMatch(/^dstream: unknown command 'repaly'; did you mean 'replay'\?\n/);
    const option = await runCli(['status', '--roo', base]);
    expect(option.code).toBe(2);
    expect(option.stderr).toMatch(/^dstream: status has no option --roo; did you mean --root\?\n\nUsage: dstream status/);
    const none = await runCli(['stauts']);
    expect(none.stderr).toContain("did you mean 'status'?");
    const far = await runCli(['frobnicate']);
    expect(far.stderr).toContain("dstream: unknown command 'frobnicate' (dstream --help lists the commands)");
    await expect(inProcess(['--verison'])).rejects.toThrow("unknown option '--verison'; did you mean '--version'?");
    await expect(inProcess(['--root', base])).rejects.toThrow("unknown option '--root': options follow the command, as in dstream run --help");
  });

  it('an option missing its value, or a flag given one, is a usage error naming it', async () => {
    await expect(inProcess(['status', '--root'])).rejects.toThrow('status: --root needs a value (<dir>)');
    await expect(inProcess(['status', '--json=yes', '--root', base])).rejects.toThrow('status: --json takes no value');
    await expect(inProcess(['lineage', '1', '2', '--root', base])).rejects.toThrow('lineage takes 1 argument before its options; unexpected \'2\'');
    await expect(inProcess(['lineage', '--root', base])).rejects.toThrow('lineage needs an interval number, e.g. dstream lineage 3 --root <dir>');
  });

  it("a value out of range is a usage error followed by that command's usage, not the general one", async () => {
    const result = await runCli(['status', '--root', base, '--intervals', 'abc']);

    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^dstream: --intervals must be a whole number >= 0, got abc\n\nUsage: dstream status/);
  });

  it('--intervals-in-flight is offered by run and replay, and beyond 16 is a usage error', async () => {
    for (const command of ['run', 'replay']) {
      const { stdout } = await inProcess([command, '--help']);
      expect(stdout.replace(/\s+/g, ' ')).toContain('--intervals-in-flight <N> intervals run at once');
    }
    const result = await runCli(['replay', 'examples/wordcount.ts', '--staged', base, '--root', base, '--intervals-in-flight', '17']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/^dstream: --intervals-in-flight must be a whole number from 1 to 16, got 17\n\nUsage: dstream replay/);
  });

  it('every failure, usage or not, is prefixed dstream: on stderr', async () => {
    const missing = await runCli(['lineage', '7', '--root', base]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`dstream: no lineage record for interval 7 under ${base}\n`);
    const usage = await runCli([]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^dstream: name a command\n/);
  });

  it("a pipeline module that throws as it loads: the error, then where in the user's file it was thrown", async () => {
    // A project of the user's, as the README makes one.
    await writeFile(path.join(base, 'package.json'), JSON.stringify({ name: 'clicks', type: 'module' }));
    const pipeline = path.join(base, 'clicks.ts');
    await writeFile(pipeline, ['// Reads its settings before it defines the pipeline.', 'function readConfig(): never {', "  throw new Error('no config for clicks');", '}', 'readConfig();', ''].join('\n'));

    const result = await runCli(replayArgs(pipeline, await stage(path.join(base, 'staged'), [{}]), path.join(base, 'root')));

    expect(result.code).toBe(1);
    expect(result.stderr).toBe(`dstream: pipeline module ${pipeline} failed to load: no config for clicks (at ${pipeline}:3:9)\n  at ${pipeline}:5:1\n`);
  });
});

describe('pipes and terminals', () => {
  it('dstream demo | head -2 ends quietly when head stops reading', async () => {
    const script = `set -o pipefail; ${JSON.stringify(process.execPath)} bin/dstream.js demo --root ${JSON.stringify(path.join(base, 'demo'))} 2>${JSON.stringify(path.join(base, 'stderr'))} | head -2`;
    const result = spawnSync('bash', ['-c', script], { encoding: 'utf8' });
    expect(result.stdout.split('\n').filter(Boolean)).toHaveLength(2);
    expect(await readFile(path.join(base, 'stderr'), 'utf8')).toBe('');
    expect(result.status).toBe(0);
  }, 60_000);

  it('piped: plain lines, no colour and no progress line', async () => {
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\nslow\n' }]);
    const result = await runCli(replayArgs('test/fixtures/sleepy.ts', staged, path.join(base, 'root')));
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toMatch(/\x1b/);
    expect(result.stdout).not.toContain('running:');
    expect(result.stdout).toMatch(/^interval 0: 1 uploads/m);
  }, 60_000);

  it.skipIf(!hasScript)('on a terminal: a progress line of tasks done per stage, redrawn in place, and colour', async () => {
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\nslow\n' }]);
    const result = await runOnTerminal(replayArgs('test/fixtures/sleepy.ts', staged, path.join(base, 'root')));
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).toMatch(/\r\x1b\[K\x1b\[1minterval 0\x1b\[22m running: out-lines \d\/2/);
    expect(result.stdout).toMatch(/\r\x1b\[K\x1b\[1minterval 0\x1b\[22m: 1 uploads/);
  }, 60_000);

  it.skipIf(!hasScript)('on a terminal with NO_COLOR: no colour, the progress line still', async () => {
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\nslow\n' }]);
    const result = await runOnTerminal(replayArgs('test/fixtures/sleepy.ts', staged, path.join(base, 'root')), { NO_COLOR: '1' });
    expect(result.code, result.stdout).toBe(0);
    expect(result.stdout).not.toMatch(SGR);
    expect(result.stdout).toMatch(/\r\x1b\[Kinterval 0 running: out-lines \d\/2/);
  }, 60_000);
});

describe('run, replay and demo', () => {
  it('a replay over intervals already committed says so instead of reprinting their progress', async () => {
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\n' }, { 'b.txt': 'b\n' }]);
    const root = path.join(base, 'root');
    const first = await runCli(replayArgs('test/fixtures/lines.ts', staged, root));
    expect(first.stdout).toMatch(/^interval 0: .*\ninterval 1: .*\n2 intervals committed under /);

    const again = await runCli(replayArgs('test/fixtures/lines.ts', staged, root));
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe(`intervals 0 to 1 were already committed\nnothing to run: all 2 staged intervals were already committed under ${path.join(root, 'output')}\n`);

    await stage(staged, [{}, {}, { 'c.txt': 'c\n' }]);
    const more = await runCli(replayArgs('test/fixtures/lines.ts', staged, root));
    expect(more.stdout).toMatch(/^intervals 0 to 1 were already committed\ninterval 2: 1 uploads .*\n1 intervals committed under /);
  }, 60_000);

  it('a JavaScript pipeline importing a TypeScript module runs in the workers too, compiled once under the root', async () => {
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\nb\n' }]);
    const root = path.join(base, 'root');
    const result = await runCli(replayArgs('test/fixtures/js-over-ts.js', staged, root, '--json'));
    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout.trim())).toMatchObject({ interval: 0, recordsIn: 2, outputs: { lines: 2 } });
    expect((await readdir(path.join(root, '.dstream', 'pipelines'))).filter((f) => f.endsWith('.mjs'))).toHaveLength(1);
  }, 60_000);

  it('--json prints one interval report per line on stdout, marking those committed before', async () => {
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\nb\n' }, {}]);
    const root = path.join(base, 'root');
    const first = await runCli(replayArgs('test/fixtures/lines.ts', staged, root, '--json'));
    expect(first.code, first.stderr).toBe(0);
    const reports = first.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(reports).toMatchObject([
      { interval: 0, uploads: 1, recordsIn: 2, outputs: { lines: 2 } },
      { interval: 1, uploads: 0, recordsIn: 0 },
    ]);
    expect(reports[0]).not.toHaveProperty('alreadyCommitted');
    expect(first.stderr).toContain('2 intervals committed under');

    const again = await runCli(replayArgs('test/fixtures/lines.ts', staged, root, '--json'));
    expect(again.stdout.trim().split('\n').map((l) => JSON.parse(l))).toEqual(reports.map((r) => ({ ...r, alreadyCommitted: true })));
  }, 60_000);

  it('run creates incoming/ before it says to move files there, and stops on Ctrl-C with exit 0', async () => {
    const root = path.join(base, 'root');
    const child = spawn(process.execPath, ['bin/dstream.js', 'run', 'test/fixtures/lines.ts', '--root', root, '--workers', '1', '--interval', '500ms'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    const said = new Promise<void>((resolve) => child.stdout.on('data', (d) => ((stdout += d), stdout.includes('watching') && resolve())));
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    await said;
    expect(stdout).toContain(`watching ${path.join(root, 'incoming')} every 500 ms (Ctrl-C to stop)`);
    expect(existsSync(path.join(root, 'incoming'))).toBe(true);
    child.kill('SIGINT');
    expect(await exited).toBe(0);
  }, 60_000);

  it('demo --root refuses a folder it did not make, and leaves it as it was', async () => {
    const mine = path.join(base, 'mine');
    await mkdir(mine);
    await writeFile(path.join(mine, 'precious.txt'), 'keep me\n');
    const result = await runCli(['demo', '--root', mine]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`dstream: demo root ${mine} is not empty and was not made by the demo (it has no .dstream-demo)`);
    expect(await readdir(mine)).toEqual(['precious.txt']);
  });

  it('demo --root starts a folder it made afresh, removing only its own folders', async () => {
    const demo = path.join(base, 'demo');
    await mkdir(path.join(demo, 'root', 'output'), { recursive: true });
    await writeFile(path.join(demo, '.dstream-demo'), '');
    await writeFile(path.join(demo, 'root', 'output', 'stale'), 'from an earlier demo\n');
    await writeFile(path.join(demo, 'notes.txt'), 'mine\n');
    const result = await runCli(['demo', '--root', demo]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('top words since interval 0');
    expect(existsSync(path.join(demo, 'root', 'output', 'stale'))).toBe(false);
    expect(await readFile(path.join(demo, 'notes.txt'), 'utf8')).toBe('mine\n');
  }, 60_000);
});
