/**
 * Object-store requests one interval costs, by who makes them and by kind: what predicts the S3
 * part of the bill (GET/HEAD and PUT/LIST are priced per thousand).
 */
import path from 'node:path';
import type { ObjectInfo, ObjectStore, ReadOptions } from '../core/ports/object-store.ts';
import { EmbeddedRuntime } from '../local/runtime/embedded-runtime.ts';
import wordcount from '../examples/wordcount.ts';
import type { Row } from './table.ts';
import { freshRoot, stagedText } from './workspace.ts';

type Kind = 'get' | 'put' | 'list' | 'delete';

class CountingStore implements ObjectStore {
  readonly counts: Record<Kind, number> = { get: 0, put: 0, list: 0, delete: 0 };
  constructor(private readonly inner: ObjectStore) {}
  get(key: string, options?: ReadOptions) {
    this.counts.get++;
    return this.inner.get(key, options);
  }
  getRange(key: string, start: number, end?: number, options?: ReadOptions) {
    this.counts.get++;
    return this.inner.getRange(key, start, end, options);
  }
  head(key: string, options?: ReadOptions) {
    this.counts.get++;
    return this.inner.head(key, options);
  }
  put(key: string, body: Uint8Array | string) {
    this.counts.put++;
    return this.inner.put(key, body);
  }
  putIfAbsent(key: string, body: Uint8Array | string) {
    this.counts.put++;
    return this.inner.putIfAbsent(key, body);
  }
  list(prefix: string): AsyncIterable<ObjectInfo> {
    this.counts.list++;
    return this.inner.list(prefix);
  }
  delete(key: string) {
    this.counts.delete++;
    return this.inner.delete(key);
  }
}

export async function benchRequests(): Promise<Row[]> {
  const { dir } = await stagedText('requests', 3, 4, 4);
  const stores: Partial<Record<'driver' | 'tasks', CountingStore>> = {};
  const runtime = await EmbeddedRuntime.open({
    pipelinePath: path.resolve('examples/wordcount.ts'),
    inProcess: wordcount,
    root: await freshRoot('requests'),
    workers: 2,
    partitions: 4,
    // Polled as on AWS (once a second), so the driver's LIST count is what a deployment pays.
    scheduler: { pollMs: 1000 },
    wrapStore: (store, role) => (stores[role] = new CountingStore(store)),
  });
  let reports;
  try {
    reports = await runtime.replay(dir);
  } finally {
    await runtime.close();
  }
  const intervals = reports.length;
  const tasks = reports.reduce((n, r) => n + r.tasks, 0);
  const rows: Row[] = [];
  for (const role of ['driver', 'tasks'] as const) {
    const c = stores[role]!.counts;
    rows.push({
      who: role,
      'GET+HEAD / interval': c.get / intervals,
      'PUT / interval': c.put / intervals,
      'LIST / interval': c.list / intervals,
      'DELETE / interval': c.delete / intervals,
      ...(role === 'tasks' ? { 'GET per task': c.get / tasks, 'PUT per task': c.put / tasks } : {}),
    });
  }
  rows.push({ who: `(${tasks / intervals} tasks per interval, WordCount, 4 splits, 4 partitions)` });
  return rows;
}
