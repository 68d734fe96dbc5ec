/**
 * One interval of many small uploads, through the public replay path: how fast uploads are
 * admitted, how long sealing takes, and that the lineage record stays small while the upload
 * list and split ranges are stored beside it. Open descriptors and RSS of this process (the
 * driver's) are sampled while it runs.
 */
import { readdirSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { listAll, type ObjectStore } from '../core/ports/object-store.ts';
import { intervalScope, keys } from '../core/layout.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../core/util/map-concurrently.ts';
import { EmbeddedRuntime } from '../local/runtime/embedded-runtime.ts';
import { BENCH_DIR, freshRoot } from './workspace.ts';
import { mb, type Row } from './table.ts';

/** `count` one-line files in `<dir>/0/`: the staged layout of a replay of one interval. */
async function stageSmallFiles(count: number): Promise<string> {
  const dir = path.join(BENCH_DIR, 'staged', `sealing-${count}`);
  await rm(dir, { recursive: true, force: true });
  await mkdir(path.join(dir, '0'), { recursive: true });
  const names = Array.from({ length: count }, (_, i) => `u-${String(i).padStart(6, '0')}.txt`);
  await mapConcurrently(names, STORE_CONCURRENCY, (name, i) => writeFile(path.join(dir, '0', name), `word${i % 100} upload${i}\n`));
  return dir;
}

/** Peaks of this process's open descriptors (where /proc tells them) and RSS, sampled every 20 ms. */
function samplePeaks(): { stop(): { fds: number | undefined; rssMb: number } } {
  const fds = () => {
    try {
      return readdirSync('/proc/self/fd').length;
    } catch {
      return undefined;
    }
  };
  let peakFds = fds();
  let peakRss = process.memoryUsage.rss();
  const timer = setInterval(() => {
    const n = fds();
    if (n !== undefined) peakFds = Math.max(peakFds ?? 0, n);
    peakRss = Math.max(peakRss, process.memoryUsage.rss());
  }, 20);
  return {
    stop: () => {
      clearInterval(timer);
      return { fds: peakFds, rssMb: mb(peakRss) };
    },
  };
}

/** Notes when the driver marks the interval sealing, writes its final list, and writes its record. */
function markingStore(store: ObjectStore, marks: Map<string, number>): ObjectStore {
  const note = (key: string) => {
    for (const mark of ['_SEALING', '_SEALED', 'record.json']) if (key.endsWith(`/${mark}`) && !marks.has(mark)) marks.set(mark, performance.now());
  };
  return new Proxy(store, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (prop === 'put' || prop === 'putIfAbsent') {
        const write = value as ObjectStore['put'];
        // Noted once the write is done: _SEALING starts the seal, the other two end a phase.
        return async (key: string, body: Uint8Array | string) => {
          const result = await write.call(target, key, body);
          note(key);
          return result;
        };
      }
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

export async function benchSealing(counts: number[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const count of counts) {
    const staged = await stageSmallFiles(count);
    const root = await freshRoot(`sealing-${count}`);
    const marks = new Map<string, number>();
    const runtime = await EmbeddedRuntime.open({
      pipelinePath: path.resolve('examples/wordcount.ts'),
      root,
      workers: 2,
      partitions: 4,
      wrapStore: (store, role) => (role === 'driver' ? markingStore(store, marks) : store),
    });
    const peaks = samplePeaks();
    const start = performance.now();
    let report;
    try {
      [report] = await runtime.replay(staged);
    } finally {
      await runtime.close();
    }
    const end = performance.now();
    const { fds, rssMb } = peaks.stop();
    if (report?.uploads !== count) throw new Error(`sealing bench: ${count} uploads staged, the interval counted ${report?.uploads}`);
    const scope = intervalScope(0);
    const recordInfo = await runtime.store.head(keys.lineageRecord(scope));
    const spilled = (await listAll(runtime.store, keys.lineagePrefix(scope))).filter((o) => /\/(uploads|splits)\//.test(o.key));
    const sealStart = marks.get('_SEALING')!;
    const sealed = marks.get('_SEALED')!;
    const recorded = marks.get('record.json')!;
    rows.push({
      uploads: count,
      'admitted/s': count / ((sealStart - start) / 1000),
      'seal s': (sealed - sealStart) / 1000,
      'split+spill s': (recorded - sealed) / 1000,
      'interval run s': (end - recorded) / 1000,
      'record bytes': recordInfo?.size ?? 0,
      'spilled KiB': spilled.reduce((n, o) => n + o.size, 0) / 1024,
      'peak fds': fds ?? 'n/a',
      'peak RSS MB': rssMb,
    });
    await rm(staged, { recursive: true, force: true });
    await rm(root, { recursive: true, force: true });
  }
  return rows;
}
