import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { Clock } from '../../core/ports/clock.ts';
import type { DeadLetter, QueueMessage, TaskQueue } from '../../core/ports/task-queue.ts';
import { IndexedHeap } from './indexed-heap.ts';
import { Journal } from './journal.ts';
import { OwnerLock } from './owner-lock.ts';

/** SQS's limit, so that what runs locally also runs on AWS. */
export const MAX_BODY_BYTES = 256 * 1024;
/** Characters SQS accepts in a body (XML 1.0's); anything else is rejected here as it would be there. */
const SQS_BODY = /^[\t\n\r\u0020-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]*$/u;
/** Roughly what a message costs in the journal beyond its body: keys, id, punctuation. */
const RECORD_OVERHEAD_BYTES = 80;

export interface FsTaskQueueOptions {
  dir: string;
  /** Deliveries before a message is dead-lettered instead; default 3. */
  maxReceives?: number;
  /**
   * What time it is, and how to wait. Without one, system time and real timers, which a long poll
   * that ends early cancels; an injected clock's sleep cannot be cancelled, so it runs out unused.
   */
  clock?: Clock;
}

type JournalRecord =
  | { op: 'send'; id: string; body: string; receives?: number }
  | { op: 'receive'; id: string; receives: number }
  /** The consumer gave delivery `receives` back (it failed): that delivery counts. */
  | { op: 'returned'; id: string; receives: number }
  | { op: 'dead'; id: string; reason?: string }
  | { op: 'delete'; id: string };

interface Message {
  id: string;
  body: string;
  bytes: number;
  /** Order of first send: deliveries go oldest first. */
  seq: number;
  receives: number;
  /** Why it was dead-lettered, when deadLetter said. */
  reason?: string;
  /**
   * The latest delivery has had no verdict yet: not given back by its consumer, nor seen to time
   * out by this owner. If the owner stops now, that delivery does not count.
   */
  open: boolean;
  state: 'ready' | 'inflight';
  /** When an in-flight delivery's visibility timeout runs out. */
  visibleAt: number;
  heapIndex: number;
}

/**
 * A durable task queue in a directory, with SQS's semantics: at-least-once delivery, visibility
 * timeouts, receive counts, a dead-letter list, and receipts that go stale on redelivery.
 *
 * State lives in memory, indexed by two heaps (visible messages by age, in-flight ones by when they
 * reappear); every change that must survive a restart is appended to a journal (see Journal) before
 * the call returns. On open the journal is replayed and compacted; deliveries in flight when the
 * previous owner stopped become visible at once. Visibility itself is not journalled: it only
 * matters while the owner runs.
 *
 * Receive counts count failures of the task, not restarts of the runtime: a delivery counts once
 * its consumer gives it back with changeVisibility (the runners' way of saying it failed, or that
 * its worker died while the owner lived), or once this owner sees its visibility timeout run out.
 * A delivery still open when the owner stops (killed, or closed while tasks ran) is not counted,
 * so restarting a runtime over and over never dead-letters a task that never failed. A delivery
 * given back when it was the last one allowed is dead-lettered at once, so that a later owner
 * finds it among the dead letters rather than burying it while running something else.
 *
 * One process owns a queue directory at a time (enforced with a lock file). In the embedded runtime
 * that is the parent: its worker pool receives here and hands messages to child processes, as
 * Lambda's event source mapping does with SQS.
 */
export class FsTaskQueue implements TaskQueue {
  readonly dir: string;
  private readonly maxReceives: number;
  private readonly clock: Clock | undefined;
  /** Tells this instance's receipts from those of an earlier owner of the directory. */
  private readonly instance = randomBytes(6).toString('hex');
  private readonly live = new Map<string, Message>();
  private readonly dead = new Map<string, Message>();
  private readonly visible = new IndexedHeap<Message>((a, b) => a.seq < b.seq);
  private readonly inflight = new IndexedHeap<Message>((a, b) => a.visibleAt < b.visibleAt);
  private readonly waiters = new Set<() => void>();
  private nextSeq = 0;
  private retainedBytes = 0;
  private opening?: Promise<Journal<JournalRecord>>;
  private lock?: OwnerLock;
  private closed = false;

