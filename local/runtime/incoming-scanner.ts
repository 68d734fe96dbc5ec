import { isUtf8 } from 'node:buffer';
import type { Dirent, Stats } from 'node:fs';
import { constants } from 'node:fs';
import { access, lstat, mkdir, readdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { INCOMING, keys } from '../../core/layout.ts';
import { validateKey } from '../../core/ports/object-store.ts';
import { admitUpload, type IntakeUpload } from '../../core/streaming/intake.ts';
import { intervalAt, type DriverProgress } from '../../core/streaming/progress.ts';
import { shortHash } from '../../core/util/hash.ts';
import type { FsObjectStore } from '../store/fs-object-store.ts';

/** A file is taken once it has kept its size and modification time this long: its writer is done. */
const QUIET_MS = 100;

interface Sighting {
  ino: number;
  size: number;
  mtimeMs: number;
  since: number;
}

/**
 * The embedded runtime's ingest: files dropped into `<root>/incoming/` become uploads.
 *
 * Each file is pinned when it is taken: it is entered into the open interval and then moved out
 * of `incoming/` to a key of its own under `intake/uploads/`, so nothing done to `incoming/` later
 * (a file renamed over it, bytes appended, a delete) reaches bytes an interval admitted, and a
 * file written again under the same name is a new upload, counted once. What cannot be read is
 * refused, not dropped: it is entered as refused (its interval records why under errors/) and its
 * bytes are moved to `intake/refused/`. That covers names no store can hold (a backslash, a key
 * over 1024 bytes, a name that is not UTF-8), symbolic links and other non-files.
 *
 * Names starting with '.' are files still being written (write `.name`, then rename to `name`),
 * and are left alone, as Spark's file streams do. A file whose writer has not finished (its size
 * or time still changing) waits; its clock may be wrong, as a file's time only places an upload
 * in an interval that is still open.
 */
export class IncomingScanner {
  private readonly sightings = new Map<string, Sighting>();
  /** Files entered whose original could not be removed from incoming/ (no right to): not taken again. */
  private readonly leftBehind = new Set<string>();
  /** Folders of incoming/ that cannot be read, each said once. */
  private readonly unreadable = new Set<string>();
  private readonly incoming: string;

  constructor(
    private readonly store: FsObjectStore,
    private readonly now: () => number,
  ) {
    this.incoming = path.join(store.root, ...INCOMING.split('/').filter(Boolean));
  }

  /** Creates `incoming/`, so that the first file moved in has somewhere to go. */
  async prepare(): Promise<void> {
    await mkdir(this.incoming, { recursive: true });
  }

  /** Takes every file that is ready; `open` is the first interval still open to uploads. */
  async scan(progress: DriverProgress, open: number): Promise<void> {
    const present = new Set<string>();
    await this.walk(Buffer.from(this.incoming), [], present, progress, open);
    for (const id of this.sightings.keys()) if (!present.has(id)) this.sightings.delete(id);
  }

  private async walk(dir: Buffer, names: Buffer[], present: Set<string>, progress: DriverProgress, open: number): Promise<void> {
    let entries: Dirent<Buffer>[];
    try {
      entries = await readdir(dir, { withFileTypes: true, encoding: 'buffer' });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      // Its files cannot even be named, let alone entered: say so (once), and read the rest.
      const where = dir.toString('latin1');
      if (!this.unreadable.has(where)) console.error(`dstream: cannot read ${dir.toString('utf8')} (${(error as Error).message}): its files are not taken until it can be read`);
      this.unreadable.add(where);
      return;
    }
    entries.sort((a, b) => Buffer.compare(a.name, b.name));
    for (const entry of entries) {
      if (entry.name[0] === 0x2e /* '.' */) continue;
      const file = Buffer.concat([dir, Buffer.from(path.sep), entry.name]);
      const relative = [...names, entry.name];
      if (entry.isDirectory()) {
        await this.walk(file, relative, present, progress, open);
        continue;
      }
      const info = await lstat(file).catch(() => undefined);
      if (!info) continue;
      const id = file.toString('latin1');
      present.add(id);
      if (this.leftBehind.has(`${id}\n${info.ino}:${info.size}:${info.mtimeMs}`) || !this.isQuiet(id, info)) continue;
      this.sightings.delete(id);
      await this.take(file, relative, info, progress, open);
    }
  }

  /** True once the file has looked the same for QUIET_MS: its writer is done with it. */
  private isQuiet(id: string, info: Stats): boolean {
    const now = this.now();
    const seen = this.sightings.get(id);
    if (seen && seen.ino === info.ino && seen.size === info.size && seen.mtimeMs === info.mtimeMs) return now - seen.since >= QUIET_MS;
    this.sightings.set(id, { ino: info.ino, size: info.size, mtimeMs: info.mtimeMs, since: now });
    return false;
  }

  private async take(file: Buffer, names: Buffer[], info: Stats, progress: DriverProgress, open: number): Promise<void> {
    const name = displayName(names);
    // The same file seen again after a crash between its entry and its move gets the same id.
    const id = shortHash(`${name}\n${info.dev}:${info.ino}\n${info.size}\n${info.mtimeMs}`, 24);
    const refused = await uploadRefusal(file, names, info, keys.pinnedUpload(id, name));
    const upload: IntakeUpload =
      refused === undefined
        ? { key: keys.pinnedUpload(id, name), name, size: info.size }
        : { key: keys.refusedUploadBytes(id), name, size: info.size, refused };
    // A file's time places it only in an interval still open; a clock ahead of ours changes nothing.
    const arrived = Math.max(open, intervalAt(progress, Math.min(info.mtimeMs, this.now())));
    // Entered first, then moved: a crash in between leaves the file in incoming/ to be taken again
    // under the same id; a file deleted in between is found missing at the seal, and refused there.
    await admitUpload(this.store, upload, arrived);
    try {
      // A file with another name elsewhere (a hard link) is copied: editing it there must not reach the upload.
      if (info.nlink > 1 && refused === undefined) {
        await this.store.copyIn(file, upload.key);
        await unlink(file);
      } else {
        await this.store.moveIn(file, upload.key);
      }
    } catch (error) {
      // Not ours to move (no write right on its folder, say): what was copied is the upload, else the
      // seal refuses it as never pinned. Either way it is not taken again.
      console.error(`dstream: could not take ${name} out of incoming/ (${(error as Error).message}); it stays there and is not read again`);
      this.leftBehind.add(`${file.toString('latin1')}\n${info.ino}:${info.size}:${info.mtimeMs}`);
    }
  }
}

/**
 * Why a file cannot be an upload whose bytes are to be kept at `pinnedKey`, or undefined: the one
 * rule for the live runtime's incoming/ and replay's staged folders. `names` are the path's
 * segments below the folder, as bytes.
 */
export async function uploadRefusal(file: Buffer, names: Buffer[], info: Stats, pinnedKey: string): Promise<string | undefined> {
  if (!names.every((n) => isUtf8(n))) return 'its name is not valid UTF-8 (shown with \\x escapes): rename it';
  if (info.isSymbolicLink()) return 'it is a symbolic link, not a file: move or copy the file itself';
  if (!info.isFile()) return 'it is not a regular file';
  const name = displayName(names);
  try {
    validateKey(`${INCOMING}${name}`);
  } catch (error) {
    return `its name cannot be a key: ${(error as Error).message}`;
  }
  const longest = 1024 - (Buffer.byteLength(pinnedKey) - Buffer.byteLength(name));
  if (Buffer.byteLength(pinnedKey) > 1024) return `its name is ${Buffer.byteLength(name)} bytes, longer than the ${longest} the embedded runtime can keep an upload under: shorten it`;
  // A file no task could open would fail every read of its interval: refused now instead.
  try {
    await access(file, constants.R_OK);
  } catch (error) {
    return `it cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)}): give the runtime read access, then move it in again`;
  }
  return undefined;
}

/** The name an upload goes by: its path below the folder, bytes that are not UTF-8 shown as \\x escapes. */
export function displayName(names: Buffer[]): string {
  return names.map((n) => (isUtf8(n) ? n.toString('utf8') : escapeBytes(n))).join('/');
}

function escapeBytes(name: Buffer): string {
  let out = '';
  for (const byte of name) out += byte >= 0x20 && byte < 0x7f && byte !== 0x5c ? String.fromCharCode(byte) : `\\x${byte.toString(16).padStart(2, '0')}`;
  return out;
}
