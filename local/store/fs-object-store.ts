import { randomBytes } from 'node:crypto';
import { closeSync, constants, fstatSync, linkSync, lstatSync, mkdirSync, openSync, readSync, realpathSync, renameSync, unlinkSync, writeSync, type Dirent, type Stats } from 'node:fs';
import { copyFile, link, lstat, mkdir, open, readdir, realpath, rename, rmdir, stat, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { InvalidKeyError, ObjectNotFoundError, validateKey, VersionsUnsupportedError } from '../../core/ports/object-store.ts';
import type { ObjectInfo, ObjectStore, ReadOptions } from '../../core/ports/object-store.ts';

/** Where writes are staged before they are renamed into place; a reserved first key segment. */
export const TEMP_DIR = '.tmp';
const READ_CHUNK_BYTES = 1024 * 1024;
/** Up to this size an object is read or written with blocking calls, with FsObjectStoreOptions.blocking. */
const SMALL_BYTES = 1024 * 1024;
/** A put writes its temp file in one call, so one this old was left by a process that died mid-write. */
const STALE_TEMP_MS = 60 * 60 * 1000;
const LIST_STAT_BATCH = 32;
/** A concurrent delete may prune the parent directory between our mkdir and rename; try again. */
const PLACE_ATTEMPTS = 5;

let tempCounter = 0;

export interface FsObjectStoreOptions {
  /**
   * Read, write and look up objects of up to 1 MiB with blocking system calls (get, getRange,
   * head, put, putIfAbsent, and the directory checks they need). On a local disk an open, stat,
   * read and close that way take about a tenth of the time of the same calls through the thread
   * pool, and a write (temp file, rename or link, unlink) about half, more when the thread pool is
   * busy; a task makes a few such calls besides its work (its completion record, its start
   * marker, one read per shuffle block). But the event loop waits meanwhile: for a process that
   * runs one task at a time (a worker), not for one that serves others. (The embedded runtime's
   * driver, which also hands tasks to the workers and hears from them, was slower at 64 tasks an
   * interval with blocking calls, six runs of six on a loaded machine, and keeps the thread pool.)
   * Default false.
   */
  blocking?: boolean;
}

/** The file system calls of writes and lookups: blocking, or through the thread pool (FsObjectStoreOptions.blocking). */
interface FsCalls {
  realpath(file: string): Promise<string>;
  mkdir(dir: string): Promise<unknown>;
  /** Creates `file`, which must not exist, holding `body`. */
  create(file: string, body: Uint8Array | string): Promise<void>;
  /** Creates `file` empty, failing when it exists or is a link. */
  createEmpty(file: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(existing: string, created: string): Promise<void>;
  unlink(file: string): Promise<void>;
  lstat(file: string): Promise<Stats>;
}

const EXCLUSIVE_EMPTY = constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY | constants.O_NOFOLLOW;

const threadPoolCalls: FsCalls = {
  realpath: (file) => realpath(file),
  mkdir: (dir) => mkdir(dir, { recursive: true }),
  create: (file, body) => writeFile(file, body, { flag: 'wx' }),
  createEmpty: async (file) => (await open(file, EXCLUSIVE_EMPTY)).close(),
  rename,
  link,
  unlink,
  lstat: (file) => lstat(file),
};

// Async functions, so that a failing call rejects as the thread pool's would, never throws.
const blockingCalls: FsCalls = {
  realpath: async (file) => realpathSync.native(file),
  mkdir: async (dir) => mkdirSync(dir, { recursive: true }),
  create: async (file, body) => {
    const fd = openSync(file, 'wx');
    try {
      const bytes = typeof body === 'string' ? Buffer.from(body) : body;
      for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written, bytes.length - written);
    } finally {
      closeSync(fd);
    }
  },
  createEmpty: async (file) => closeSync(openSync(file, EXCLUSIVE_EMPTY)),
  rename: async (from, to) => renameSync(from, to),
  link: async (existing, created) => linkSync(existing, created),
  unlink: async (file) => unlinkSync(file),
  lstat: async (file) => lstatSync(file),
};

/**
 * An object store over one directory, laid out as the bucket is: key `a/b/c` is the file `<root>/a/b/c`.
 *
 * Safe to share between processes (the embedded runtime's workers write to it concurrently): puts
 * are a temp file renamed into place, putIfAbsent is a hard link (which fails if the key exists),
 * or for an empty body an exclusive create, which has no partial state to hide. Writes are atomic
 * against process crashes but not fsynced, so not against power loss.
 *
 * A directory the store has once found to resolve inside the root (created it, or checked its
 * real path) is trusted for the life of the store object: its objects are opened without
 * following a link in their last segment, and without resolving the real path of every read and
 * write again. Only something other than dstream could turn such a directory into a link later.
 *
 * Differences from S3 that a directory cannot avoid: an object cannot also be a prefix of other keys
 * (`a` and `a/b` cannot coexist; the second write gets InvalidKeyError), a key segment is limited
 * to the filesystem's name length, and symbolic links are not objects (list skips them; reads
 * through one are refused when it leads out of the root).
 */
export class FsObjectStore implements ObjectStore {
  readonly root: string;
  private opened?: Promise<string>;
  /** Directories (as keys name them, under the root) known to resolve inside it. */
  private readonly trusted = new Set<string>();

  private readonly blocking: boolean;

  constructor(root: string, options: FsObjectStoreOptions = {}) {
    this.root = path.resolve(root);
    this.blocking = options.blocking ?? false;
  }

  /** How to make the calls of a write of `bytes` bytes, or of a lookup (0 bytes). */
  private calls(bytes: number): FsCalls {
    return this.blocking && bytes <= SMALL_BYTES ? blockingCalls : threadPoolCalls;
  }

  async get(key: string, options?: ReadOptions): Promise<Uint8Array | undefined> {
    refuseVersion(key, options);
    const small = this.readSmall(key, 0);
    if (small !== undefined) return small === ABSENT ? undefined : small;
    const handle = await this.openForRead(key);
    if (handle === undefined) return undefined;
    try {
      return await handle.readFile();
    } catch (error) {
      if (isAbsent(error)) return undefined;
      throw error;
    } finally {
      await handle.close();
    }
  }

  async *getRange(key: string, start: number, end?: number, options?: ReadOptions): AsyncIterable<Uint8Array> {
    checkRange(key, start, end);
    refuseVersion(key, options);
    const small = this.readSmall(key, start, end);
    if (small === ABSENT) throw new ObjectNotFoundError(key);
    if (small !== undefined) {
      if (small.length > 0) yield small;
      return;
    }
    const handle = await this.openForRead(key);
    if (handle === undefined) throw new ObjectNotFoundError(key);
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new ObjectNotFoundError(key);
      const stop = Math.min(end ?? info.size, info.size);
      if (start >= stop) return;
      if (stop - start <= READ_CHUNK_BYTES) {
        // A shuffle block or a small object: one read, no stream to set up.
        yield await readExactly(handle, start, stop - start);
        return;
      }
      const stream = handle.createReadStream({ start, end: stop - 1, highWaterMark: READ_CHUNK_BYTES, autoClose: false });
      for await (const chunk of stream) yield chunk as Buffer;
    } finally {
      await handle.close();
    }
  }

  async head(key: string, options?: ReadOptions): Promise<ObjectInfo | undefined> {
    refuseVersion(key, options);
    const file = this.pathOf(key);
    const calls = this.calls(0);
    if (this.trusted.has(path.dirname(file))) {
      try {
        const info = await calls.lstat(file);
        if (!info.isSymbolicLink()) return info.isFile() ? { key, size: info.size, lastModified: Math.floor(info.mtimeMs) } : undefined;
      } catch (error) {
        if (isAbsent(error)) return undefined;
        throw error;
      }
    }
    const real = await this.resolveForRead(key, calls);
    if (real === undefined) return undefined;
    return statObject(real, key);
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    const target = this.pathOf(key);
    const calls = this.calls(byteLength(body));
    const temp = await this.writeTemp(body, calls);
    try {
      await this.place(key, target, calls, () => calls.rename(temp, target));
    } catch (error) {
      await removeQuietly(temp, calls);
      throw error;
    }
  }

  async putIfAbsent(key: string, body: Uint8Array | string): Promise<boolean> {
    const target = this.pathOf(key);
    if (body === '' || (body instanceof Uint8Array && body.length === 0)) {
      // Nothing to write, so nothing half-written to hide: an exclusive create is create-if-absent.
      try {
        const calls = this.calls(0);
        await this.place(key, target, calls, () => calls.createEmpty(target));
        return true;
      } catch (error) {
        if (errorCode(error) === 'EEXIST' && !(await isDirectory(target))) return false;
        throw error;
      }
    }
    const calls = this.calls(byteLength(body));
    const temp = await this.writeTemp(body, calls);
    try {
      // Unlike rename, link fails when the target exists: create-if-absent that holds across processes.
      await this.place(key, target, calls, () => calls.link(temp, target));
      return true;
    } catch (error) {
      if (errorCode(error) === 'EEXIST') return false;
      throw error;
    } finally {
      await removeQuietly(temp, calls);
    }
  }

  /**
   * Moves a file from outside the store's keys (the embedded runtime's incoming/ folder, whose
   * names may be no valid key) into it under `key`, by rename: no copy, and the file's bytes are
   * the object's from then on. False when the file is gone.
   */
  async moveIn(file: string | Buffer, key: string): Promise<boolean> {
    const target = this.pathOf(key);
    try {
      await this.place(key, target, threadPoolCalls, () => rename(file, target));
      return true;
    } catch (error) {
      if (errorCode(error) === 'ENOENT' && !(await lstat(file).catch(() => undefined))) return false;
      // Another filesystem (a mounted incoming/): copy, then remove the original.
      if (errorCode(error) !== 'EXDEV') throw error;
      await this.copyIn(file, key);
      await unlink(file);
      return true;
    }
  }

  /**
   * Copies a file from outside the store's keys into it under `key`; the original stays. A
   * copy-on-write clone where the filesystem has them (btrfs, XFS, APFS), else a copy made by the
   * kernel: no bytes pass through this process either way.
   */
  async copyIn(file: string | Buffer, key: string): Promise<void> {
    const target = this.pathOf(key);
    await this.rootReal();
    const temp = path.join(this.root, TEMP_DIR, `${process.pid}-${++tempCounter}-${randomBytes(4).toString('hex')}`);
    await copyFile(file, temp, constants.COPYFILE_FICLONE);
    try {
      await this.place(key, target, threadPoolCalls, () => rename(temp, target));
    } catch (error) {
      await removeQuietly(temp);
      throw error;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    if (typeof prefix !== 'string') throw new TypeError(`list prefix must be a string, got ${typeof prefix}`);
    // The prefix is a plain string prefix: everything up to its last '/' names the one directory to walk.
    const cut = prefix.lastIndexOf('/');
    const dirKey = cut < 0 ? '' : prefix.slice(0, cut);
    const rootReal = await this.rootReal();
    let dir = rootReal;
    if (cut >= 0) {
      try {
        dir = this.pathOf(dirKey);
      } catch (error) {
        throw new InvalidKeyError(prefix, `no key can start with it: ${(error as Error).message}`);
      }
      try {
        dir = await realpath(dir);
      } catch (error) {
        if (isAbsent(error)) return;
        throw error;
      }
      if (!isInside(dir, rootReal)) throw outsideRoot(prefix);
    }
    yield* this.walk(dir, cut < 0 ? '' : `${dirKey}/`, prefix.slice(cut + 1));
  }

  async delete(key: string): Promise<void> {
    const target = this.pathOf(key);
    const rootReal = await this.rootReal();
    let parent;
    try {
      parent = await realpath(path.dirname(target));
    } catch (error) {
      if (isAbsent(error)) return;
      throw error;
    }
    if (!isInside(parent, rootReal)) throw outsideRoot(key);
    try {
      await unlink(path.join(parent, path.basename(target)));
    } catch (error) {
      // EISDIR/EPERM: a directory holds other keys under this name, which is not an object.
      if (isAbsent(error) || errorCode(error) === 'EISDIR' || errorCode(error) === 'EPERM') return;
      throw error;
    }
    await this.pruneEmptyParents(path.dirname(target));
  }

  /** The file for a key; the first segment TEMP_DIR is reserved. */
  private pathOf(key: string): string {
    validateKey(key);
    const segments = key.split('/');
    if (segments[0] === TEMP_DIR) throw new InvalidKeyError(key, `the first segment ${JSON.stringify(TEMP_DIR)} is reserved for the store's temporary files`);
    return path.join(this.root, ...segments);
  }

  /** Creates the root and the temp area once, and answers the root's real path. */
  private rootReal(): Promise<string> {
    this.opened ??= (async () => {
      await mkdir(path.join(this.root, TEMP_DIR), { recursive: true });
      await this.sweepStaleTemps();
      return realpath(this.root);
    })();
    return this.opened;
  }

  private async sweepStaleTemps(): Promise<void> {
    const tempDir = path.join(this.root, TEMP_DIR);
    const cutoff = Date.now() - STALE_TEMP_MS;
    for (const name of await readdir(tempDir)) {
      const file = path.join(tempDir, name);
      const info = await stat(file).catch(() => undefined);
      if (info && info.mtimeMs < cutoff) await removeQuietly(file);
    }
  }

  /** The real path of a key's file, refusing links that lead out of the root; undefined when absent. */
  private async resolveForRead(key: string, calls: FsCalls): Promise<string | undefined> {
    const file = this.pathOf(key);
    const rootReal = await this.rootReal();
    let real;
    try {
      real = await calls.realpath(file);
    } catch (error) {
      if (isAbsent(error)) return undefined;
      throw error;
    }
    if (!isInside(real, rootReal)) throw outsideRoot(key);
    // No link on the way to its directory: the directory is what its name says.
    if (path.dirname(real) === path.join(rootReal, path.relative(this.root, path.dirname(file)))) this.trusted.add(path.dirname(file));
    return real;
  }

  /**
   * The key's file opened for reading, undefined when absent. In a trusted directory the file is
   * opened without following a link; a link found there is resolved and checked as any other.
   */
  private async openForRead(key: string): Promise<FileHandle | undefined> {
    const file = this.pathOf(key);
    if (this.trusted.has(path.dirname(file))) {
      try {
        return await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
      } catch (error) {
        if (isAbsent(error)) return undefined;
        if (errorCode(error) !== 'ELOOP') throw error;
      }
    }
    const real = await this.resolveForRead(key, threadPoolCalls);
    if (real === undefined) return undefined;
    try {
      return await open(real, 'r');
    } catch (error) {
      if (isAbsent(error)) return undefined;
      throw error;
    }
  }

  /**
   * With the blocking option, bytes `start` to `end` of a key's file in a trusted directory, read
   * with blocking calls; ABSENT when it is no object. Undefined leaves the read to the usual path:
   * the option is off, the directory not yet trusted, the file a link, or more than 1 MiB to read.
   */
  private readSmall(key: string, start: number, end?: number): Buffer | typeof ABSENT | undefined {
    if (!this.blocking) return undefined;
    const file = this.pathOf(key);
    if (!this.trusted.has(path.dirname(file))) return undefined;
    let fd: number;
    try {
      fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (error) {
      if (isAbsent(error)) return ABSENT;
      if (errorCode(error) === 'ELOOP') return undefined;
      throw error;
    }
    try {
      const info = fstatSync(fd);
      if (!info.isFile()) return ABSENT;
      const stop = Math.min(end ?? info.size, info.size);
      if (stop - start > READ_CHUNK_BYTES) return undefined;
      const buffer = Buffer.allocUnsafe(Math.max(0, stop - start));
      let filled = 0;
      while (filled < buffer.length) {
        const read = readSync(fd, buffer, filled, buffer.length - filled, start + filled);
        if (read === 0) break;
        filled += read;
      }
      return filled === buffer.length ? buffer : buffer.subarray(0, filled);
    } finally {
      closeSync(fd);
    }
  }

  private async writeTemp(body: Uint8Array | string, calls: FsCalls): Promise<string> {
    await this.rootReal();
    const temp = path.join(this.root, TEMP_DIR, `${process.pid}-${++tempCounter}-${randomBytes(4).toString('hex')}`);
    await calls.create(temp, body);
    return temp;
  }

  /** Runs `move` (a rename or link of the temp file to `target`) once the parent directory exists. */
  private async place(key: string, target: string, calls: FsCalls, move: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await this.prepareParent(key, target, calls);
      try {
        await move();
        return;
      } catch (error) {
        const code = errorCode(error);
        if (code === 'ENOENT' && attempt < PLACE_ATTEMPTS) {
          // A delete pruned the directory: check and create it afresh.
          this.trusted.delete(path.dirname(target));
          continue;
        }
        if (code === 'ENOTDIR') throw await this.underObjectError(key);
        if (code === 'EISDIR' || (code === 'EEXIST' && (await isDirectory(target)))) {
          // An empty directory left by an interrupted prune is no object: clear it and try again.
          if (attempt < PLACE_ATTEMPTS && (await removeEmptyDir(target))) continue;
          throw new InvalidKeyError(key, `other objects have keys starting with "${key}/", and a directory store cannot hold both`);
        }
        if (code === 'ENAMETOOLONG') throw new InvalidKeyError(key, 'a segment is longer than the filesystem allows');
        throw error;
      }
    }
  }

  /**
   * Creates the parent directory of `target`, checking first that its deepest existing ancestor is
   * inside the root: mkdir would otherwise follow a symbolic link out of it.
   */
  private async prepareParent(key: string, target: string, calls: FsCalls): Promise<void> {
    const rootReal = await this.rootReal();
    const parent = path.dirname(target);
    if (this.trusted.has(parent)) return;
    let existing = parent;
    for (;;) {
      try {
        const real = await calls.realpath(existing);
        if (!isInside(real, rootReal)) throw outsideRoot(key);
        break;
      } catch (error) {
        const code = errorCode(error);
        if (code === 'ENOTDIR') throw await this.underObjectError(key);
        if (code === 'ENAMETOOLONG') throw new InvalidKeyError(key, 'a segment is longer than the filesystem allows');
        if (code !== 'ENOENT' || existing === this.root) throw error;
        existing = path.dirname(existing);
      }
    }
    if (existing === parent) {
      this.trusted.add(parent);
      return;
    }
    try {
      await calls.mkdir(parent);
    } catch (error) {
      const code = errorCode(error);
      if (code === 'ENOTDIR' || code === 'EEXIST') throw await this.underObjectError(key);
      if (code === 'ENAMETOOLONG') throw new InvalidKeyError(key, 'a segment is longer than the filesystem allows');
      throw error;
    }
    if (!isInside(await calls.realpath(parent), rootReal)) throw outsideRoot(key);
    this.trusted.add(parent);
  }

  /** The error for a key below an existing object, naming that object. */
  private async underObjectError(key: string): Promise<InvalidKeyError> {
    const segments = key.split('/');
    for (let i = 1; i < segments.length; i++) {
      const ancestor = segments.slice(0, i).join('/');
      const info = await stat(path.join(this.root, ...segments.slice(0, i))).catch(() => undefined);
      if (info?.isFile()) {
        return new InvalidKeyError(key, `object "${ancestor}" exists, and a directory store cannot hold both it and keys under "${ancestor}/"`);
      }
    }
    return new InvalidKeyError(key, 'an object exists where one of its parent directories should be');
  }

  /** Every object below `dir`, in UTF-8 byte order of key, whose name in `dir` starts with `namePrefix`. */
  private async *walk(dir: string, keyPrefix: string, namePrefix: string): AsyncIterable<ObjectInfo> {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      if (isAbsent(error)) return;
      throw error;
    }
    const children = entries
      .filter((entry) => entry.name.startsWith(namePrefix) && (entry.isFile() || entry.isDirectory()))
      .filter((entry) => !(keyPrefix === '' && entry.name === TEMP_DIR))
      // A directory's keys all start with `name/`, so it sorts as `name/` among its siblings' keys.
      .map((entry) => ({ name: entry.name, isDir: entry.isDirectory(), order: Buffer.from(entry.isDirectory() ? `${entry.name}/` : entry.name) }))
      .sort((a, b) => Buffer.compare(a.order, b.order));
    for (let i = 0; i < children.length; ) {
      const child = children[i]!;
      if (child.isDir) {
        yield* this.walk(path.join(dir, child.name), `${keyPrefix}${child.name}/`, '');
        i++;
        continue;
      }
      const run = [];
      while (i < children.length && !children[i]!.isDir && run.length < LIST_STAT_BATCH) run.push(children[i++]!);
      const infos = await Promise.all(run.map((file) => statObject(path.join(dir, file.name), keyPrefix + file.name)));
      for (const info of infos) if (info) yield info;
    }
  }

  /** Removes directories left empty by a delete, up to but not including the root. */
  private async pruneEmptyParents(dir: string): Promise<void> {
    while (dir !== this.root && dir.startsWith(this.root + path.sep)) {
      if (!(await removeEmptyDir(dir))) return;
      this.trusted.delete(dir);
      dir = path.dirname(dir);
    }
  }
}

