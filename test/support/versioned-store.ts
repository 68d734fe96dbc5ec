/**
 * A bucket with S3's versioning, in memory: every write makes a new version with an id of its
 * own, a delete only hides the object behind a delete marker, and a read by version id answers
 * that version whatever happened to the key since. It stands in for a versioned S3 bucket where
 * none can be reached (no LocalStack here, and s3rver keeps no versions); it passes the same
 * object-store contract as the real stores (test/contract/versioned-store.test.ts).
 */
import { randomBytes } from 'node:crypto';
import { ObjectNotFoundError, validateKey, type ObjectInfo, type ObjectStore, type ReadOptions } from '../../core/ports/object-store.ts';

interface Version {
  id: string;
  bytes: Uint8Array | undefined;
  lastModified: number;
}

const CHUNK = 64 * 1024;

export class VersionedMemoryStore implements ObjectStore {
  private readonly objects = new Map<string, Version[]>();

  constructor(private readonly now: () => number = Date.now) {}

  async get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    return this.find(key, options)?.bytes;
  }

  async *getRange(key: string, start: number, end?: number, options?: ReadOptions): AsyncIterable<Uint8Array> {
    if (!Number.isSafeInteger(start) || start < 0) throw new RangeError(`range start must be an integer >= 0, got ${start}`);
    if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) throw new RangeError(`range end must be an integer >= ${start}, got ${end}`);
    const bytes = this.find(key, options)?.bytes;
    if (!bytes) throw new ObjectNotFoundError(key);
    const stop = Math.min(end ?? bytes.length, bytes.length);
    for (let at = start; at < stop; at += CHUNK) yield bytes.slice(at, Math.min(stop, at + CHUNK));
  }

  async head(key: string, options?: ReadOptions): Promise<ObjectInfo | undefined> {
    const version = this.find(key, options);
    if (!version?.bytes) return undefined;
    return { key, size: version.bytes.length, lastModified: version.lastModified, version: version.id };
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    this.write(validateKey(key), body);
  }

  async putIfAbsent(key: string, body: Uint8Array | string): Promise<boolean> {
    if (this.current(key)?.bytes) return false;
    this.write(validateKey(key), body);
    return true;
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const found = [...this.objects.keys()].filter((k) => k.startsWith(prefix)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const key of found) {
      const info = await this.head(key);
      if (info) yield info;
    }
  }

  async delete(key: string): Promise<void> {
    validateKey(key);
    if (this.current(key)?.bytes) this.versions(key).push({ id: newVersionId(), bytes: undefined, lastModified: this.now() });
  }

  /** Writes a new version and answers its id, as S3's PutObject does: any key S3 takes, even one dstream refuses. */
  write(key: string, body: Uint8Array | string): string {
    const id = newVersionId();
    this.versions(key, false).push({ id, bytes: typeof body === 'string' ? Buffer.from(body) : Uint8Array.from(body), lastModified: this.now() });
    return id;
  }

  /** Removes one version for good, as DeleteObjectVersion does. */
  deleteVersion(key: string, id: string): void {
    this.objects.set(key, this.versions(key).filter((v) => v.id !== id));
  }

  private find(key: string, options: ReadOptions | undefined): Version | undefined {
    if (options?.version === undefined) return this.current(key);
    return this.versions(key).find((v) => v.id === options.version);
  }

  private current(key: string): Version | undefined {
    return this.versions(key).at(-1);
  }

  private versions(key: string, validate = true): Version[] {
    if (validate) validateKey(key);
    let list = this.objects.get(key);
    if (!list) this.objects.set(key, (list = []));
    return list;
  }
}

function newVersionId(): string {
  return randomBytes(12).toString('base64url');
}
