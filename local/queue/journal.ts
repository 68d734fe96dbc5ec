import { writeSync } from 'node:fs';
import { open, readFile, rename, writeFile } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/** Below this size a journal is never compacted: rewriting it would cost more than it saves. */
const MIN_COMPACT_BYTES = 1024 * 1024;

export interface JournalState<R> {
  /** Records that recreate the current state from nothing. */
  snapshot(): R[];
  /** Roughly how many bytes a snapshot would take; the journal is compacted when it is twice that. */
  retainedBytes(): number;
}

/**
 * How a journal appends to its file: one blocking write. An append is a few hundred bytes given
 * to the OS, tens of microseconds, against a tenth of a millisecond or more through the thread
 * pool, and the queue's owner waits on one before each delivery. (An object, so that a test can
 * make a write fail as a full disk would.)
 */
export const journalWrites = {
  append(fd: number, text: string): void {
    const bytes = Buffer.from(text);
    for (let written = 0; written < bytes.length; ) written += writeSync(fd, bytes, written, bytes.length - written);
  },
};

/**
 * An append-only log of JSON records, one per line, written with group commit: appends made by the
 * code running now (and microtasks already queued), or while a compaction is under way, go out
 * together in one write, so many small operations cost few writes.
 * Written to the OS (safe against the process crashing), not fsynced (not against power loss).
 *
 * Replay must be idempotent and tolerate records about unknown ids: a compaction snapshot may
 * already reflect records that are appended after it.
 */
export class Journal<R> {
  private pending: PendingWrite[] = [];
  private draining?: Promise<void>;
  /** A failed write may have left a partial line; the next write ends it so only that line is lost. */
  private tornTail = false;
  private nextCompactionCheck = 0;
  private closed = false;

  private constructor(
    private readonly file: string,
    private handle: FileHandle,
    private bytes: number,
    private readonly state: JournalState<R>,
  ) {}

  /** Opens (creating if absent) the journal and reads back its records; a torn or garbled line is skipped. */
  static async open<R>(file: string, state: JournalState<R>): Promise<{ journal: Journal<R>; records: R[] }> {
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    const records: R[] = [];
    for (const line of text.split('\n')) {
      if (line === '') continue;
      try {
        const record: unknown = JSON.parse(line);
        if (typeof record === 'object' && record !== null) records.push(record as R);
      } catch {
        // The tail of a write cut short by a crash: that write never returned, so nothing relied on it.
      }
    }
    const handle = await open(file, 'a');
    const journal = new Journal(file, handle, Buffer.byteLength(text), state);
    journal.tornTail = text !== '' && !text.endsWith('\n');
    return { journal, records };
  }

  /** Resolves once the records are written; `onDurable` runs first, in journal order, before any compaction. */
  append(records: R[], onDurable?: () => void): Promise<void> {
    return this.enqueue({ text: records.map((record) => `${JSON.stringify(record)}\n`).join(''), onDurable, compact: false });
  }

  /** Rewrites the journal as a snapshot of the current state, after any pending appends. */
  compact(): Promise<void> {
    return this.enqueue({ text: '', compact: true });
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.draining;
    await this.handle.close();
  }

  private enqueue(entry: Omit<PendingWrite, 'resolve' | 'reject'>): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`journal ${this.file} is closed`));
    return new Promise((resolve, reject) => {
      this.pending.push({ ...entry, resolve, reject });
      this.draining ??= this.drain();
    });
  }

  private async drain(): Promise<void> {
    // Appends made by the code running now join this write.
    await undefined;
    while (this.pending.length > 0) {
      const batch = this.pending.splice(0);
      const text = batch.map((entry) => entry.text).join('');
      try {
        if (text !== '') {
          const out = this.tornTail ? `\n${text}` : text;
          journalWrites.append(this.handle.fd, out);
          this.tornTail = false;
          this.bytes += Buffer.byteLength(out);
        }
      } catch (error) {
        this.tornTail = true;
        for (const entry of batch) entry.reject(error);
        continue;
      }
      for (const entry of batch) {
        try {
          entry.onDurable?.();
        } catch (error) {
          entry.reject(error);
        }
      }
      const due = this.bytes >= Math.max(MIN_COMPACT_BYTES, 2 * this.state.retainedBytes(), this.nextCompactionCheck);
      if (due || batch.some((entry) => entry.compact)) await this.rewrite();
      for (const entry of batch) entry.resolve();
    }
    this.draining = undefined;
  }

  /** Snapshot to a side file, then rename it over the journal: a crash leaves one or the other whole. */
  private async rewrite(): Promise<void> {
    const next = `${this.file}.next`;
    const text = this.state.snapshot().map((record) => `${JSON.stringify(record)}\n`).join('');
    let handle: FileHandle | undefined;
    try {
      await writeFile(next, text);
      handle = await open(next, 'a');
      await rename(next, this.file);
    } catch {
      await handle?.close().catch(() => undefined);
      // The journal is intact, only longer than it need be; try again once it has grown some more.
      this.nextCompactionCheck = this.bytes + MIN_COMPACT_BYTES;
      return;
    }
    const old = this.handle;
    this.handle = handle;
    this.bytes = Buffer.byteLength(text);
    this.tornTail = false;
    this.nextCompactionCheck = 0;
    await old.close().catch(() => undefined);
  }
}

interface PendingWrite {
  text: string;
  onDurable?: () => void;
  compact: boolean;
  resolve: () => void;
  reject: (error: unknown) => void;
}
