/**
 * Faults injected from a seed (task errors, worker crashes, duplicate deliveries, stragglers,
 * lost cache objects, driver crashes) change nothing in the output: every run is compared byte
 * for byte with a run without faults. A schedule beyond the retry bound fails clearly instead.
 */
import { beforeAll, afterAll, describe, expect, it } from 'vitest';
import path from 'node:path';
import { sampleLines } from '../../local/sample/generate.ts';
import { outputFiles, removeDir, runCli, stage, tempDir } from '../support/stream-harness.ts';
import { seededRandom } from '../../core/util/seeded-random.ts';

const MODERATE = 'task-error=0.1,task-crash=0.05,duplicate=0.2,straggler=0.1,slowdown=8,lose-cache=0.15,driver-crash=0.05';
const HIGH = 'task-error=0.3,task-crash=0.15,duplicate=0.5,straggler=0.3,slowdown=5,lose-cache=0.3,driver-crash=0.2';

const sessionLines = (seed: number) => {
  const random = seededRandom(seed);
  return Array.from({ length: 300 }, () => `user${Math.floor(random() * 12)} ${random() < 0.1 ? 'buy' : 'view'}`).join('\n') + '\n';
};

type Files = Record<string, string>;
const pipelines: { module: string; files: (k: number) => Files }[] = [
  { module: 'examples/wordcount.ts', files: (k: number) => ({ 'a.txt': sampleLines(400, 100 + k), 'b.txt': sampleLines(150, 200 + k) }) },
  { module: 'examples/windowed-counts.ts', files: (k: number): Files => (k === 2 ? {} : { 'a.txt': sampleLines(300, 300 + k) }) },
  { module: 'test/fixtures/sessions.ts', files: (k: number): Files => (k === 3 ? {} : { 'e.txt': sessionLines(400 + k) }) },
];

let base: string;
beforeAll(async () => {
  base = await tempDir('dstream-chaos-');
});
afterAll(async () => {
  await removeDir(base);
});

/** At high rates a task fails about half its attempts, so the retry bound is raised to match. */
async function replay(module: string, staged: string, root: string, chaos?: string, maxAttempts = 12) {
  return runCli([
    'replay', module, '--staged', staged, '--root', root, '--workers', '2', '--partitions', '3', '--max-attempts', String(maxAttempts),
    ...(chaos ? ['--chaos', chaos] : []),
  ]);
}

describe.each(pipelines)('$module under injected faults', ({ module, files }) => {
  // DSTREAM_CHAOS_SEEDS=20 for a longer soak; every second seed runs at the high rates.
  const seeds = Array.from({ length: Number(process.env.DSTREAM_CHAOS_SEEDS ?? 3) }, (_, i) => [i + 1, i % 2 === 1 ? HIGH : MODERATE] as const);
  let baseline: Promise<{ staged: string; expected: Map<string, string> }> | undefined;
  /** The staged input and the outputs of a run without faults, made once for all seeds. */
  const clean = () =>
    (baseline ??= (async () => {
      const dir = path.join(base, path.basename(module, '.ts'));
      const staged = await stage(path.join(dir, 'staged'), [0, 1, 2, 3, 4].map(files));
      const run = await replay(module, staged, path.join(dir, 'clean'));
      if (run.code !== 0) throw new Error(run.stderr);
      return { staged, expected: await outputFiles(path.join(dir, 'clean')) };
    })());

  it.each(seeds)('seed %i gives output byte-identical to a run without faults', async (seed, rates) => {
    const { staged, expected } = await clean();
    expect(expected.size).toBeGreaterThan(10);
    const root = path.join(base, path.basename(module, '.ts'), `seed-${seed}`);
    const result = await replay(module, staged, root, `seed=${seed},${rates}`);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/faults injected:/);
    expect([...(await outputFiles(root)).entries()]).toEqual([...expected.entries()]);
  }, 120_000);
});

describe('a fault schedule beyond the retry bound', () => {
  it('fails the interval visibly, with a dead-letter record, and commits no wrong output', async () => {
    const staged = await stage(path.join(base, 'bound', 'staged'), [{ 'a.txt': 'a b c\n' }]);
    const root = path.join(base, 'bound', 'root');
    const result = await replay('examples/wordcount.ts', staged, root, 'seed=9,task-error=1', 4);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/interval=000000 stage .* partition \d+ failed after 4 attempts and was dead-lettered: InjectedFault: injected fault: task-error/);
    const files = await outputFiles(root).catch(() => new Map<string, string>());
    expect([...files.keys()].filter((k) => k.endsWith('_SUCCESS'))).toEqual([]);
  }, 60_000);
});
