/**
 * The streaming UI's JSON endpoints (`dstream ui`), over roots a replay left: the intervals, newest
 * first and paged; an interval's DAG, tasks, outputs, state and errors; the failed interval with
 * the runbook's next step; and a page of a 100,000-interval stream read without listing it.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { replay } from 'dstream/testing';
import wordcount from '../../examples/wordcount.ts';
import lines from '../fixtures/lines.ts';
import { intervalScope, keys } from '../../core/layout.ts';
import type { ObjectInfo, ObjectStore } from '../../core/ports/object-store.ts';
import { readLineageRecord } from '../../core/streaming/lineage.ts';
import { readStreamStatus, type IntervalSummary } from '../../core/streaming/status.ts';
import type { IntervalDetail } from '../../core/streaming/inspect.ts';
import type { IntervalReport } from '../../core/streaming/driver.ts';
import type { PlanNode } from '../../core/rdd/plan.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { startUi, type RunningUi } from '../../local/ui/server.ts';
import { APP_JS } from '../../local/ui/page.ts';
import { removeDir, replayLosingPersisted, runCli, tempDir } from '../support/stream-harness.ts';

let base: string;
let ui: RunningUi | undefined;
beforeEach(async () => {
  base = await tempDir();
});
afterEach(async () => {
  await ui?.close();
  ui = undefined;
  await removeDir(base);
});

async function serve(store: ObjectStore, where = base): Promise<(path: string, init?: RequestInit) => Promise<{ status: number; body: any }>> {
  ui = await startUi({ store, where, runtime: 'local', port: 0 });
  return async (p, init) => {
    const res = await fetch(new URL(p, ui!.url), init);
    const text = await res.text();
    return { status: res.status, body: res.headers.get('content-type')?.startsWith('application/json') ? JSON.parse(text) : text };
  };
}

const INPUT = [['the cat sat', 'the dog'], ['a cat', 'the end'], ['cat']];

describe('dstream ui: JSON endpoints', () => {
  it('lists committed intervals newest first, in pages that say where the older ones start', async () => {
    const root = path.join(base, 'root');
    const run = await replay(wordcount, INPUT, { root });
    const get = await serve(new FsObjectStore(root));

    const all = await get('/api/intervals');
    const first = await get('/api/intervals?limit=2');
    const rest = await get(`/api/intervals?before=${first.body.older}&limit=2`);

    expect(all.body.next).toBe(3);
    expect(all.body.intervalMs).toBe(2000);
    expect(all.body.intervals.map((r: IntervalReport) => [r.interval, r.recordsIn, r.outputs])).toEqual(
      [...run.intervals].reverse().map((r) => [r.interval, r.report.recordsIn, r.report.outputs]),
    );
    expect(all.body.older).toBeNull();
    expect(first.body.intervals.map((r: IntervalReport) => r.interval)).toEqual([2, 1]);
    expect(first.body.older).toBe(1);
    expect(rest.body.intervals.map((r: IntervalReport) => r.interval)).toEqual([0]);
    expect(rest.body.older).toBeNull();
    const { tasks, speculative, recomputed, fetchFailures } = run.intervals[2]!.report;
    expect(all.body.intervals[0]).toMatchObject({ tasks, speculative, recomputed, fetchFailures, inputRate: 1 / 2 });
  });

  it('the status lists the last intervals, oldest first, as dstream status does', async () => {
    const root = path.join(base, 'root');
    await replay(wordcount, INPUT, { root });
    const store = new FsObjectStore(root);
    const get = await serve(store);

    const { body } = await get('/api/status');

    const expected = await readStreamStatus(store);
    expect(body.status.recent.map((r: IntervalSummary) => r.interval)).toEqual([0, 1, 2]);
    expect(body.status.recent).toEqual(expected.recent);
  });

  it("an interval's page: its DAG of RDDs and stages, a timed record per task, outputs with a preview, state, and no errors", async () => {
    const root = path.join(base, 'root');
    const run = await replay(wordcount, INPUT, { root });
    const store = new FsObjectStore(root);
    const record = (await readLineageRecord(store, 1))!;
    const get = await serve(store);

    const { status, body } = await get('/api/intervals/1');
    const detail = body as IntervalDetail;

    expect(status).toBe(200);
    expect(detail).toMatchObject({ interval: 1, status: 'committed', report: run.intervals[1]!.report });
    expect(detail.dag.nodes.map((n) => n.id)).toEqual(record.plan.map((n) => n.id));
    expect(detail.dag.stages.map((s) => s.id)).toEqual(record.stages.map((s) => s.id));
    // reduceByKey's shuffle separates the map stage from the stages that read it.
    const shuffled = record.plan.find((n) => n.kind === 'shuffle') as Extract<PlanNode, { kind: 'shuffle' }>;
    const shuffle = detail.dag.nodes.find((n) => n.id === shuffled.id)!;
    expect(detail.dag.edges).toContainEqual({ from: shuffled.parent, to: shuffled.id, kind: 'shuffle' });
    expect(detail.dag.nodes.find((n) => n.kind === 'source')!.stages).toEqual([`map-${shuffle.id}`]);
    expect(shuffle.stages).not.toContain(`map-${shuffle.id}`);
    // Every task of every stage, each with its start and end.
    expect(detail.tasks.map((t) => `${t.stage}/${t.partition}`).sort()).toEqual(record.stages.flatMap((s) => Array.from({ length: s.tasks }, (_, p) => `${s.id}/${p}`)).sort());
    for (const t of detail.tasks) {
      expect(t.done).toBeDefined();
      expect(t.done!.startedAt).toBeLessThanOrEqual(t.done!.endedAt);
      // A speculative copy may win on a loaded machine: a copy is numbered from 1 up to the copies launched.
      expect(t.done!.copy).toBeLessThanOrEqual(run.intervals[1]!.report.speculative);
      expect(t.starts.length).toBeGreaterThanOrEqual(1);
      expect(t.failures).toEqual([]);
      // Who ran it: the testing kit runs tasks in the test's own process.
      expect(t.done!.executor).toBe('in-process');
    }
    const counts = detail.outputs.find((o) => o.name === 'counts')!;
    expect(counts).toMatchObject({ committed: true, records: run.intervals[1]!.report.outputs.counts, format: 'json' });
    for (const line of counts.preview) expect(run.output('counts', 1)).toContainEqual(JSON.parse(line));
    // The running totals are a state: its keys are every word seen so far.
    const words = new Set(INPUT.slice(0, 2).flatMap((i) => i.join(' ').split(' ')));
    expect(detail.state).toEqual([expect.objectContaining({ tier: expect.any(String), keys: words.size, present: true })]);
    expect(detail.errors.counts).toEqual({ deadLetters: 0, quarantined: 0, refusedUploads: 0 });
    // Where its time went, from the seal markers, the record, the tasks' records and the commit.
    const { at, stages } = detail.breakdown!;
    expect(stages.map((s) => s.stage).sort()).toEqual(record.stages.map((s) => s.id).sort());
    expect([at.sealing!, at.sealed!, at.planned, at.lastTaskEnd!, at.committed!]).toEqual([at.sealing!, at.sealed!, at.planned, at.lastTaskEnd!, at.committed!].sort((a, b) => a - b));
  });

  it("an interval whose persisted state a later interval found lost: its page names the recovery stage that rebuilt it, and the stage that wrote it", async () => {
    const root = path.join(base, 'root');
    await replayLosingPersisted(wordcount, root, INPUT.map((lines) => ({ 'in.txt': lines.join('\n') + '\n' })), 1);
    const store = new FsObjectStore(root);
    const record = (await readLineageRecord(store, 1))!;
    const [state] = record.persists;
    const writer = record.stages.find((s) => s.kind === 'result' && s.sinks.some((k) => k.kind === 'persist' && k.location === state!.location))!;
    const get = await serve(store);

    const detail = (await get('/api/intervals/1')).body as IntervalDetail;

    const recover = detail.recovery[0]!.id;
    expect(detail.recovery).toEqual([{ id: recover, location: state!.location, writer: writer.id }]);
    expect(record.stages.map((s) => s.id)).not.toContain(recover);
    expect(detail.tasks.filter((t) => t.stage === recover).map((t) => t.partition)).toEqual([0]);
    expect(((await get('/api/intervals/0')).body as IntervalDetail).recovery).toEqual([]);
  });

  it('a failed interval is named with what failed and the runbook\'s next step, and its page shows the failed task', async () => {
    const root = path.join(base, 'root');
    await expect(replay(lines, [['fine'], { 'bad.txt': Buffer.from([0x66, 0x0a, 0xc3, 0x28, 0x0a]) }], { root })).rejects.toThrow(/not valid UTF-8/);
    const get = await serve(new FsObjectStore(root), root);

    const { body } = await get('/api/status');
    const interval = (await get('/api/intervals/1')).body as IntervalDetail;

    expect(body.failed.interval).toBe(1);
    expect(body.failed.failures).toEqual([
      expect.objectContaining({ kind: 'bad-record', stage: 'out-lines', error: expect.stringMatching(/bad\.txt at byte 2: not valid UTF-8/), nextStep: expect.stringContaining(`dstream quarantine 1 --root ${root}`) }),
    ]);
    expect(interval.status).toBe('planned');
    expect(interval.progress?.stages).toEqual([expect.objectContaining({ id: 'out-lines', failed: 1 })]);
    expect(interval.tasks.filter((t) => t.failures.length > 0).map((t) => [t.stage, t.done])).toEqual([['out-lines', undefined]]);
  });

  it('answers a clear error for what it does not serve, and serves a page whose script parses', async () => {
    const root = path.join(base, 'root');
    await replay(wordcount, INPUT.slice(0, 1), { root });
    const get = await serve(new FsObjectStore(root));

    expect(await get('/api/intervals/7')).toEqual({ status: 404, body: { error: 'interval 7 has no lineage record: it was not planned' } });
    expect(await get('/api/intervals?limit=0')).toEqual({ status: 400, body: { error: 'limit must be a whole number >= 1, got "0"' } });
    expect(await get('/api/intervals?limit=501')).toEqual({ status: 400, body: { error: 'limit must be at most 500, got 501' } });
    expect(await get('/api/intervals?before=x')).toEqual({ status: 400, body: { error: 'before must be a whole number >= 0, got "x"' } });
    expect((await get('/api/status', { method: 'POST' })).status).toBe(405);
    expect((await get('/nothing')).status).toBe(404);
    const page = await get('/');
    expect(page.body).toContain('<script src="/app.js"></script>');
    expect((await get('/app.js')).body).toBe(APP_JS);
    expect(() => new Function(APP_JS)).not.toThrow();
  });

  it('a page of a 100,000-interval stream reads its own reports and the progress pointer, lists nothing, and reads them once', async () => {
    const store = new CountingStore();
    const next = 100_000;
    await store.put(keys.driverProgress, JSON.stringify({ epoch: 0, base: 0, intervalMs: 1000, next }));
    for (let k = 0; k < next; k++) await store.put(keys.committed(intervalScope(k)), JSON.stringify(report(k)));
    const get = await serve(store);
    store.reset();

    const newest = await get('/api/intervals?limit=50');
    const newestReads = store.reset();
    const again = await get('/api/intervals?limit=50');
    const againReads = store.reset();
    const middle = await get('/api/intervals?before=50000&limit=20');

    expect(newest.body.intervals.map((r: IntervalReport) => r.interval)).toEqual(Array.from({ length: 50 }, (_, i) => 99_999 - i));
    expect(newestReads).toEqual({ gets: 51, lists: 0 });
    expect(again.body).toEqual(newest.body);
    expect(againReads).toEqual({ gets: 1, lists: 0 });
    expect(middle.body.intervals.map((r: IntervalReport) => r.interval)).toEqual(Array.from({ length: 20 }, (_, i) => 49_999 - i));
    expect(middle.body.older).toBe(49_980);
    expect(store.reset()).toEqual({ gets: 21, lists: 0 });
  });
});

describe('dstream ui: the command', () => {
  it('serves a root on the port asked for, says where, and exits 0 on Ctrl-C', async () => {
    const root = path.join(base, 'root');
    await replay(wordcount, INPUT.slice(0, 1), { root });
    const child = spawn(process.execPath, [path.resolve('bin/dstream.js'), 'ui', '--root', root, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const [line] = (await once(child.stdout, 'data')) as [Buffer];

    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(String(line))?.[1];
    const status = (await (await fetch(new URL('/api/status', url))).json()) as { status: { position: { next: number } } };
    child.kill('SIGINT');
    const [code] = await once(child, 'exit');

    expect(String(line)).toContain(`the stream in ${root}: http://127.0.0.1:`);
    expect(status.status.position.next).toBe(1);
    expect(code).toBe(0);
  });

  it('reads one stream: --root or --bucket, and a port that is a port', async () => {
    const neither = await runCli(['ui']);
    const port = await runCli(['ui', '--root', base, '--port', '70000']);

    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain('ui reads one stream: give --root <dir> or --bucket <name>');
    expect(port.code).toBe(2);
    expect(port.stderr).toContain('--port must be at most 65535, got 70000');
  });
});

function report(k: number): IntervalReport {
  return {
    interval: k, uploads: 1, inputBytes: 10, refusedUploads: 0, recordsIn: k % 7, quarantined: 0, outputs: { out: k % 7 }, processingMs: 100, schedulingDelayMs: 0,
    tasks: 2, tasksSkipped: 0, speculative: 0, unstartedResent: 0, fetchFailures: 0, recomputed: 0, recoveredIntervals: [],
  };
}

/** A store in memory that counts reads and listings: what a page would cost against S3. */
class CountingStore implements ObjectStore {
  private readonly objects = new Map<string, Uint8Array>();
  private gets = 0;
  private lists = 0;
  reset() {
    const counts = { gets: this.gets, lists: this.lists };
    this.gets = this.lists = 0;
    return counts;
  }
  async get(key: string) {
    this.gets++;
    return this.objects.get(key);
  }
  async *getRange(key: string, start: number, end?: number) {
    this.gets++;
    yield this.objects.get(key)!.slice(start, end);
  }
  async head(key: string) {
    this.gets++;
    const bytes = this.objects.get(key);
    return bytes && { key, size: bytes.length, lastModified: 0 };
  }
  async put(key: string, body: Uint8Array | string) {
    this.objects.set(key, Buffer.from(body));
  }
  async putIfAbsent(key: string, body: Uint8Array | string) {
    if (this.objects.has(key)) return false;
    await this.put(key, body);
    return true;
  }
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    this.lists++;
    for (const key of [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort()) yield { key, size: this.objects.get(key)!.length, lastModified: 0 };
  }
  async delete(key: string) {
    this.objects.delete(key);
  }
}
