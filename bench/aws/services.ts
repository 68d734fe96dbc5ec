/**
 * S3 and SQS as the model sees them: the in-memory bucket and queue behind adapters that count
 * every billed request by the function making it, and make the caller wait each request's
 * modelled latency on the virtual clock (latency.ts).
 */
import type { ObjectInfo, ObjectStore, ReadOptions } from '../../core/ports/object-store.ts';
import type { DeadLetter, QueueMessage, TaskQueue } from '../../core/ports/task-queue.ts';
import * as L from './latency.ts';
import type { Simulation } from './simulation.ts';

export type S3Kind = 'get' | 'put' | 'list' | 'delete';
export type SqsKind = 'send' | 'receive' | 'delete' | 'visibility';

/** Requests by function (the actor's role) and kind. */
export class Meter {
  readonly s3 = new Map<string, Record<S3Kind, number>>();
  readonly sqs = new Map<string, Record<SqsKind, number>>();

  s3Request(role: string, kind: S3Kind, n = 1): void {
    const c = this.s3.get(role) ?? { get: 0, put: 0, list: 0, delete: 0 };
    c[kind] += n;
    this.s3.set(role, c);
  }

  sqsRequest(role: string, kind: SqsKind, n = 1): void {
    const c = this.sqs.get(role) ?? { send: 0, receive: 0, delete: 0, visibility: 0 };
    c[kind] += n;
    this.sqs.set(role, c);
  }

  /** Sums over functions. */
  totals(): { s3: Record<S3Kind, number>; sqs: Record<SqsKind, number> } {
    const s3 = { get: 0, put: 0, list: 0, delete: 0 };
    const sqs = { send: 0, receive: 0, delete: 0, visibility: 0 };
    for (const c of this.s3.values()) for (const k of Object.keys(s3) as S3Kind[]) s3[k] += c[k];
    for (const c of this.sqs.values()) for (const k of Object.keys(sqs) as SqsKind[]) sqs[k] += c[k];
    return { s3, sqs };
  }
}

/** The bucket as the functions reach it: each request counted and waited for. */
export class ModelledStore implements ObjectStore {
  /** Called with each key PUT, once the PUT has returned: how the harness sees commits happen. */
  onPut?: (key: string) => void;

  constructor(
    private readonly inner: ObjectStore,
    private readonly sim: Simulation,
    private readonly meter: Meter,
  ) {}

  private async request(kind: S3Kind, ms: number): Promise<void> {
    this.meter.s3Request(this.sim.actor()?.role ?? 'other', kind);
    await this.sim.sleep(ms);
  }

  async get(key: string, options?: ReadOptions) {
    await this.request('get', L.S3_GET_FIRST_BYTE_MS);
    const bytes = await this.inner.get(key, options);
    if (bytes) await this.sim.sleep(bytes.length / L.S3_BYTES_PER_MS);
    return bytes;
  }

  async *getRange(key: string, start: number, end?: number, options?: ReadOptions): AsyncIterable<Uint8Array> {
    await this.request('get', L.S3_GET_FIRST_BYTE_MS);
    for await (const chunk of this.inner.getRange(key, start, end, options)) {
      await this.sim.sleep(chunk.length / L.S3_BYTES_PER_MS);
      yield chunk;
    }
  }

  async head(key: string, options?: ReadOptions) {
    await this.request('get', L.S3_HEAD_MS);
    return this.inner.head(key, options);
  }

  async put(key: string, body: Uint8Array | string) {
    await this.request('put', L.S3_PUT_MS + Buffer.byteLength(body) / L.S3_BYTES_PER_MS);
    await this.inner.put(key, body);
    this.onPut?.(key);
  }

  async putIfAbsent(key: string, body: Uint8Array | string) {
    await this.request('put', L.S3_PUT_MS + Buffer.byteLength(body) / L.S3_BYTES_PER_MS);
    const created = await this.inner.putIfAbsent(key, body);
    if (created) this.onPut?.(key);
    return created;
  }

  /** One LIST request per page of up to 1,000 keys, as ListObjectsV2 pages. */
  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    await this.request('list', L.S3_LIST_PAGE_MS);
    let n = 0;
    for await (const info of this.inner.list(prefix)) {
      if (n > 0 && n % L.S3_LIST_PAGE_KEYS === 0) await this.request('list', L.S3_LIST_PAGE_MS);
      n++;
      yield info;
    }
  }

  async delete(key: string) {
    await this.request('delete', L.S3_DELETE_MS);
    await this.inner.delete(key);
  }
}

interface Message {
  id: string;
  body: string;
  receiveCount: number;
  visibleAt: number;
  receipt: string | undefined;
  sentAt: number;
}

/**
 * A standard SQS queue with its dead-letter queue, in memory on the virtual clock: messages
 * hidden for their visibility timeout after a receive, redriven to the dead-letter list once
 * received more than `maxReceives` times. Requests are counted as SQS bills them (a batch of up
 * to 10 entries is one request) and waited for.
 */
