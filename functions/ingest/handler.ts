/**
 * The ingest function: S3 notifies it of every object created under `incoming/`, and it admits
 * each upload to the interval its arrival time falls in (or the first still open). Admission is
 * idempotent, so the duplicate notifications S3 may send change nothing.
 *
 * Each upload is pinned to the version the event names (the bucket is versioned): every task,
 * retry and recovery reads exactly those bytes, whatever is written to the key later, and two
 * PUTs to one key are two uploads. An upload that cannot be pinned or read (a key dstream's
 * stores refuse, no version, a version already gone) is admitted as refused: its interval
 * records why under errors/ and counts it, and the stream goes on.
 */
import type { S3Event } from 'aws-lambda';
import { validateKey, type ObjectStore } from '../../core/ports/object-store.ts';
import { INCOMING, keys } from '../../core/layout.ts';
import { intervalAt, readProgress } from '../../core/streaming/progress.ts';
import { admitUpload, type IntakeUpload } from '../../core/streaming/intake.ts';
import { functionConfig, s3Store, wakeQueue, type FunctionConfig } from '../config.ts';
import { log } from '../log.ts';
import type { WakeSender } from '../driver/wake.ts';

export interface IngestHandlerDeps {
  store?: ObjectStore;
  now?: () => number;
  intervalMs?: number;
  /** Wakes a dormant stream's driver. Default: the driver wake queue (DSTREAM_WAKE_QUEUE_URL). */
  wake?: WakeSender;
}

/** An upload S3 told us of, and when it arrived. */
interface Arrival {
  upload: IntakeUpload;
  eventTime: number;
}

/** Why S3's version of an upload cannot be read by the tasks, or undefined when it can. */
async function pinProblem(store: ObjectStore, upload: IntakeUpload): Promise<string | undefined> {
  if (upload.version === undefined) {
    return 'the event names no version of it (the bucket is not versioned, or versioning is suspended), so it cannot be pinned: enable versioning on the bucket';
  }
  const info = await store.head(upload.key, { version: upload.version });
  if (!info) return `its version ${upload.version} was deleted before it could be admitted`;
  if (info.size !== upload.size) return `its version ${upload.version} holds ${info.size} bytes, not the ${upload.size} its event announced`;
  return undefined;
}

export function createIngestHandler(deps: IngestHandlerDeps = {}): (event: S3Event) => Promise<void> {
  // Read on the first event, not when the entry module loads this.
  let config: FunctionConfig | undefined;
  const env = () => (config ??= functionConfig());
  let store: ObjectStore | undefined;
  const now = deps.now ?? Date.now;
  let wake: WakeSender | undefined;
  const wakeSender = () => (wake ??= deps.wake ?? ((queue) => (message, delayMs) => queue.send(message, delayMs))(wakeQueue(env())));

  return async (event) => {
    const arrivals = arrivalsOf(event);
    if (arrivals.length === 0) return;
    store ??= deps.store ?? s3Store(env());
    const intervalMs = deps.intervalMs ?? env().intervalMs;
    const progress = await readProgress(store, now(), intervalMs);
    const receivedAt = now();
    for (const arrival of arrivals) {
      const upload = arrival.upload.refused === undefined ? { ...arrival.upload, ...refusal(await pinProblem(store, arrival.upload)) } : arrival.upload;
      // Never an interval the driver has moved past (admitUpload moves on from one being sealed),
      // nor one past our clock: an event time from the future places nothing in the future.
      const arrived = Math.max(progress.next, intervalAt(progress, Math.min(arrival.eventTime, receivedAt)));
      const interval = await admitUpload(store, upload, arrived);
      const { key, version, size, refused } = upload;
      if (refused === undefined) log.info(`admitted ${key} to interval ${interval}`, { key, version, size, interval });
      else log.warn(`refused ${key} in interval ${interval}: ${refused}`, { key, version, size, interval, reason: refused });
    }
    // After admitting, as the driver marks dormancy before it looks for uploads: of the two, at
    // least one sees the other. The mark goes first: should the wake message then be lost, the
    // watchdog finds a stream that is not dormant and no live lease, and starts a driver.
    if (await store.get(keys.driverDormant)) {
      await store.delete(keys.driverDormant);
      await wakeSender()({ source: 'dstream.wake', reason: 'upload' }, 0);
      log.info('woke the dormant stream', { uploads: arrivals.length });
    }
  };
}

