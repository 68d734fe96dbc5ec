import { readRange, type ObjectInfo, type ObjectStore, type ReadOptions } from '../ports/object-store.ts';

/**
 * A read a task's compute will make, as it will make it: a whole object (`get(key)`), or bytes
 * [start, end) of one (`getRange(key, start, end, { version })`).
 */
export interface PlannedRead {
  key: string;
  range?: { start: number; end: number; version?: string };
  /** Reads that become known once this one's bytes are in (a split's input ranges, from its descriptor). */
  then?: (bytes: Uint8Array) => PlannedRead[];
}

/**
 * Reads started ahead of the compute and not yet taken by it: as many as a reduce task kept in
 * flight of its shuffle blocks before, enough to hide a store's latency, few enough to bound what
 * is held. Each is an object the compute holds whole anyway (a block, a stored partition, a split
 * descriptor) or a short input range (see plannedSplitReads).
 */
export const READS_AHEAD = 8;

/**
 * The store as a task's compute reads it: the reads planned for the task start at once, at most
 * READS_AHEAD ahead, and a read the compute makes as planned takes the bytes already on their way,
 * so a task whose inputs are a state partition and shuffle blocks waits for one round trip, not
 * one per object in turn. What the compute is given is what the store gives (its bytes, its
 * absent, its error), in the order the compute asks, however the reads finish, so outputs are
 * those of reads one by one.
 * A planned read the compute never makes costs a request and its bytes until `close`.
 */
export class TaskReads implements ObjectStore {
  private readonly queue: PlannedRead[] = [];
  private readonly started = new Map<string, Promise<Uint8Array | undefined>>();
  private readonly planned = new Set<string>();
  private closed = false;

  constructor(private readonly store: ObjectStore) {}

  /** Adds `reads` (in the order the compute is expected to make them) ahead of any not yet started, and starts what the bound allows. */
  plan(reads: PlannedRead[]): void {
    if (this.closed) return;
    const fresh = reads.filter((r) => {
      const id = idOf(r.key, r.range);
      if (this.planned.has(id)) return false;
      this.planned.add(id);
      return true;
    });
    this.queue.unshift(...fresh);
    this.pump();
  }

  /** Starts no more reads; those in flight end unread. */
  close(): void {
    this.closed = true;
    this.queue.length = 0;
    this.started.clear();
  }

  get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return (options === undefined ? this.take(idOf(key)) : undefined) ?? this.store.get(key, options);
  }

  async *getRange(key: string, start: number, end?: number, options?: ReadOptions): AsyncIterable<Uint8Array> {
    const ahead = end !== undefined && options?.absentIfRefused === undefined ? this.take(idOf(key, { start, end, version: options?.version })) : undefined;
    if (!ahead) {
      yield* this.store.getRange(key, start, end, options);
      return;
    }
    const bytes = (await ahead)!;
    if (bytes.length > 0) yield bytes;
  }

  head(key: string, options?: ReadOptions): Promise<ObjectInfo | undefined> {
    return this.store.head(key, options);
  }

  put(key: string, body: Uint8Array | string): Promise<void> {
    return this.store.put(key, body);
  }

  putIfAbsent(key: string, body: Uint8Array | string): Promise<boolean> {
    return this.store.putIfAbsent(key, body);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.store.list(prefix);
  }

  delete(key: string): Promise<void> {
    return this.store.delete(key);
  }

  /**
   * The planned read `id`'s bytes if it was started; undefined if not, and then it never starts:
   * the compute reads it itself, once.
   */
  private take(id: string): Promise<Uint8Array | undefined> | undefined {
    const ahead = this.started.get(id);
    if (ahead) {
      this.started.delete(id);
      this.pump();
      return ahead;
    }
    const i = this.queue.findIndex((r) => idOf(r.key, r.range) === id);
    if (i >= 0) this.queue.splice(i, 1);
    return undefined;
  }

  private pump(): void {
    while (!this.closed && this.started.size < READS_AHEAD && this.queue.length > 0) {
      const read = this.queue.shift()!;
      const { key, range } = read;
      const bytes = range ? readRange(this.store, key, range.start, range.end, range.version === undefined ? undefined : { version: range.version }) : this.store.get(key);
      // An error reaches the compute when it takes the read; one it never takes is of no consequence.
      bytes.catch(() => {});
      this.started.set(idOf(key, range), bytes);
      if (read.then) {
        const then = read.then;
        void bytes.then((b) => {
          if (!b) return;
          let next: PlannedRead[];
          try {
            next = then(b);
          } catch {
            // The compute reads the same bytes and reports what is wrong with them.
            return;
          }
          this.plan(next);
        }, () => {});
      }
    }
  }
}

function idOf(key: string, range?: PlannedRead['range']): string {
  return range ? `range\0${key}\0${range.start}\0${range.end}\0${range.version ?? ''}` : `get\0${key}`;
}