  constructor(options: FsTaskQueueOptions) {
    const maxReceives = options.maxReceives ?? 3;
    if (!Number.isSafeInteger(maxReceives) || maxReceives < 1) {
      throw new RangeError(`FsTaskQueue maxReceives must be a positive integer, got ${maxReceives}`);
    }
    this.dir = path.resolve(options.dir);
    this.maxReceives = maxReceives;
    this.clock = options.clock;
  }

  async send(bodies: string[]): Promise<void> {
    if (!Array.isArray(bodies)) throw new TypeError(`send takes an array of bodies, got ${typeof bodies}`);
    const messages = bodies.map((body, index): Message => {
      const bytes = checkBody(body, index);
      return { id: randomUUID(), body, bytes, seq: 0, receives: 0, open: false, state: 'ready', visibleAt: 0, heapIndex: -1 };
    });
    if (messages.length === 0) return;
    const journal = await this.open();
    // Visible only once durable: no one can work on a message that a crash would forget.
    await journal.append(
      messages.map(({ id, body }) => ({ op: 'send', id, body })),
      () => {
        for (const message of messages) this.admit(message);
        this.wake();
      },
    );
  }

  async receive(max: number, visibilityTimeoutMs: number, waitMs = 0): Promise<QueueMessage[]> {
    checkCount('receive max', max);
    checkDuration('receive visibilityTimeoutMs', visibilityTimeoutMs);
    checkDuration('receive waitMs', waitMs);
    const journal = await this.open();
    const deadline = this.now() + waitMs;
    for (;;) {
      if (this.closed) return [];
      const now = this.now();
      const records: JournalRecord[] = [];
      const delivered = this.take(max, visibilityTimeoutMs, now, records);
      if (records.length > 0) await journal.append(records);
      if (delivered.length > 0 || now >= deadline) return delivered;
      await this.waitFor(Math.min(deadline, this.inflight.peek()?.visibleAt ?? deadline) - now);
    }
  }

  async delete(receipt: string): Promise<void> {
    const parsed = parseReceipt(receipt);
    const journal = await this.open();
    const message = this.current(parsed);
    if (message === undefined) return;
    (message.state === 'ready' ? this.visible : this.inflight).remove(message);
    this.live.delete(message.id);
    this.retainedBytes -= message.bytes + RECORD_OVERHEAD_BYTES;
    await journal.append([{ op: 'delete', id: message.id }]);
  }

  async changeVisibility(receipt: string, visibilityTimeoutMs: number): Promise<void> {
    checkDuration('changeVisibility visibilityTimeoutMs', visibilityTimeoutMs);
    const parsed = parseReceipt(receipt);
    const journal = await this.open();
    const message = this.current(parsed);
    const now = this.now();
    // A delivery whose timeout has run out is over, even if no receive has noticed yet.
    if (message === undefined || message.state !== 'inflight' || message.visibleAt <= now) return;
    // Memory first, then the journal: while the append is awaited the message may be received,
    // deleted or buried by another call, so nothing here may touch it after the await.
    const returned = message.open;
    message.open = false;
    const records: JournalRecord[] = returned ? [{ op: 'returned', id: message.id, receives: message.receives }] : [];
    if (returned && message.receives >= this.maxReceives) {
      this.bury(message);
      records.push({ op: 'dead', id: message.id });
    } else {
      const earlier = now + visibilityTimeoutMs < message.visibleAt;
      message.visibleAt = now + visibilityTimeoutMs;
      this.inflight.update(message);
      if (earlier) this.wake();
    }
    if (records.length > 0) await journal.append(records);
  }

  async deadLetter(message: QueueMessage, reason: string): Promise<void> {
    const parsed = parseReceipt(message.receipt);
    const journal = await this.open();
    const current = this.current(parsed);
    // A stale receipt: the message was delivered again or is gone, and that delivery decides.
    if (current === undefined) return;
    current.reason = reason;
    this.bury(current);
    await journal.append([{ op: 'dead', id: current.id, reason }]);
  }

