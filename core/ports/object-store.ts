import { shortHash } from '../util/hash.ts';

/**
 * The object store port: everything durable lives here (S3 on AWS, a directory locally).
 * Keys are '/'-separated relative paths such as `incoming/a.txt` or `output/counts/interval=3/part-00000`.
 */
export interface ObjectInfo {
  key: string;
  size: number;
  /** Milliseconds since the epoch at which the object was last written. */
  lastModified: number;
  /** The version this answer describes, from stores that keep versions (S3 with versioning on). */
  version?: string;
}

export interface ReadOptions {
  /**
   * One immutable version of the object, as the store named it when it was written (S3's version
   * id): what pins an upload, so a read never sees bytes written after it was admitted. A store
   * that keeps no versions refuses the option (VersionsUnsupportedError).
   */
  version?: string;
  /**
   * For reads where a wrong "absent" costs only repeated work (is a task already done? has another
   * copy committed?): S3 answers 403, not 404, for a missing key to roles that may list only under
   * a prefix, and the store otherwise lists the key to tell the two apart, a LIST request per read.
   * With this it takes a refusal as absent at once. Stores that can tell ignore it.
   */
  absentIfRefused?: boolean;
}

export interface ObjectStore {
  /** The whole object, or undefined when it does not exist. */
  get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined>;
  /**
   * Bytes [start, end) of an object (or of one version of it), streamed in chunks; `end` is
   * clipped to the object's size. Throws ObjectNotFoundError when the object (version) does not exist.
   */
  getRange(key: string, start: number, end?: number, options?: ReadOptions): AsyncIterable<Uint8Array>;
  /** Size and modification time (of one version), or undefined when it does not exist. */
  head(key: string, options?: ReadOptions): Promise<ObjectInfo | undefined>;
  /** Writes the whole object atomically: a reader sees the old bytes or the new, never a mix. */
  put(key: string, body: Uint8Array | string): Promise<void>;
  /** Creates the object only if no object has the key. True when this call created it. */
  putIfAbsent(key: string, body: Uint8Array | string): Promise<boolean>;
  /** Every object whose key starts with `prefix`, in ascending key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Removes the object; removing a missing object is not an error. */
  delete(key: string): Promise<void>;
}

export class ObjectNotFoundError extends Error {
  constructor(readonly key: string) {
    super(`object not found: ${key}`);
    this.name = 'ObjectNotFoundError';
  }
}

export class VersionsUnsupportedError extends Error {
  constructor(readonly key: string, store: string) {
    super(`${store} keeps no versions of objects, so version-pinned reads of ${key} cannot be served`);
    this.name = 'VersionsUnsupportedError';
  }
}

export class InvalidKeyError extends Error {
  constructor(readonly key: string, reason: string) {
    super(`invalid object key ${JSON.stringify(key)}: ${reason}`);
    this.name = 'InvalidKeyError';
  }
}

/**
 * The one rule for keys, shared by every store so that a pipeline that runs locally runs on S3:
 * relative, '/'-separated, no empty, '.' or '..' segments, no NUL or backslash, at most 1024 bytes.
 */
export function validateKey(key: string): string {
  if (typeof key !== 'string' || key.length === 0) throw new InvalidKeyError(String(key), 'empty');
  if (Buffer.byteLength(key) > 1024) throw new InvalidKeyError(key, 'longer than 1024 bytes');
  if (key.startsWith('/')) throw new InvalidKeyError(key, 'absolute');
  if (/[\u0000\\]/.test(key)) throw new InvalidKeyError(key, 'contains NUL or backslash');
  for (const segment of key.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new InvalidKeyError(key, `segment ${JSON.stringify(segment)} is not allowed`);
    }
  }
  return key;
}

/** Reads a whole range into one buffer; for small reads (headers, records). */
export async function readRange(store: ObjectStore, key: string, start: number, end?: number, options?: ReadOptions): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  for await (const chunk of store.getRange(key, start, end, options)) chunks.push(chunk);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

export async function listAll(store: ObjectStore, prefix: string): Promise<ObjectInfo[]> {
  const out: ObjectInfo[] = [];
  for await (const info of store.list(prefix)) out.push(info);
  return out;
}

/**
 * Stores `value` as JSON under the key its content hash names (`keyOf(hash)`), create-if-absent:
 * the same content always lands on the same object, so a writer that died and a writer that
 * raced it agree. Returns the hash, which a reader passes to `readContentAddressed`.
 */
export async function putContentAddressed(store: ObjectStore, keyOf: (hash: string) => string, value: unknown): Promise<{ hash: string; size: number }> {
  const body = JSON.stringify(value);
  const hash = shortHash(body, 32);
  await store.putIfAbsent(keyOf(hash), body);
  return { hash, size: Buffer.byteLength(body) };
}

/** Reads what `putContentAddressed` stored, refusing an object that is gone or whose bytes do not match its hash. */
export async function readContentAddressed<T>(store: ObjectStore, key: string, hash: string): Promise<T> {
  const bytes = await store.get(key);
  if (!bytes) throw new Error(`${key} is missing: the lineage that names it (hash ${hash}) cannot be read`);
  const body = Buffer.from(bytes).toString('utf8');
  if (shortHash(body, 32) !== hash) throw new Error(`${key} does not match its hash ${hash}: it was changed after it was written`);
  return JSON.parse(body) as T;
}

/** A JSON object, or undefined when there is none. */
export async function readJson<T>(store: ObjectStore, key: string): Promise<T | undefined> {
  const bytes = await store.get(key);
  return bytes ? (JSON.parse(Buffer.from(bytes).toString('utf8')) as T) : undefined;
}
