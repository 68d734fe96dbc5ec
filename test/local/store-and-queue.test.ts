import { spawn } from 'node:child_process';
import { appendFile, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Clock } from '../../core/ports/clock.ts';
import { InvalidKeyError, listAll, readRange } from '../../core/ports/object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { journalWrites } from '../../local/queue/journal.ts';
import { FsObjectStore, TEMP_DIR } from '../../local/store/fs-object-store.ts';
import { objectStoreContract } from '../contract/object-store-contract.ts';
import { taskQueueContract } from '../contract/task-queue-contract.ts';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const storeModule = path.join(repoRoot, 'local/store/fs-object-store.ts');
const queueModule = path.join(repoRoot, 'local/queue/fs-task-queue.ts');

const scratch: string[] = [];
async function scratchDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'dstream-test-'));
  scratch.push(dir);
  return dir;
}
afterEach(async () => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
});

objectStoreContract('FsObjectStore', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'dstream-store-contract-'));
  return { store: new FsObjectStore(root), cleanup: () => rm(root, { recursive: true, force: true }) };
}, { versions: 'refused' });

// A worker's store reads and writes small objects with blocking calls: the same contract holds.
objectStoreContract('FsObjectStore with blocking calls for small objects', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'dstream-store-contract-'));
  return { store: new FsObjectStore(root, { blocking: true }), cleanup: () => rm(root, { recursive: true, force: true }) };
}, { versions: 'refused' });