  async drainDeadLetters(max: number): Promise<DeadLetter[]> {
    checkCount('drainDeadLetters max', max);
    const journal = await this.open();
    const drained: Message[] = [];
    for (const message of this.dead.values()) {
      if (drained.length === max) break;
      drained.push(message);
    }
    for (const message of drained) {
      this.dead.delete(message.id);
      this.retainedBytes -= message.bytes + RECORD_OVERHEAD_BYTES;
    }
    if (drained.length > 0) await journal.append(drained.map(({ id }) => ({ op: 'delete', id })));
    return drained.map(({ id, body, receives, reason }) => ({ id, body, receiveCount: receives, ...(reason === undefined ? {} : { reason }) }));
  }

  /** Ends pending long polls (they return nothing), finishes writing, and gives up the directory. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.wake();
    const journal = await this.opening?.catch(() => undefined);
    await journal?.close();
    await this.lock?.release();
  }

  /** Takes ownership and replays the journal now, so a queue owned elsewhere fails at startup. */
  async ready(): Promise<void> {
    await this.open();
  }

  private open(): Promise<Journal<JournalRecord>> {
    if (this.closed) return Promise.reject(new Error(`task queue ${this.dir} is closed`));
    this.opening ??= this.load();
    return this.opening;
  }

  private async load(): Promise<Journal<JournalRecord>> {
    await mkdir(this.dir, { recursive: true });
    const lock = await OwnerLock.acquire(this.dir, 'task queue directory');
    try {
      const { journal, records } = await Journal.open<JournalRecord>(path.join(this.dir, 'journal.jsonl'), {
        snapshot: () => this.snapshot(),
        retainedBytes: () => this.retainedBytes,
      });
      for (const record of records) this.replay(record);
      // Deliveries the previous owner never heard back from were cut off by its stop, not failed.
      for (const message of this.live.values()) this.uncountOpen(message);
      // Start from a clean journal: drops the history and any torn tail a crash left.
      await journal.compact();
      this.lock = lock;
      return journal;
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  private replay(record: JournalRecord): void {
    switch (record.op) {
      case 'send': {
        if (this.live.has(record.id) || this.dead.has(record.id) || typeof record.body !== 'string') return;
        const message: Message = {
          id: record.id,
          body: record.body,
          bytes: Buffer.byteLength(record.body),
          seq: 0,
          receives: record.receives ?? 0,
          open: false,
          state: 'ready',
          visibleAt: 0,
          heapIndex: -1,
        };
        this.admit(message);
        return;
      }
      case 'receive': {
        const message = this.live.get(record.id);
        if (message && record.receives > message.receives) {
          message.receives = record.receives;
          message.open = true;
        }
        return;
      }
      case 'returned': {
        const message = this.live.get(record.id);
        if (message && record.receives >= message.receives) {
          // A compaction since may have written this delivery as not yet counted: it counts.
          message.receives = record.receives;
          message.open = false;
        }
        return;
      }
      case 'dead': {
        const message = this.live.get(record.id);
        if (message) {
          if (record.reason !== undefined) message.reason = record.reason;
          this.bury(message);
        }
        return;
      }
      case 'delete': {
        const message = this.live.get(record.id) ?? this.dead.get(record.id);
        if (message === undefined) return;
        if (this.live.delete(record.id)) this.visible.remove(message);
        this.dead.delete(record.id);
        this.retainedBytes -= message.bytes + RECORD_OVERHEAD_BYTES;
        return;
      }
    }
  }

  private uncountOpen(message: Message): void {
    if (!message.open) return;
    message.open = false;
    message.receives--;
  }

  private snapshot(): JournalRecord[] {
    const records: JournalRecord[] = [];
    const byAge = [...this.live.values()].sort((a, b) => a.seq - b.seq);
    // An open delivery is written as not yet counted: a restart right after compaction cuts it off.
    for (const { id, body, receives, open } of byAge) records.push({ op: 'send', id, body, receives: open ? receives - 1 : receives });
    for (const { id, body, receives, reason } of this.dead.values()) {
      records.push({ op: 'send', id, body, receives }, { op: 'dead', id, ...(reason === undefined ? {} : { reason }) });
    }
    return records;
  }

  /** A new message joins the visible ones, behind every earlier one. */
  private admit(message: Message): void {
    message.seq = this.nextSeq++;
    this.live.set(message.id, message);
    this.visible.push(message);
    this.retainedBytes += message.bytes + RECORD_OVERHEAD_BYTES;
  }

  /** Moves a live message to the dead-letter list. */
  private bury(message: Message): void {
    (message.state === 'ready' ? this.visible : this.inflight).remove(message);
    message.open = false;
    this.live.delete(message.id);
    this.dead.set(message.id, message);
  }

  /** Delivers up to `max` visible messages, oldest first, dead-lettering those out of receives. */
  private take(max: number, visibilityTimeoutMs: number, now: number, records: JournalRecord[]): QueueMessage[] {
    for (let message = this.inflight.peek(); message && message.visibleAt <= now; message = this.inflight.peek()) {
      this.inflight.remove(message);
      if (message.open) {
        // Timed out under this owner: the delivery counts.
        message.open = false;
        records.push({ op: 'returned', id: message.id, receives: message.receives });
      }
      message.state = 'ready';
      this.visible.push(message);
    }
    const delivered: QueueMessage[] = [];
    while (delivered.length < max) {
      const message = this.visible.pop();
      if (message === undefined) break;
      if (message.receives >= this.maxReceives) {
        this.bury(message);
        records.push({ op: 'dead', id: message.id });
        continue;
      }
      message.receives++;
      message.open = true;
      message.state = 'inflight';
      message.visibleAt = now + visibilityTimeoutMs;
      this.inflight.push(message);
      records.push({ op: 'receive', id: message.id, receives: message.receives });
      delivered.push({ id: message.id, body: message.body, receipt: `${this.instance}.${message.receives}.${message.id}`, receiveCount: message.receives });
    }
    return delivered;
  }

  /** The message a receipt was issued for, if that delivery is still the latest one. */
  private current(receipt: { instance: string; receives: number; id: string }): Message | undefined {
    if (receipt.instance !== this.instance) return undefined;
    const message = this.live.get(receipt.id);
    return message?.receives === receipt.receives ? message : undefined;
  }

  private now(): number {
    return this.clock ? this.clock.now() : Date.now();
  }

  /** Waits until `ms` pass or something may have become receivable, whichever is first. */
  private waitFor(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        this.waiters.delete(done);
        if (timer !== undefined) clearTimeout(timer);
        resolve();
      };
      this.waiters.add(done);
      if (this.clock) void this.clock.sleep(ms).then(done);
      else timer = setTimeout(done, ms);
    });
  }

  private wake(): void {
    for (const done of [...this.waiters]) done();
  }
}

