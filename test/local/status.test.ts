/**
 * `dstream status`: what a stream's object store says about it, read by the same code from a
 * local root and from an S3 bucket (s3rver, a real S3 API over HTTP, in a child process).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { listAll, type ObjectStore } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';
import { definePipeline } from '../../core/index.ts';
import { formatProgress } from '../../local/cli/format.ts';
import { readStreamStatus, type StreamStatus } from '../../core/streaming/status.ts';
import { EmbeddedRuntime } from '../../local/runtime/embedded-runtime.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { makeS3Client } from '../../functions/aws/clients.ts';
import { S3ObjectStore } from '../../functions/aws/s3-object-store.ts';
import lines from '../fixtures/lines.ts';
import linesQuarantine from '../fixtures/lines-quarantine.ts';
import { removeDir, runCli, stage, tempDir } from '../support/stream-harness.ts';
import { startS3rver, type RunningS3rver } from '../aws/s3rver-server.ts';

const BAD = Buffer.concat([Buffer.from('fine\n'), Buffer.from([0xc3, 0x28, 0x0a]), Buffer.from('explode now\n')]);

let base: string;
beforeEach(async () => {
  base = await tempDir();
});
afterEach(() => removeDir(base));

/** Replays `files` through `pipeline` in this process under <base>/root; resolves with the root whether or not the replay failed. */
async function replay(pipeline: Pipeline, files: Record<string, string | Uint8Array>[]): Promise<{ root: string; error?: unknown }> {
  const staged = await stage(path.join(base, 'staged'), files);
  const root = path.join(base, 'root');
  const runtime = await EmbeddedRuntime.open({ pipelinePath: 'in-process', inProcess: pipeline, root, workers: 2, partitions: 2, scheduler: { pollMs: 2 } });
  try {
    await runtime.replay(staged);
    return { root };
  } catch (error) {
    return { root, error };
  } finally {
    await runtime.close();
  }
}

/** What does not depend on when it was read: the clock runs on, so `current` and `behind` move. */
const timeless = ({ at: _, position, ...rest }: StreamStatus) => ({ ...rest, position: position && { lastCommitted: position.lastCommitted, next: position.next } });

