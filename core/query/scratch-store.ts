import type { ObjectInfo, ObjectStore, ReadOptions } from '../ports/object-store.ts';
import { validateKey } from '../ports/object-store.ts';
import { isQuerySession, keys, kindOfKey, QUERIES_PREFIX, type KeyKind } from '../layout.ts';

export { QUERIES_PREFIX };

/**
 * How the scratch store treats a key, by its form:
 * - `own`: the query's own (its batch run's lineage, cache, outputs, errors; `query/`, its specs):
 *   read and written in the scratch only.
 * - `recomputed`: an interval's task records and errors, as a recomputation of stream data lost
 *   from the cache writes them (the scheduler's recovery, core/scheduler/dag-scheduler.ts): the
 *   scratch only, the stream's own records of those tasks unseen, so the recomputation runs afresh.
 * - `overlaid`: an interval's cache and checkpoints: written in the scratch, read from it first and
 *   then from the stream, so a recomputation reads what the stream still has and adds what is gone.
 * - `stream`: every other key, the stream's, read as it is and never written.
 */
type KeyClass = 'own' | 'recomputed' | 'overlaid' | 'stream';

const CLASS_OF_KIND: Record<KeyKind, KeyClass> = { 'batch-run': 'own', 'interval-task-record': 'recomputed', 'interval-data': 'overlaid', other: 'stream' };

function classOf(key: string): KeyClass {
  return CLASS_OF_KIND[kindOfKey(key)];
}

export class QueryWriteRefusedError extends Error {
  constructor(readonly key: string) {
    super(`a query may not write ${key}: queries read a stream's data and write only their own scratch, under ${QUERIES_PREFIX}`);
    this.name = 'QueryWriteRefusedError';
  }
}

/**
 * The store a query runs on. A query is a batch run; every key of its own run (`lineage/batch=…/`,
 * `cache/batch=…/`, …) is moved under `queries/<session>/`, which is deleted when the query ends.
 * A query that reads stream data the cache no longer holds recomputes it from the interval's
 * lineage, as the driver would, but into the scratch: the interval's task records there, and its
 * recomputed cache partitions over the stream's (see KeyClass). Every other key is the stream's,
 * read as it is and never written: a write there is refused. So a query cannot disturb the
 * stream it reads, whatever the runner's code does.
 */
export class ScratchStore implements ObjectStore {
  readonly prefix: string;

  constructor(
    private readonly base: ObjectStore,
    session: string,
  ) {
    if (!isQuerySession(session)) throw new Error(`query session ${JSON.stringify(session)} must be 1-64 letters, digits or '-', and not "code" (the folder of queries' code)`);
    this.prefix = keys.queryScratch(session);
  }

  private write(key: string): string {
    validateKey(key);
    if (classOf(key) === 'stream') throw new QueryWriteRefusedError(key);
    return this.prefix + key;
  }

  /** Reads the scratch's copy where the key is the query's, and for an overlaid key where it has one; else the stream's. */
  private async readThrough<T>(key: string, read: (key: string) => Promise<T | undefined>): Promise<T | undefined> {
    const kind = classOf(key);
    if (kind === 'stream') return read(key);
    const scratch = await read(this.prefix + key);
    return scratch !== undefined || kind !== 'overlaid' ? scratch : read(key);
  }

  get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return this.readThrough(key, (k) => this.base.get(k, options));
  }

  async *getRange(key: string, start: number, end?: number, options?: ReadOptions): AsyncIterable<Uint8Array> {
    const kind = classOf(key);
    const inScratch = kind !== 'stream' && (kind !== 'overlaid' || (await this.base.head(this.prefix + key, options)) !== undefined);
    yield* this.base.getRange(inScratch ? this.prefix + key : key, start, end, options);
  }

  async head(key: string, options?: ReadOptions): Promise<ObjectInfo | undefined> {
    const info = await this.readThrough(key, (k) => this.base.head(k, options));
    return info && { ...info, key };
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    return this.base.put(this.write(key), body);
  }

  async putIfAbsent(key: string, body: Uint8Array | string): Promise<boolean> {
    const moved = this.write(key);
    // An overlaid key the stream holds is present: the recomputation would write the same bytes.
    if (classOf(key) === 'overlaid' && (await this.base.head(key))) return false;
    return this.base.putIfAbsent(moved, body);
  }

  /** The listing under `prefix` as a query sees it; a prefix that does not tell its class (`cache/`, ``) lists the stream's. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const kind = classOf(prefix);
    if (kind === 'stream') {
      yield* this.base.list(prefix);
      return;
    }
    const merged = new Map<string, ObjectInfo>();
    if (kind === 'overlaid') for await (const info of this.base.list(prefix)) merged.set(info.key, info);
    for await (const info of this.base.list(this.prefix + prefix)) merged.set(info.key.slice(this.prefix.length), { ...info, key: info.key.slice(this.prefix.length) });
    yield* [...merged.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Deletes the scratch's copy; an overlaid key the stream holds stays as the stream has it. */
  async delete(key: string): Promise<void> {
    return this.base.delete(this.write(key));
  }

  /** Deletes every scratch object of this session. */
  async clear(): Promise<void> {
    const doomed: string[] = [];
    for await (const info of this.base.list(this.prefix)) doomed.push(info.key);
    for (const key of doomed) await this.base.delete(key);
  }
}