const ABSENT = Symbol('absent');

/** `length` bytes from `position`, or fewer where the file ends first. */
async function readExactly(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length);
  let filled = 0;
  while (filled < length) {
    const { bytesRead } = await handle.read(buffer, filled, length - filled, position + filled);
    if (bytesRead === 0) break;
    filled += bytesRead;
  }
  return filled === length ? buffer : buffer.subarray(0, filled);
}

/** A directory keeps no versions: the embedded runtime pins an upload by moving it to a key of its own. */
function refuseVersion(key: string, options: ReadOptions | undefined): void {
  if (options?.version !== undefined) throw new VersionsUnsupportedError(key, 'the filesystem store');
}

function checkRange(key: string, start: number, end: number | undefined): void {
  if (!Number.isSafeInteger(start) || start < 0) {
    throw new RangeError(`getRange(${JSON.stringify(key)}): start must be a non-negative integer, got ${start}`);
  }
  if (end !== undefined && (!Number.isSafeInteger(end) || end < start)) {
    throw new RangeError(`getRange(${JSON.stringify(key)}): end must be an integer no less than start (${start}), got ${end}`);
  }
}

async function statObject(file: string, key: string): Promise<ObjectInfo | undefined> {
  try {
    const info = await stat(file);
    return info.isFile() ? { key, size: info.size, lastModified: Math.floor(info.mtimeMs) } : undefined;
  } catch (error) {
    if (isAbsent(error)) return undefined;
    throw error;
  }
}