/**
 * The uploads of an S3 notification. Records of other kinds, and objects outside `incoming/`
 * (the engine's own writes, should a notification cover them), are skipped with a log line; a
 * malformed event is an error naming what is wrong, raised before anything is admitted.
 */
function arrivalsOf(event: unknown): Arrival[] {
  if (isTestEvent(event)) {
    log.info('ignored the s3:TestEvent S3 sends when notifications are configured');
    return [];
  }
  const records = (event as { Records?: unknown } | null | undefined)?.Records;
  if (!Array.isArray(records)) throw new Error(`not an S3 event: it has no Records array (got ${describe(event)})`);
  const arrivals: Arrival[] = [];
  records.forEach((record: unknown, index) => {
    const r = record as { eventSource?: unknown; eventName?: unknown } | null;
    if (r?.eventSource !== 'aws:s3' || typeof r.eventName !== 'string' || !r.eventName.startsWith('ObjectCreated:')) {
      log.info(`ignored record ${index}: not an S3 ObjectCreated notification`, { eventSource: r?.eventSource, eventName: r?.eventName });
      return;
    }
    const arrival = arrivalOf(record as S3Event['Records'][number], index);
    if (arrival) arrivals.push(arrival);
  });
  return arrivals;
}

function arrivalOf(record: S3Event['Records'][number], index: number): Arrival | undefined {
  const where = `S3 event record ${index} (${record.eventName})`;
  const object = record.s3?.object as { key?: unknown; size?: unknown; eTag?: unknown; versionId?: unknown; sequencer?: unknown } | undefined;
  if (!object || typeof object !== 'object') throw new Error(`${where} has no s3.object`);
  if (typeof object.key !== 'string' || object.key === '') throw new Error(`${where} has no s3.object.key`);
  let key: string;
  try {
    // Notification keys are URL-encoded, with '+' for a space.
    key = decodeURIComponent(object.key.replace(/\+/g, ' '));
  } catch {
    throw new Error(`${where} has an s3.object.key that is not URL-encoded: ${JSON.stringify(object.key)}`);
  }
  if (!key.startsWith(INCOMING)) {
    log.info(`ignored ${key}: not under ${INCOMING}`, { key });
    return undefined;
  }
  if (typeof object.size !== 'number' || !Number.isSafeInteger(object.size) || object.size < 0) {
    throw new Error(`${where} has no valid s3.object.size for ${key} (got ${describe(object.size)})`);
  }
  // The console's "Create folder" writes an empty `incoming/day/`: a folder, not an upload.
  if (key.endsWith('/') && object.size === 0) {
    log.info(`ignored ${key}: a folder marker, not an upload`, { key });
    return undefined;
  }
  const eventTime = typeof record.eventTime === 'string' ? Date.parse(record.eventTime) : NaN;
  if (Number.isNaN(eventTime)) throw new Error(`${where} has no valid eventTime for ${key} (got ${describe(record.eventTime)})`);
  // A suspended bucket names every version "null", which pins nothing.
  const version = typeof object.versionId === 'string' && object.versionId !== '' && object.versionId !== 'null' ? object.versionId : undefined;
  // With no version, the sequencer still tells two PUTs to one key apart, so each is recorded.
  const sequencer = typeof object.sequencer === 'string' && object.sequencer !== '' ? object.sequencer : undefined;
  const upload: IntakeUpload = { key, name: key.slice(INCOMING.length), size: object.size, ...(version ? { version } : {}), ...(sequencer ? { sequencer } : {}) };
  return { upload: { ...upload, ...refusal(keyProblem(key)) }, eventTime };
}

/** A key S3 accepts but dstream's stores refuse (`\`, `//`, `..`, over 1024 bytes): no task could read it. */
function keyProblem(key: string): string | undefined {
  try {
    validateKey(key);
    return undefined;
  } catch (error) {
    return `its key cannot be read by dstream: ${(error as Error).message}`;
  }
}

const refusal = (reason: string | undefined) => (reason === undefined ? {} : { refused: reason });

/** What S3 sends once when a notification is configured; it names no object. */
function isTestEvent(event: unknown): boolean {
  return (event as { Event?: unknown } | null | undefined)?.Event === 's3:TestEvent';
}

function describe(value: unknown): string {
  return JSON.stringify(value)?.slice(0, 200) ?? String(value);
}