describe('readStreamStatus', () => {
  it('a stream that committed its intervals: position, clock, the last intervals, and what it kept under errors/', async () => {
    const { root, error } = await replay(linesQuarantine, [{ 'a.txt': 'a\nb\nc\n' }, { 'bad.txt': BAD }, {}]);
    expect(error).toBeUndefined();

    const status = await readStreamStatus(new FsObjectStore(root));

    expect(status.pipeline).toEqual({ name: 'lines-quarantine', fingerprint: linesQuarantine.fingerprint });
    expect(status.clock).toMatchObject({ base: 0, intervalMs: 2000 });
    expect(status.position).toMatchObject({ lastCommitted: 2, next: 3 });
    expect(status.position!.current).toBeGreaterThanOrEqual(3);
    expect(status.running).toBeUndefined();
    expect(status.recent.map((r) => [r.interval, r.uploads, r.recordsIn, r.quarantined, r.outputs])).toEqual([
      [0, 1, 3, 0, { lines: 3 }],
      [1, 1, 2, 2, { lines: 1 }],
      [2, 0, 0, 0, { lines: 0 }],
    ]);
    expect(status.recent[0]!.inputRate).toBe(1.5);
    expect(status.failures).toEqual([]);
    expect(status.errors).toEqual({ intervals: [{ interval: 1, deadLetters: 0, quarantineFiles: 1, refusedUploads: 0 }], unreadableDeadLetters: 0 });

    const last = await readStreamStatus(new FsObjectStore(root), { intervals: 1 });
    expect(last.recent.map((r) => r.interval)).toEqual([2]);
  });

  it('a stream stopped by a bad record: the interval sealed and not committed, its stages, and the failure', async () => {
    const { root, error } = await replay(lines, [{ 'a.txt': 'a\n' }, { 'bad.txt': BAD }]);
    expect(String(error)).toMatch(/not valid UTF-8/);

    const status = await readStreamStatus(new FsObjectStore(root));

    expect(status.position).toMatchObject({ lastCommitted: 0, next: 1 });
    expect(status.running).toMatchObject({ interval: 1, uploads: 1, inputBytes: BAD.length });
    const stage = status.running!.stages.find((s) => s.id === 'out-lines')!;
    expect(stage.tasks).toBe(2);
    expect(stage.failed).toBe(1);
    expect(stage.done + stage.failed).toBeLessThanOrEqual(2);
    expect(status.failures).toEqual([
      { interval: 1, stage: 'out-lines', partition: expect.any(Number), error: expect.stringMatching(/bad\.txt at byte 5: not valid UTF-8/), key: expect.stringMatching(/^lineage\/interval=000001\/tasks\/out-lines\/part-\d+\.failed-\w+\.json$/) },
    ]);
  });

  it('a stage the driver committed without tasks (no upload under its prefix) shows as done without tasks while the interval runs, a stage with tasks as before', async () => {
    const twoPrefixes = definePipeline({ name: 'two-prefixes', partitions: 2 }, (ctx) => {
      ctx.textStream({ prefix: 'a/' }).saveAsTextFiles('a');
      ctx.textStream({ prefix: 'b/' }).map((line) => [line, 1] as const).reduceByKey((x, y) => x + y).saveAsJsonFiles('b');
    });
    // Interval 0 stops at the bad record under a/; nothing came under b/, so its stages have nothing to do.
    const { root, error } = await replay(twoPrefixes, [{ 'a/bad.txt': BAD }]);
    expect(String(error)).toMatch(/not valid UTF-8/);

    const status = await readStreamStatus(new FsObjectStore(root));

    const stages = status.running!.stages;
    expect(stages.find((s) => s.id === 'out-a')).toMatchObject({ failed: 1 });
    expect(stages.find((s) => s.id === 'out-a')!.withoutTasks).toBeUndefined();
    expect(stages.filter((s) => s.id !== 'out-a').map((s) => [s.kind, s.done, s.withoutTasks])).toEqual([
      ['shuffle-map', 0, true],
      ['result', 0, true],
    ]);
    expect(formatProgress(status.running!)).toMatch(/^interval 0 running: (.*, )?map-\S+ empty, no task, out-b empty, no task/);
  });

  it('an empty store: no stream yet, and nothing written to it', async () => {
    const store = new FsObjectStore(base);
    const status = await readStreamStatus(store);
    expect(status).toEqual({ at: expect.any(Number), open: [], recent: [], failures: [], errors: { intervals: [], unreadableDeadLetters: 0 } });
    expect(await listAll(store, '')).toEqual([]);
  });
});

