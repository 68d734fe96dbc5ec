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

const TSCONFIG = {
  compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, types: ['node'] },
  include: ['pipelines', 'test', 'infra'],
};

const PIPELINE = `import { definePipeline } from 'dstream';

interface Click { readonly page: string; readonly user: string }

/** Clicks per page in each interval, and since the start. */
export default definePipeline({ name: 'clicks', partitions: 2, checkpointEvery: 5 }, (ctx) => {
  const perPage = ctx
    .jsonStream()
    .map((click) => [(click as Click).page, 1] as [string, number])
    .reduceByKey((a, b) => a + b);
  perPage.saveAsJsonFiles('per-page');
  perPage.updateStateByKey<string, number, number>((counts, total) => (total ?? 0) + counts.reduce((a, b) => a + b, 0)).saveAsJsonFiles('totals');
});
`;

const UNIT_TEST = `import assert from 'node:assert/strict';
import { replay } from 'dstream/testing';
import clicks from '../pipelines/clicks.js';

const result = await replay(clicks, [
  ['{"page":"/a","user":"u1"}', '{"page":"/b","user":"u2"}', '{"page":"/a","user":"u3"}'],
  ['{"page":"/b","user":"u1"}'],
]);
const sorted = (records: unknown[]) => records.map((r) => JSON.stringify(r)).sort();
assert.deepEqual(sorted(result.output('per-page', 0)), ['["/a",2]', '["/b",1]']);
assert.deepEqual(sorted(result.output('totals', 1)), ['["/a",2]', '["/b",2]']);
console.log('unit test passed');
`;

const CDK_APP = `import { App, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { DStreamPipeline } from 'dstream/cdk';

const app = new App();
const stack = new Stack(app, 'ClicksStack');
const pipeline = new DStreamPipeline(stack, 'Clicks', { pipeline: 'pipelines/clicks.ts', intervalSeconds: 5 });
const producer = new iam.Role(stack, 'Producer', { assumedBy: new iam.AccountRootPrincipal() });
pipeline.grantUpload(producer);
pipeline.metricInputRecords();
app.synth();
`;

describe('the package installed from its tarball into a fresh project', () => {
  let project: string;
  let packed: string;

  beforeAll(async () => {
    const base = await tempDir('dstream-install-');
    project = path.join(base, 'app');
    await mkdir(path.join(project, 'pipelines'), { recursive: true });
    await mkdir(path.join(project, 'test'));
    await mkdir(path.join(project, 'infra'));
    // `npm pack` builds the package (its prepare script) before packing dist/.
    const { stdout } = await run(REPO, npm, ['pack', '--pack-destination', base, '--loglevel=error']);
    packed = path.join(base, stdout.trim().split('\n').pop()!);
    await writeFile(path.join(project, 'package.json'), JSON.stringify({ name: 'clicks-app', version: '1.0.0', private: true, type: 'module' }, null, 2));
    await writeFile(path.join(project, 'tsconfig.json'), JSON.stringify(TSCONFIG, null, 2));
    await writeFile(path.join(project, 'pipelines', 'clicks.ts'), PIPELINE);
    await writeFile(path.join(project, 'test', 'clicks.test.ts'), UNIT_TEST);
    await writeFile(path.join(project, 'infra', 'app.ts'), CDK_APP);
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
      const dev = ['typescript', 'aws-cdk-lib', 'constructs', 'esbuild'];
      await install(project, [...(await Promise.all(dev.map(async (d) => `${d}@${await installedVersion(d)}`))), `@types/node@${await installedVersion('@types/node')}`]);
    }, 600_000);

    it('type-checks the pipeline, its unit test and the CDK app under strict NodeNext', async () => {
      const tsc = await run(project, process.execPath, [path.join(project, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.']);

      expect(tsc.stdout).toBe('');
    }, 120_000);

    it('runs the unit test written with dstream/testing', async () => {
      const test = await run(project, process.execPath, ['--import', 'tsx', 'test/clicks.test.ts']);

      expect(test.stdout).toContain('unit test passed');
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