taskQueueContract('FsTaskQueue', async ({ maxReceives }) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'dstream-queue-contract-'));
  const queue = new FsTaskQueue({ dir, maxReceives });
  return {
    queue,
    cleanup: async () => {
      await queue.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

describe('FsObjectStore on a directory', () => {
  it('lays keys out as files under the root, as the bucket is', async () => {
    const root = await scratchDir();
    const store = new FsObjectStore(root);
    await store.put('output/counts/interval=3/part-00000', 'a\t1\n');
    expect(await readFile(path.join(root, 'output/counts/interval=3/part-00000'), 'utf8')).toBe('a\t1\n');
  });

  it.each([{}, { blocking: true }])('refuses symbolic links that lead out of the root, for every operation, and writes nothing outside (%o)', async (options) => {
    const root = await scratchDir();
    const outside = await scratchDir();
    await writeFile(path.join(outside, 'secret'), 'do not touch');
    await symlink(outside, path.join(root, 'escape'));
    await symlink(path.join(outside, 'secret'), path.join(root, 'leak'));
    const store = new FsObjectStore(root, options);
    // A directory the store trusts, then a link planted in it.
    await store.put('trusted/object', 'x');
    await symlink(path.join(outside, 'secret'), path.join(root, 'trusted', 'leak'));

    await expect(store.put('escape/planted', 'x')).rejects.toThrow(/outside the store root/);
    await expect(store.put('escape/new/deeper', 'x')).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.putIfAbsent('escape/planted', 'x')).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.get('escape/secret')).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.get('leak')).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.head('leak')).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.get('trusted/leak')).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(readRange(store, 'trusted/leak', 0)).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(readRange(store, 'escape/secret', 0)).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(store.delete('escape/secret')).rejects.toBeInstanceOf(InvalidKeyError);
    await expect(listAll(store, 'escape/')).rejects.toBeInstanceOf(InvalidKeyError);
    // A listing of the root does not follow links at all.
    expect(await listAll(store, '')).toEqual([{ key: 'trusted/object', size: 1, lastModified: expect.any(Number) }]);

    expect(await readdir(outside)).toEqual(['secret']);
    expect(await readFile(path.join(outside, 'secret'), 'utf8')).toBe('do not touch');
  });

  it('never shows a partial temp file (what a crash mid-put leaves), and reserves its area', async () => {
    const root = await scratchDir();
    const store = new FsObjectStore(root);
    await store.put('data/part-0', 'whole');
    await writeFile(path.join(root, TEMP_DIR, '4242-7-0badf00d'), 'half a wri');
    expect((await listAll(store, '')).map((info) => info.key)).toEqual(['data/part-0']);
    expect(await listAll(store, '.')).toEqual([]);
    await expect(store.get(`${TEMP_DIR}/4242-7-0badf00d`)).rejects.toThrow(/reserved/);
    await expect(store.put(TEMP_DIR, 'x')).rejects.toBeInstanceOf(InvalidKeyError);
  });

  it('a process killed while overwriting leaves the old object or the new one whole, and no stray keys', async () => {
    const root = await scratchDir();
    const store = new FsObjectStore(root);
    const size = 8 * 1024 * 1024;
    await store.put('big', Buffer.alloc(size, 'A'));
    for (const killAfterMs of [50, 130, 210]) {
      const child = runModule(`
        import { FsObjectStore } from ${JSON.stringify(storeModule)};
        const store = new FsObjectStore(${JSON.stringify(root)});
        const bodies = [Buffer.alloc(${size}, 'B'), Buffer.alloc(${size}, 'A')];
        await store.put('warm-up', 'x');
        console.log('writing');
        for (let i = 0; ; i++) await store.put('big', bodies[i % 2]);
      `);
      await child.line('writing');
      await new Promise((resolve) => setTimeout(resolve, killAfterMs));
      await child.kill();
      const got = (await store.get('big'))!;
      expect(got.length).toBe(size);
      expect(Buffer.from(got).equals(Buffer.alloc(size, got[0]!))).toBe(true);
      expect((await listAll(store, '')).map((info) => info.key)).toEqual(['big', 'warm-up']);
    }
  });

  it('a new store sweeps temp files over an hour old and keeps fresh ones, which a live writer may own', async () => {
    const root = await scratchDir();
    await mkdir(path.join(root, TEMP_DIR));
    const stale = path.join(root, TEMP_DIR, 'stale');
    const fresh = path.join(root, TEMP_DIR, 'fresh');
    await writeFile(stale, 'left by a crash');
    await writeFile(fresh, 'being written');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await utimes(stale, twoHoursAgo, twoHoursAgo);
    await new FsObjectStore(root).get('anything');
    expect(await readdir(path.join(root, TEMP_DIR))).toEqual(['fresh']);
  });

  it('an object and keys under it cannot both exist in a directory: the second write says which', async () => {
    const store = new FsObjectStore(await scratchDir());
    await store.put('a/b', 'object');
    await expect(store.put('a/b/c', 'x')).rejects.toThrow(/object "a\/b" exists/);
    await expect(store.put('a', 'x')).rejects.toThrow(/keys starting with "a\/"/);
    await expect(store.putIfAbsent('a', 'x')).rejects.toBeInstanceOf(InvalidKeyError);
    expect(String(await store.get('a/b'))).toBe('object');
  });

  it('a key segment longer than the filesystem allows is an InvalidKeyError', async () => {
    const store = new FsObjectStore(await scratchDir());
    await expect(store.put(`dir/${'n'.repeat(300)}`, 'x')).rejects.toThrow(/longer than the filesystem allows/);
  });

  it('delete removes the directories it leaves empty, but not the root or the temp area', async () => {
    const root = await scratchDir();
    const store = new FsObjectStore(root);
    await store.put('p/q/r', '1');
    await store.put('p/s', '2');
    await store.delete('p/q/r');
    expect((await readdir(root)).sort()).toEqual([TEMP_DIR, 'p']);
    expect(await readdir(path.join(root, 'p'))).toEqual(['s']);
    await store.delete('p/s');
    expect(await readdir(root)).toEqual([TEMP_DIR]);
  });

  // A worker (blocking calls) races the driver (the thread pool) for completion records and claims.
  it.each([
    ['the thread pool', 'the thread pool', false, false],
    ['blocking calls', 'the thread pool', true, false],
  ])('putIfAbsent has exactly one winner per key when two processes race for the same keys (%s against %s)', async (_a, _b, blockingA, blockingB) => {
    const root = await scratchDir();
    const keys = 500;
    // Both start at one agreed moment (process start-up times differ), then go through the keys in step.
    const startAt = Date.now() + 1500;
    const racer = (name: string, blocking: boolean) =>
      runModule(`
        import { FsObjectStore } from ${JSON.stringify(storeModule)};
        const store = new FsObjectStore(${JSON.stringify(root)}, { blocking: ${blocking} });
        await store.head('warm-up');
        await new Promise((resolve) => setTimeout(resolve, ${startAt} - Date.now()));
        const won = [];
        for (let i = 0; i < ${keys}; i += 10) {
          const batch = Array.from({ length: 10 }, (_, j) => i + j);
          const wins = await Promise.all(batch.map((k) => store.putIfAbsent('race/' + k, ${JSON.stringify(name)})));
          won.push(...batch.filter((_, j) => wins[j]));
        }
        console.log(JSON.stringify(won));
      `);
    const [a, b] = [racer('a', blockingA), racer('b', blockingB)];
    const [wonByA, wonByB] = (await Promise.all([a.output(), b.output()])).map((out) => JSON.parse(out) as number[]);
    expect(wonByA!.length + wonByB!.length).toBe(keys);
    const store = new FsObjectStore(root);
    for (const i of wonByA!) expect(String(await store.get(`race/${i}`))).toBe('a');
    for (const i of wonByB!) expect(String(await store.get(`race/${i}`))).toBe('b');
  });
});

