/**
 * dstream as a user gets it: the package packed into a tarball, installed into a fresh project
 * outside this repository with a strict NodeNext tsconfig of its own, and used there as the
 * README tells a new user to: type-check a pipeline, replay it with the installed `dstream`
 * command, unit-test it with dstream/testing, and synthesise a CDK app with dstream/cdk.
 * Installs come from npm's cache that `npm ci` filled (the same versions as this repository's lock
 * file), so this runs offline where `npm ci` ran.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from '../support/stream-harness.ts';

const exec = promisify(execFile);
const REPO = path.resolve('.');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The version this repository has installed, so npm finds it in its cache. */
async function installedVersion(name: string): Promise<string> {
  return JSON.parse(await readFile(path.join(REPO, 'node_modules', name, 'package.json'), 'utf8')).version;
}

async function run(cwd: string, file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ stdout: string; stderr: string }> {
  try {
    return await exec(file, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
  } catch (error) {
    const e = error as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${file} ${args.join(' ')} failed in ${cwd}:\n${e.stdout ?? ''}\n${e.stderr ?? ''}\n${e.message}`);
  }
}

const install = (cwd: string, specs: string[]) => run(cwd, npm, ['install', ...specs, '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error']);


/**
 * The files the README's "In your own project" gives a new user, each a ```ts block whose first
 * line is a comment naming its path: what the README shows is what is tested.
 */
async function readmeProjectFiles(): Promise<Map<string, string>> {
  const readme = await readFile(path.join(REPO, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## In your own project'), readme.indexOf('\n## ', readme.indexOf('## In your own project') + 1));
  const files = new Map<string, string>();
  for (const [, body] of section.matchAll(/```(?:ts|jsonc)\n([\s\S]*?)```/g)) {
    const [first, ...rest] = body!.split('\n');
    const name = /^\/\/ (\S+\.(?:ts|json))$/.exec(first!)?.[1];
    if (!name) throw new Error(`a ts block of the README's "In your own project" does not start with // <path>: ${first}`);
    files.set(name, rest.join('\n'));
  }
  return files;
}

describe('the package installed from its tarball into a fresh project', () => {
  let project: string;
  let packed: string;

  beforeAll(async () => {
    const base = await tempDir('dstream-install-');
    project = path.join(base, 'app');
    await mkdir(path.join(project, 'pipelines'), { recursive: true });
    await mkdir(path.join(project, 'test'));
    await mkdir(path.join(project, 'infra'));
    // `npm test` built dist/ before any test ran; packing must not rebuild it under the other
    // tests' feet, so the prepare script is skipped here.
    if (!existsSync(path.join(REPO, 'dist', 'core', 'index.js'))) throw new Error('no dist/: run `npm run build` (npm test does) before this test');
    const { stdout } = await run(REPO, npm, ['pack', '--ignore-scripts', '--pack-destination', base, '--loglevel=error']);
    packed = path.join(base, stdout.trim().split('\n').pop()!);
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'clicks-app', version: '1.0.0', private: true, type: 'module' }, null, 2));
    const files = await readmeProjectFiles();
    expect([...files.keys()].sort()).toEqual(['infra/app.ts', 'pipelines/clicks.ts', 'test/clicks.test.ts', 'tsconfig.json']);
    for (const [name, text] of files) await writeFile(path.join(project, name), text);
    await install(project, [packed]);
  }, 600_000);

  it('brings no CDK and no construct library to a user of the embedded runtime', async () => {
    const installed = await readdir(path.join(project, 'node_modules'));

    expect(installed).toContain('dstream');
    expect(installed).not.toContain('aws-cdk-lib');
    expect(installed).not.toContain('constructs');
    expect(existsSync(path.join(project, 'node_modules', 'dstream', 'dist', 'core', 'index.js'))).toBe(true);
  });

  it('replays a pipeline from the user folder with the installed dstream command, on built JavaScript', async () => {
    // As the README's first commands do.
    await mkdir(path.join(project, 'staged', '0'), { recursive: true });
    await writeFile(path.join(project, 'staged', '0', 'clicks.jsonl'), '{"page":"/a","user":"u1"}\n{"page":"/a","user":"u2"}\n');

    const replayed = await run(project, path.join(project, 'node_modules', '.bin', 'dstream'), ['replay', 'pipelines/clicks.ts', '--staged', 'staged', '--root', 'root']);
    const version = await run(project, path.join(project, 'node_modules', '.bin', 'dstream'), ['--version']);

    expect(replayed.stdout).toMatch(/interval 0: 1 uploads/);
    const part = (await readdir(path.join(project, 'root', 'output', 'totals', 'interval=000000'))).filter((f) => f.startsWith('part-'));
    const totals = (await Promise.all(part.map((f) => readFile(path.join(project, 'root', 'output', 'totals', 'interval=000000', f), 'utf8')))).join('');
    expect(totals.trim()).toBe('["/a",2]');
    expect(version.stdout.trim()).toBe(JSON.parse(await readFile(path.join(REPO, 'package.json'), 'utf8')).version);
  }, 120_000);

  describe('with TypeScript, the CDK and a bundler added, as a user deploying to AWS does', () => {
    beforeAll(async () => {
      const dev = ['typescript', 'aws-cdk-lib', 'constructs', 'esbuild', 'vitest'];
      await install(project, [...(await Promise.all(dev.map(async (d) => `${d}@${await installedVersion(d)}`))), `@types/node@${await installedVersion('@types/node')}`]);
    }, 600_000);

    it('type-checks the pipeline, its unit test and the CDK app under strict NodeNext', async () => {
      const tsc = await run(project, process.execPath, [path.join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.']);

      expect(tsc.stdout).toBe('');
    }, 120_000);

    it('runs the unit test written with dstream/testing, with vitest', async () => {
      const test = await run(project, process.execPath, [path.join(project, 'node_modules', 'vitest', 'vitest.mjs'), 'run'], { NO_COLOR: '1' });

      expect(test.stdout).toMatch(/Tests\s+1 passed/);
    }, 120_000);

    it("synthesises the user's CDK app offline, bundling into the user's cdk.out and never into the package", async () => {
      const outdir = path.join(project, 'cdk.out');

      await run(project, process.execPath, ['--import', 'tsx', 'infra/app.ts'], { CDK_OUTDIR: outdir, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_PROFILE: '' });

      const template = JSON.parse(await readFile(path.join(outdir, 'ClicksStack.template.json'), 'utf8'));
      const functions = Object.values(template.Resources as Record<string, { Type: string }>).filter((r) => r.Type === 'AWS::Lambda::Function');
      expect(functions.length).toBeGreaterThanOrEqual(3);
      const assets = (await readdir(outdir)).filter((f) => f.startsWith('asset.'));
      expect(assets.length).toBeGreaterThanOrEqual(3);
      expect(existsSync(path.join(project, 'node_modules', 'dstream', 'cdk.out'))).toBe(false);
    }, 300_000);
  });
});