describe('dstream status', () => {
  let s3rver: RunningS3rver;
  const BUCKET = 'dstream-status';
  beforeAll(async () => {
    s3rver = await startS3rver([BUCKET]);
  });
  afterAll(() => s3rver?.stop());

  /** What the AWS SDK's default chains read: credentials and region from the environment, the endpoint of s3rver. */
  const awsEnv = () => ({ AWS_ENDPOINT_URL_S3: s3rver.endpoint, AWS_ACCESS_KEY_ID: s3rver.credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3rver.credentials.secretAccessKey, AWS_REGION: 'us-east-1' });

  async function copy(from: ObjectStore, to: ObjectStore): Promise<void> {
    for (const { key } of await listAll(from, '')) await to.put(key, (await from.get(key))!);
  }

  it('--bucket reads the same status from S3 as --root from the same objects on disk, as JSON and as text', async () => {
    const { root } = await replay(linesQuarantine, [{ 'a.txt': 'a\nb\n' }, { 'bad.txt': BAD }]);
    const s3 = new S3ObjectStore({ client: makeS3Client(awsEnv(), { credentials: s3rver.credentials }), bucket: BUCKET, prefix: 'streams/one' });
    await copy(new FsObjectStore(root), s3);

    const local = await runCli(['status', '--root', root, '--json']);
    const remote = await runCli(['status', '--bucket', BUCKET, '--prefix', 'streams/one', '--json'], awsEnv());

    expect(remote.code, remote.stderr).toBe(0);
    expect(local.code, local.stderr).toBe(0);
    const [fromDisk, fromS3] = [JSON.parse(local.stdout), JSON.parse(remote.stdout)];
    expect(fromS3.recent).toHaveLength(2);
    expect(timeless(fromS3)).toEqual(timeless(fromDisk));

    const text = await runCli(['status', '--bucket', BUCKET, '--prefix', 'streams/one'], awsEnv());
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`stream of pipeline lines-quarantine (fingerprint ${linesQuarantine.fingerprint}) in s3://${BUCKET}/streams/one`);
    expect(text.stdout).toMatch(/position: last committed interval 1; next to run 2/);
    expect(text.stdout).toContain('quarantined record files: 1, in interval 1');
  }, 60_000);

  it('--watch reads the status again every interval length until Ctrl-C, then exits 0', async () => {
    const { root } = await replay(linesQuarantine, [{ 'a.txt': 'a\n' }]);
    const child = spawn(process.execPath, ['bin/dstream.js', 'status', '--root', root, '--watch', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
    const reads: StreamStatus[] = [];
    for await (const line of createInterface({ input: child.stdout })) {
      reads.push(JSON.parse(line));
      if (reads.length === 2) break;
    }
    child.kill('SIGINT');
    expect(await exited).toBe(0);
    expect(reads[1]!.at - reads[0]!.at).toBeGreaterThanOrEqual(2000);
    expect(timeless(reads[1]!)).toEqual(timeless(reads[0]!));
  }, 60_000);

  /** The clock of the stream under `root` started an hour earlier: an hour has passed since its intervals ran. */
  async function anHourLater(root: string): Promise<void> {
    const store = new FsObjectStore(root);
    const progress = JSON.parse(Buffer.from((await store.get(keys.driverProgress))!).toString('utf8'));
    await store.put(keys.driverProgress, JSON.stringify({ ...progress, epoch: progress.epoch - 3_600_000 }));
  }

  it('a root whose staged intervals a replay committed is a finished replay, not behind, however long ago it ran', async () => {
    const staged = await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\n' }, {}]);
    const root = path.join(base, 'root');
    const replayed = await runCli(['replay', 'test/fixtures/lines.ts', '--staged', staged, '--root', root]);
    expect(replayed.code, replayed.stderr).toBe(0);
    await anHourLater(root);

    const text = await runCli(['status', '--root', root]);
    const json = await runCli(['status', '--root', root, '--json']);

    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/finished replay: 2 staged intervals committed \(0 to 1\), the last at \d{4}-\d\d-\d\dT/);
    expect(text.stdout).not.toContain('behind');
    const status: StreamStatus = JSON.parse(json.stdout);
    expect(status.position).toMatchObject({ lastCommitted: 1, next: 2, behind: 0 });
    expect(status.position!.current).toBeGreaterThan(1000);
    expect(status.replay).toMatchObject({ first: 0, last: 1, intervals: 2 });
  }, 60_000);

  it('a root that ran on after its replay, then stopped, is behind again', async () => {
    const root = path.join(base, 'root');
    const replayed = await runCli(['replay', 'test/fixtures/lines.ts', '--staged', await stage(path.join(base, 'staged'), [{ 'a.txt': 'a\n' }]), '--root', root]);
    expect(replayed.code, replayed.stderr).toBe(0);
    // Interval 1 committed by a driver after the replay's (the test kit's replay, as a live run would): the replay's record no longer says where the stream is.
    const runtime = await EmbeddedRuntime.open({ pipelinePath: 'in-process', inProcess: lines, root, workers: 1, partitions: 2, scheduler: { pollMs: 2 } });
    try {
      await runtime.replay(await stage(path.join(base, 'more'), [{ 'a.txt': 'a\n' }, { 'b.txt': 'b\n' }]));
    } finally {
      await runtime.close();
    }
    await anHourLater(root);

    const text = await runCli(['status', '--root', root]);

    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/behind: [\d,]+ intervals have ended and are not committed/);
    expect(text.stdout).not.toContain('finished replay');
  }, 60_000);

  it('one store: --root or --bucket, not both nor neither; a root that does not exist is an error', async () => {
    const both = await runCli(['status', '--root', base, '--bucket', 'b']);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/^dstream: status reads one stream: give --root <dir> or --bucket <name>/);
    expect((await runCli(['status'])).code).toBe(2);
    const missing = await runCli(['status', '--root', path.join(base, 'nowhere')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(`dstream: root ${path.join(base, 'nowhere')} does not exist or is not a directory\n`);
  });
});