function outsideRoot(key: string): InvalidKeyError {
  return new InvalidKeyError(key, 'it resolves outside the store root (through a symbolic link)');
}

function isInside(real: string, rootReal: string): boolean {
  return real === rootReal || real.startsWith(rootReal + path.sep);
}

async function isDirectory(file: string): Promise<boolean> {
  const info = await stat(file).catch(() => undefined);
  return info?.isDirectory() ?? false;
}

async function removeEmptyDir(dir: string): Promise<boolean> {
  try {
    await rmdir(dir);
    return true;
  } catch {
    return false;
  }
}

async function removeQuietly(file: string, calls: FsCalls = threadPoolCalls): Promise<void> {
  await calls.unlink(file).catch(() => undefined);
}

/** The bytes of a body; a body neither a string nor bytes is refused here, before anything is written. */
function byteLength(body: Uint8Array | string): number {
  if (typeof body === 'string') return body.length * 3 > SMALL_BYTES ? Buffer.byteLength(body) : body.length;
  if (body instanceof Uint8Array) return body.length;
  throw new TypeError(`object body must be a string or Uint8Array, got ${body === null ? 'null' : typeof body}`);
}

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}

/** No such object: the file, or a directory on its path, is missing or is a file. */
function isAbsent(error: unknown): boolean {
  const code = errorCode(error);
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR';
}