function parseReceipt(receipt: string): { instance: string; receives: number; id: string } {
  const parts = typeof receipt === 'string' ? receipt.split('.') : [];
  const receives = Number(parts[1]);
  if (parts.length !== 3 || !Number.isSafeInteger(receives) || receives < 1 || parts[2] === '') {
    throw new TypeError(`not a receipt of this task queue: ${JSON.stringify(receipt)}`);
  }
  return { instance: parts[0]!, receives, id: parts[2]! };
}

function checkBody(body: unknown, index: number): number {
  if (typeof body !== 'string') throw new TypeError(`message body ${index} must be a string, got ${typeof body}`);
  if (body.length === 0) throw new RangeError(`message body ${index} is empty; SQS does not accept empty bodies`);
  const bytes = Buffer.byteLength(body);
  if (bytes > MAX_BODY_BYTES) throw new RangeError(`message body ${index} is ${bytes} bytes; the limit is ${MAX_BODY_BYTES}`);
  if (!SQS_BODY.test(body)) throw new RangeError(`message body ${index} has a character SQS does not accept (a control character, a lone surrogate, U+FFFE or U+FFFF)`);
  return bytes;
}

function checkCount(what: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`${what} must be a positive integer, got ${value}`);
}

function checkDuration(what: string, value: number): void {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${what} must be a non-negative number of milliseconds, got ${value}`);
}
