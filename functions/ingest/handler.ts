/**
 * The ingest function: S3 notifies it of every object created under `incoming/`, and it admits
 * each upload to the interval its arrival time falls in (or the first still open). Admission is
 * idempotent, so the duplicate notifications S3 may send change nothing.
 */
import type { S3Event } from 'aws-lambda';
import { validateKey, type ObjectStore } from '../../core/ports/object-store.ts';
import { INCOMING } from '../../core/layout.ts';
import { intervalAt, readProgress } from '../../core/streaming/progress.ts';
import { admitUpload, type IntakeUpload } from '../../core/streaming/intake.ts';
import { functionConfig, s3Store, type FunctionConfig } from '../config.ts';

export interface IngestHandlerDeps {
  store?: ObjectStore;
  now?: () => number;
  intervalMs?: number;
}

/** An upload S3 told us of, and when it arrived. */
interface Arrival {
  upload: IntakeUpload;
  eventTime: number;
}

export function createIngestHandler(deps: IngestHandlerDeps = {}): (event: S3Event) => Promise<void> {
  // Read on the first event, not when the entry module loads this.
  let config: FunctionConfig | undefined;
  const env = () => (config ??= functionConfig());
  let store: ObjectStore | undefined;
  const now = deps.now ?? Date.now;

  return async (event) => {
    const arrivals = arrivalsOf(event);
    if (arrivals.length === 0) return;
    store ??= deps.store ?? s3Store(env());
    const intervalMs = deps.intervalMs ?? env().intervalMs;
    const progress = await readProgress(store, now(), intervalMs);
    for (const { upload, eventTime } of arrivals) {
      // Never an interval the driver has moved past; admitUpload moves on from one being sealed.
      const arrived = Math.max(progress.next, intervalAt(progress, eventTime));
      const interval = await admitUpload(store, upload, arrived);
      console.log(JSON.stringify({ message: `admitted ${upload.key} to interval ${interval}`, key: upload.key, version: upload.version, size: upload.size, interval }));
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
    console.log(JSON.stringify({ message: 'ignored the s3:TestEvent S3 sends when notifications are configured' }));
    return [];
  }
  const records = (event as { Records?: unknown } | null | undefined)?.Records;
  if (!Array.isArray(records)) throw new Error(`not an S3 event: it has no Records array (got ${describe(event)})`);
  const arrivals: Arrival[] = [];
  records.forEach((record: unknown, index) => {
    const r = record as { eventSource?: unknown; eventName?: unknown } | null;
    if (r?.eventSource !== 'aws:s3' || typeof r.eventName !== 'string' || !r.eventName.startsWith('ObjectCreated:')) {
      console.log(JSON.stringify({ message: `ignored record ${index}: not an S3 ObjectCreated notification`, eventSource: r?.eventSource, eventName: r?.eventName }));
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
    console.log(JSON.stringify({ message: `ignored ${key}: not under ${INCOMING}`, key }));
    return undefined;
  }
  try {
    validateKey(key);
  } catch (error) {
    // A folder marker (`incoming/day/`) or a key the engine's stores refuse, which no task could read.
    console.log(JSON.stringify({ message: `ignored ${key}: not an object dstream can read`, key, reason: String(error) }));
    return undefined;
  }
  if (typeof object.size !== 'number' || !Number.isSafeInteger(object.size) || object.size < 0) {
    throw new Error(`${where} has no valid s3.object.size for ${key} (got ${describe(object.size)})`);
  }
  // A bucket whose versioning is suspended names every version "null": the sequencer tells them apart.
  const version = [object.versionId, object.sequencer, object.eTag].find((v): v is string => typeof v === 'string' && v !== '' && v !== 'null');
  if (version === undefined) throw new Error(`${where} has none of s3.object.versionId, sequencer or eTag for ${key}, so its version is unknown`);
  const eventTime = typeof record.eventTime === 'string' ? Date.parse(record.eventTime) : NaN;
  if (Number.isNaN(eventTime)) throw new Error(`${where} has no valid eventTime for ${key} (got ${describe(record.eventTime)})`);
  return { upload: { key, name: key.slice(INCOMING.length), size: object.size, version }, eventTime };
}

/** What S3 sends once when a notification is configured; it names no object. */
function isTestEvent(event: unknown): boolean {
  return (event as { Event?: unknown } | null | undefined)?.Event === 's3:TestEvent';
}

function describe(value: unknown): string {
  return JSON.stringify(value)?.slice(0, 200) ?? String(value);
}
