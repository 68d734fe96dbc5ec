/**
 * What the Lambda service does around the functions, played in-process: S3 notification and SQS
 * batch events built from the documented shapes (events/*.json), the SQS event source mapping,
 * and a clock that time-travels.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { S3Event, SQSBatchResponse, SQSEvent, SQSRecord } from 'aws-lambda';
import type { Clock } from '../../core/ports/clock.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import type { QueueMessage, TaskQueue } from '../../core/ports/task-queue.ts';
import type { VersionedMemoryStore } from '../support/versioned-store.ts';

const fixture = <T>(name: string): T => JSON.parse(readFileSync(new URL(`./events/${name}`, import.meta.url), 'utf8')) as T;

export const s3PutEvent = (): S3Event => fixture<S3Event>('s3-put.json');
export const sqsBatchEvent = (): SQSEvent => fixture<SQSEvent>('sqs-batch.json');

/** A key as S3 writes it into a notification: URL-encoded, '+' for a space. */
export function encodeS3Key(key: string): string {
  return encodeURIComponent(key).replace(/%2F/g, '/').replace(/%20/g, '+');
}

export interface Notified {
  key: string;
  size: number;
  /** When S3 finished the upload, ms since the epoch. */
  at: number;
  sequencer?: string;
  /** The version S3 gave the upload; absent as from a bucket without versioning. */
  versionId?: string;
}

/** Writes an upload to the bucket as a producer would, and says what S3 would notify of it. */
export function upload(bucket: VersionedMemoryStore, key: string, text: string, at: number): Notified {
  return { key, size: Buffer.byteLength(text), at, versionId: bucket.write(key, text) };
}

/** One ObjectCreated:Put notification per upload, in the fixture's shape. */
export function s3Event(uploads: Notified[]): S3Event {
  const template = s3PutEvent().Records[0]!;
  return {
    Records: uploads.map((u, i) => {
      const record = structuredClone(template);
      record.eventTime = new Date(u.at).toISOString();
      record.s3.object.key = encodeS3Key(u.key);
      record.s3.object.size = u.size;
      record.s3.object.sequencer = u.sequencer ?? `00${(u.at + i).toString(16).toUpperCase()}`;
      if (u.versionId === undefined) delete (record.s3.object as { versionId?: string }).versionId;
      else record.s3.object.versionId = u.versionId;
      return record;
    }),
  };
}

/** The event the event source mapping hands the task function for these deliveries. */
export function sqsEvent(messages: Pick<QueueMessage, 'id' | 'body' | 'receipt' | 'receiveCount'>[]): SQSEvent {
  const template = sqsBatchEvent().Records[0]!;
  return {
    Records: messages.map((m): SQSRecord => ({
      ...structuredClone(template),
      messageId: m.id,
      receiptHandle: m.receipt,
      body: m.body,
      md5OfBody: createHash('md5').update(m.body).digest('hex'),
      attributes: { ...template.attributes, ApproximateReceiveCount: String(m.receiveCount) },
    })),
  };
}

/**
 * The SQS event source mapping with ReportBatchItemFailures: receives batches of up to ten,
 * invokes the function and deletes what it did not report. A reported message stays hidden until
 * its visibility timeout runs out (which the task function shortens to its retry delay).
 */
export function eventSourceMapping(queue: TaskQueue, handler: (event: SQSEvent) => Promise<SQSBatchResponse>) {
  let running = true;
  let invocations = 0;
  const loop = (async () => {
    while (running) {
      const messages = await queue.receive(10, 60_000, 20);
      if (messages.length === 0) continue;
      invocations++;
      const { batchItemFailures } = await handler(sqsEvent(messages));
      const failed = new Set(batchItemFailures.map((f) => f.itemIdentifier));
      for (const m of messages) if (!failed.has(m.id)) await queue.delete(m.receipt);
    }
  })();
  return {
    get invocations() {
      return invocations;
    },
    async stop(): Promise<void> {
      running = false;
      await loop;
    },
  };
}

/** Time that passes only when someone sleeps, and then at once. */
export class FakeClock implements Clock {
  /** Called at every sleep, after time has moved: to look at the world while a function waits. */
  onSleep?: (ms: number) => void | Promise<void>;

  constructor(public time: number) {}

  now(): number {
    return this.time;
  }

  async sleep(ms: number): Promise<void> {
    this.time += Math.max(0, ms);
    await this.onSleep?.(ms);
    // Let others run, as a real wait would.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A store that counts the writes made through it. */
export function countingWrites(store: ObjectStore): { store: ObjectStore; writes: string[] } {
  const writes: string[] = [];
  return {
    writes,
    store: {
      get: (key) => store.get(key),
      getRange: (key, start, end) => store.getRange(key, start, end),
      head: (key) => store.head(key),
      list: (prefix) => store.list(prefix),
      put: (key, body) => (writes.push(key), store.put(key, body)),
      putIfAbsent: (key, body) => (writes.push(key), store.putIfAbsent(key, body)),
      delete: (key) => (writes.push(key), store.delete(key)),
    },
  };
}

/** The records (functions/log.ts) logged through a console method spy. */
export function logged(calls: unknown[][]): Record<string, unknown>[] {
  return calls.flatMap(([record]) => (typeof record === 'object' && record !== null ? [record as Record<string, unknown>] : []));
}