describe('FsTaskQueue in a directory', () => {
  const queues: FsTaskQueue[] = [];
  const openQueue = (dir: string, options: { maxReceives?: number; clock?: Clock } = {}) => {
    const queue = new FsTaskQueue({ dir, ...options });
    queues.push(queue);
    return queue;
  };
  afterEach(async () => {
    vi.restoreAllMocks();
    for (const queue of queues.splice(0)) await queue.close();
  });

  it('delivers oldest first by first send: a redelivered message comes before later ones', async () => {
    const clock = fakeClock();
    const queue = openQueue(await scratchDir(), { clock });
    await queue.send(['a', 'b']);
    await queue.send(['c', 'd']);
    const [a, b] = await queue.receive(2, 1000);
    expect([a!.body, b!.body]).toEqual(['a', 'b']);
    await queue.delete(b!.receipt);
    clock.advance(1000);
    expect((await queue.receive(10, 1000)).map((m) => [m.body, m.receiveCount])).toEqual([['a', 2], ['c', 1], ['d', 1]]);
  });

  it('visibility follows the injected clock to the millisecond', async () => {
    const clock = fakeClock();
    const queue = openQueue(await scratchDir(), { clock });
    await queue.send(['m']);
    await queue.receive(1, 1000);
    clock.advance(999);
    expect(await queue.receive(1, 1000)).toEqual([]);
    clock.advance(1);
    expect((await queue.receive(1, 1000)).map((m) => m.receiveCount)).toEqual([2]);
  });

  it('a long poll sleeps on the injected clock until a delivery times out, without real waiting', async () => {
    const clock = fakeClock();
    const queue = openQueue(await scratchDir(), { clock });
    await queue.send(['m']);
    await queue.receive(1, 60_000);
    const started = Date.now();
    const [again] = await queue.receive(1, 1000, 120_000);
    expect(again!.receiveCount).toBe(2);
    expect(clock.now()).toBe(60_000);
    expect(Date.now() - started).toBeLessThan(1000);
  });

  it('a long poll on an empty queue waits without spinning', async () => {
    let reads = 0;
    const clock: Clock = {
      now: () => (reads++, Date.now()),
      sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    };
    const queue = openQueue(await scratchDir(), { clock });
    expect(await queue.receive(1, 1000, 300)).toEqual([]);
    expect(reads).toBeLessThan(10);
  });

  it('close ends waiting long polls, which return nothing, and later calls are refused', async () => {
    const queue = openQueue(await scratchDir());
    const polling = queue.receive(1, 1000, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await queue.close();
    expect(await polling).toEqual([]);
    await expect(queue.send(['late'])).rejects.toThrow(/closed/);
  });

  it('survives a restart: sent messages are kept, deliveries in flight are visible at once and not counted, old receipts are stale', async () => {
    const dir = await scratchDir();
    const before = openQueue(dir);
    await before.send(['a', 'b', 'c', 'd']);
    const [a, b, c] = await before.receive(3, 60_000);
    await before.delete(a!.receipt);
    // b failed (its consumer gave it back); c was still running when the owner stopped.
    await before.changeVisibility(b!.receipt, 60_000);
    await before.close();

    const after = openQueue(dir);
    const delivered = await after.receive(10, 60_000);
    expect(delivered.map((m) => [m.body, m.receiveCount])).toEqual([['b', 2], ['c', 1], ['d', 1]]);
    await after.delete(c!.receipt);
    await after.changeVisibility(delivered[1]!.receipt, 0);
    expect((await after.receive(10, 60_000)).map((m) => [m.body, m.receiveCount])).toEqual([['c', 2]]);
  });

  it('a delivery that timed out under its owner counts across a restart', async () => {
    const dir = await scratchDir();
    const clock = fakeClock();
    const before = openQueue(dir, { clock });
    await before.send(['slow']);
    await before.receive(1, 1000);
    clock.advance(1000);
    // The owner notices the timeout on its next receive, and delivers again; then it stops.
    expect((await before.receive(1, 1000)).map((m) => m.receiveCount)).toEqual([2]);
    await before.close();

    const after = openQueue(dir);
    expect((await after.receive(1, 1000)).map((m) => m.receiveCount)).toEqual([2]);
  });

  it('owners stopped mid-delivery any number of times never dead-letter a message; given-back deliveries do', async () => {
    const dir = await scratchDir();
    const sender = openQueue(dir, { maxReceives: 2 });
    await sender.send(['long task']);
    await sender.close();
    for (let restart = 0; restart < 5; restart++) {
      const owner = openQueue(dir, { maxReceives: 2 });
      expect((await owner.receive(1, 60_000)).map((m) => m.receiveCount)).toEqual([1]);
      await owner.close();
    }
    const owner = openQueue(dir, { maxReceives: 2 });
    const [first] = await owner.receive(1, 60_000);
    await owner.changeVisibility(first!.receipt, 0);
    const [second] = await owner.receive(1, 60_000);
    expect(second!.receiveCount).toBe(2);
    // The last allowed delivery, given back: dead-lettered at once, not on some later receive.
    await owner.changeVisibility(second!.receipt, 0);
    expect(await owner.drainDeadLetters(10)).toEqual([{ id: first!.id, body: 'long task', receiveCount: 2 }]);
  });

  it('dead letters, and their draining, survive restarts', async () => {
    const dir = await scratchDir();
    const first = openQueue(dir, { maxReceives: 1 });
    await first.send(['poison']);
    const [delivery] = await first.receive(1, 60_000);
    await first.changeVisibility(delivery!.receipt, 0);
    await first.close();

    const second = openQueue(dir, { maxReceives: 1 });
    expect(await second.receive(10, 1000)).toEqual([]);
    await second.close();

    const third = openQueue(dir, { maxReceives: 1 });
    expect(await third.drainDeadLetters(10)).toEqual([{ id: expect.any(String), body: 'poison', receiveCount: 1 }]);
    await third.close();

    const fourth = openQueue(dir, { maxReceives: 1 });
    expect(await fourth.drainDeadLetters(10)).toEqual([]);
  });

  it('a killed owner loses nothing it acknowledged: sends are kept, deletes stay deleted, in-flight work comes back', async () => {
    const dir = await scratchDir();
    const child = runModule(`
      import { FsTaskQueue } from ${JSON.stringify(queueModule)};
      const queue = new FsTaskQueue({ dir: ${JSON.stringify(dir)} });
      for (let i = 0; i < 500; i += 25) await queue.send(Array.from({ length: 25 }, (_, j) => 'task ' + (i + j)));
      const inFlight = [];
      while (inFlight.length < 100) inFlight.push(...await queue.receive(10, 600000));
      await Promise.all(inFlight.slice(0, 50).map((m) => queue.delete(m.receipt)));
      console.log('acknowledged');
      setInterval(() => {}, 1000);
    `);
    await child.line('acknowledged');
    await child.kill();

    const queue = openQueue(dir);
    const all = [];
    for (let batch = await queue.receive(100, 60_000); batch.length > 0; batch = await queue.receive(100, 60_000)) all.push(...batch);
    expect(all).toHaveLength(450);
    const bodies = all.map((m) => Number(m.body.slice('task '.length)));
    expect(bodies).toEqual(Array.from({ length: 450 }, (_, i) => i + 50));
    // The 50 deliveries cut off by the kill were no failures of their tasks: not counted.
    expect(all.map((m) => m.receiveCount)).toEqual(Array(450).fill(1));
  });

  it('a torn last journal line (a write cut short) is skipped, and the journal is sound afterwards', async () => {
    const dir = await scratchDir();
    const first = openQueue(dir);
    await first.send(['a', 'b']);
    await first.close();
    await appendFile(path.join(dir, 'journal.jsonl'), '{"op":"send","id":"torn","bo');

    const second = openQueue(dir);
    await second.send(['c']);
    await second.close();
    const third = openQueue(dir);
    expect((await third.receive(10, 1000)).map((m) => m.body)).toEqual(['a', 'b', 'c']);
  });

  it('a journal write that fails halfway (a full disk) loses only its own records, not the next ones', async () => {
    const dir = await scratchDir();
    const queue = openQueue(dir);
    await queue.send(['a']);
    // A full disk is out of reach here: the write is made to fail halfway.
    const append = journalWrites.append;
    vi.spyOn(journalWrites, 'append').mockImplementationOnce((fd, text) => {
      append(fd, text.slice(0, text.length / 2));
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    });
    await expect(queue.send(['b'])).rejects.toThrow(/ENOSPC/);
    await queue.send(['c']);
    await queue.close();

    const reopened = openQueue(dir);
    expect((await reopened.receive(10, 1000)).map((m) => m.body)).toEqual(['a', 'c']);
  });

  it('has one owner at a time: a second instance, here or in a running process, is refused', async () => {
    const dir = await scratchDir();
    const owner = openQueue(dir);
    await owner.send(['x']);
    await expect(openQueue(dir).send(['y'])).rejects.toThrow(/already open in this process/);
    await owner.close();
    await openQueue(dir).send(['y']);

    const foreign = await scratchDir();
    await writeFile(path.join(foreign, 'owner.lock'), `${process.ppid}\n`);
    await expect(openQueue(foreign).send(['z'])).rejects.toThrow(`owned by running process ${process.ppid}`);
  });

  it('compacts its journal: after heavy churn the file holds about what is left, not the history', async () => {
    const dir = await scratchDir();
    const queue = openQueue(dir);
    const body = 'x'.repeat(1000);
    for (let i = 0; i < 3000; i += 100) await queue.send(Array(100).fill(body));
    await queue.send(['survivor']);
    for (let batch = await queue.receive(100, 60_000); batch.length > 0; batch = await queue.receive(100, 60_000)) {
      await Promise.all(batch.filter((m) => m.body !== 'survivor').map((m) => queue.delete(m.receipt)));
    }
    expect((await stat(path.join(dir, 'journal.jsonl'))).size).toBeLessThan(1.5 * 1024 * 1024);
    await queue.close();
    const reopened = openQueue(dir);
    // Its one delivery was still open when the owner closed: not counted.
    expect((await reopened.receive(10, 1000)).map((m) => [m.body, m.receiveCount])).toEqual([['survivor', 1]]);
  });

  it('rejects bad arguments with errors that name them', async () => {
    expect(() => new FsTaskQueue({ dir: 'unused', maxReceives: 0 })).toThrow(/maxReceives must be a positive integer/);
    const queue = openQueue(await scratchDir());
    await expect(queue.receive(0, 1000)).rejects.toThrow(/receive max must be a positive integer/);
    await expect(queue.receive(1, -1)).rejects.toThrow(/visibilityTimeoutMs/);
    await expect(queue.receive(1, 1000, Number.NaN)).rejects.toThrow(/waitMs/);
    await expect(queue.delete('not-a-receipt')).rejects.toThrow(/not a receipt/);
    await expect(queue.send(['ok', 42 as unknown as string])).rejects.toThrow(/message body 1 must be a string/);
    await expect(queue.send(['\uD800 lone surrogate'])).rejects.toThrow(/SQS does not accept/);
  });
});

function fakeClock(): Clock & { advance(ms: number): void } {
  let now = 0;
  return {
    now: () => now,
    sleep: async (ms) => {
      now += ms;
    },
    advance: (ms) => {
      now += ms;
    },
  };
}

/** Runs an ES module source in a child Node process that can import the repo's .ts files. */
function runModule(source: string) {
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', source], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
  child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    /** Resolves when the child has printed `text` on a line of its own. */
    line: (text: string) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (stdout.split('\n').includes(text)) resolve();
        };
        child.stdout.on('data', check);
        check();
        void exited.then((code) => reject(new Error(`child exited (${code}) before printing ${text}: ${stderr}`)));
      }),
    /** Its whole standard output, once it has exited successfully. */
    output: async () => {
      const code = await exited;
      if (code !== 0) throw new Error(`child exited with ${code}: ${stderr}`);
      return stdout;
    },
    kill: async () => {
      child.kill('SIGKILL');
      await exited;
    },
  };
}
