import { readFileSync } from 'node:fs';
import { readFile, realpath, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

const LOCK_FILE = 'owner.lock';
/** Lock files held by this process, by real path: a pid alone cannot tell two owners in one process apart. */
const heldHere = new Set<string>();

/**
 * Marks a directory as owned by one process (its pid in `owner.lock`). A lock whose process is gone
 * is stale and taken over, so a crashed owner does not keep its successor out. A guard against
 * accidental double ownership, not a distributed lock: two processes taking over the same stale
 * lock at the same instant could both win.
 */
export class OwnerLock {
  private constructor(private readonly file: string) {}

  static async acquire(dir: string, what: string): Promise<OwnerLock> {
    const file = path.join(await realpath(dir), LOCK_FILE);
    if (heldHere.has(file)) throw new Error(`${what} ${dir} is already open in this process; close it before opening it again`);
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await writeFile(file, `${process.pid}\n`, { flag: 'wx' });
        heldHere.add(file);
        return new OwnerLock(file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const owner = Number.parseInt(await readFile(file, 'utf8').catch(() => ''), 10);
      if (owner !== process.pid && isRunning(owner)) {
        throw new Error(`${what} ${dir} is owned by running process ${owner} (see ${file}); it can have only one owner at a time`);
      }
      await unlink(file).catch(() => undefined);
    }
    throw new Error(`${what} ${dir}: could not take ${file}, other processes keep taking it`);
  }

  async release(): Promise<void> {
    heldHere.delete(this.file);
    await unlink(this.file).catch(() => undefined);
  }
}

function isRunning(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  return !isZombie(pid);
}

/**
 * A killed owner stays a zombie until its parent reaps it, and signals still reach it; it owns
 * nothing any more. Linux tells through /proc (the state after the command's closing paren).
 */
function isZombie(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return false;
  }
}