export class ModelledQueue implements TaskQueue {
  /** Called with the virtual time at which a message becomes visible: when the event source mapping looks. */
  onVisible?: (at: number) => void;
  private readonly messages = new Map<string, Message>();
  private readonly dead: DeadLetter[] = [];
  /** Long polls waiting for a message. */
  private readonly pollers = new Set<() => void>();
  private ids = 0;

  constructor(
    private readonly sim: Simulation,
    private readonly meter: Meter,
    private readonly maxReceives: number,
    /** The queue's retention period: older messages are gone, received or not. */
    private readonly retentionMs = Infinity,
  ) {}

  private async request(kind: SqsKind, n = 1): Promise<void> {
    this.meter.sqsRequest(this.sim.actor()?.role ?? 'other', kind, n);
    await this.sim.sleep(L.SQS_REQUEST_MS);
  }

  /** `delayMs`: SQS's DelaySeconds, the message hidden that long after it is sent. */
  async send(bodies: string[], delayMs = 0): Promise<void> {
    if (bodies.length === 0) return;
    await this.request('send', Math.ceil(bodies.length / L.SQS_BATCH));
    const visibleAt = this.sim.now() + delayMs;
    for (const body of bodies) {
      const id = `m${++this.ids}`;
      this.messages.set(id, { id, body, receiveCount: 0, visibleAt, receipt: undefined, sentAt: this.sim.now() });
    }
    this.onVisible?.(visibleAt);
    this.sim.at(visibleAt, () => this.wakePollers());
  }

  /** Receives without a request of its own: the event source mapping's receives are counted by it. */
  take(max: number, visibilityTimeoutMs: number): QueueMessage[] {
    const now = this.sim.now();
    const out: QueueMessage[] = [];
    for (const m of this.messages.values()) {
      if (out.length >= max) break;
      if (m.sentAt + this.retentionMs <= now) {
        this.messages.delete(m.id);
        continue;
      }
      if (m.visibleAt > now) continue;
      if (m.receiveCount >= this.maxReceives) {
        this.messages.delete(m.id);
        this.dead.push({ id: m.id, body: m.body, receiveCount: m.receiveCount });
        continue;
      }
      m.receiveCount++;
      m.receipt = `${m.id}/${m.receiveCount}`;
      m.visibleAt = now + visibilityTimeoutMs;
      this.onVisible?.(m.visibleAt);
      out.push({ id: m.id, body: m.body, receipt: m.receipt, receiveCount: m.receiveCount });
    }
    return out;
  }

  /**
   * One ReceiveMessage, billed as one request whether or not a message comes. With `waitMs`, a long
   * poll: WaitTimeSeconds rounded up to whole seconds, 20 at most (as SqsTaskQueue asks), answered
   * as soon as a message is visible.
   */
  async receive(max: number, visibilityTimeoutMs: number, waitMs = 0): Promise<QueueMessage[]> {
    await this.request('receive');
    const found = this.take(max, visibilityTimeoutMs);
    if (found.length > 0 || waitMs <= 0) return found;
    const poll = this.sim.interruptibleSleep(Math.min(L.SQS_LONG_POLL_MS, Math.ceil(waitMs / 1000) * 1000));
    this.pollers.add(poll.wake);
    await poll.done;
    this.pollers.delete(poll.wake);
    return this.take(max, visibilityTimeoutMs);
  }

  private wakePollers(): void {
    for (const wake of this.pollers) wake();
  }

  async delete(receipt: string): Promise<void> {
    await this.request('delete');
    this.forget(receipt);
  }

  /** Deletes without a request of its own (the mapping counts its DeleteMessageBatch). */
  forget(receipt: string): void {
    const id = receipt.slice(0, receipt.indexOf('/'));
    if (this.messages.get(id)?.receipt === receipt) this.messages.delete(id);
  }

  async changeVisibility(receipt: string, visibilityTimeoutMs: number): Promise<void> {
    await this.request('visibility');
    const m = this.messages.get(receipt.slice(0, receipt.indexOf('/')));
    if (m?.receipt !== receipt) return;
    m.visibleAt = this.sim.now() + visibilityTimeoutMs;
    this.onVisible?.(m.visibleAt);
  }

  async deadLetter(message: QueueMessage, reason: string): Promise<void> {
    await this.request('send');
    this.dead.push({ id: message.id, body: message.body, receiveCount: message.receiveCount, reason });
  }

  /** One ReceiveMessage on the dead-letter queue (and a DeleteMessageBatch per 10 found), as SqsTaskQueue does. */
  async drainDeadLetters(max: number): Promise<DeadLetter[]> {
    await this.request('receive');
    const out = this.dead.splice(0, max);
    if (out.length > 0) await this.request('delete', Math.ceil(out.length / L.SQS_BATCH));
    return out;
  }

  /** Messages waiting or in flight. */
  get size(): number {
    return this.messages.size;
  }
}
