import type { ObjectInfo, ObjectStore, ReadOptions } from '../ports/object-store.ts';
import { validateKey } from '../ports/object-store.ts';

/** Where queries keep their scratch: `queries/<session>/`, never under a prefix the stream writes. */
export const QUERIES_PREFIX = 'queries/';

/** A key of a batch run's own (its lineage, cache, outputs, errors): what a query may write. */
const BATCH_SCOPED = /^(?:lineage|cache|checkpoints|errors|output\/[^/]+)\/batch=[^/]+\//;

export class QueryWriteRefusedError extends Error {
  constructor(readonly key: string) {
    super(`a query may not write ${key}: queries read a stream's data and write only their own scratch, under ${QUERIES_PREFIX}`);
    this.name = 'QueryWriteRefusedError';
  }
}

/**
 * The store a query runs on. A query is a batch run; every key of its own run (`lineage/batch=…/`,
 * `cache/batch=…/`, …) is moved under `queries/<session>/`, which is deleted when the query ends;
 * every other key is the stream's, read as it is and never written: a write there is refused.
 * So a query cannot disturb the stream it reads, whatever the runner's code does.
 */
export class ScratchStore implements ObjectStore {
  readonly prefix: string;

  constructor(
    private readonly base: ObjectStore,
    session: string,
  ) {
    if (!/^[0-9A-Za-z-]{1,64}$/.test(session)) throw new Error(`query session ${JSON.stringify(session)} must be 1-64 letters, digits or '-'`);
    this.prefix = `${QUERIES_PREFIX}${session}/`;
  }

  /** The key in the base store: scratch keys moved under the prefix, the stream's as they are. */
  private read(key: string): string {
    return BATCH_SCOPED.test(key) ? this.prefix + key : key;
  }

  private write(key: string): string {
    validateKey(key);
    if (!BATCH_SCOPED.test(key)) throw new QueryWriteRefusedError(key);
    return this.prefix + key;
  }

  get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return this.base.get(this.read(key), options);
  }

  getRange(key: string, start: number, end?: number, options?: ReadOptions): AsyncIterable<Uint8Array> {
    return this.base.getRange(this.read(key), start, end, options);
  }

  async head(key: string, options?: ReadOptions): Promise<ObjectInfo | undefined> {
    const info = await this.base.head(this.read(key), options);
    return info && { ...info, key };
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    return this.base.put(this.write(key), body);
  }

  async putIfAbsent(key: string, body: Uint8Array | string): Promise<boolean> {
    return this.base.putIfAbsent(this.write(key), body);
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const moved = this.read(prefix);
    for await (const info of this.base.list(moved)) {
      yield moved === prefix ? info : { ...info, key: info.key.slice(this.prefix.length) };
    }
  }

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
