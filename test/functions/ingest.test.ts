/**
 * The ingest function admits each upload S3 notifies it of to the interval its arrival time falls
 * in, once, whatever S3 repeats; it ignores what is not an upload under `incoming/`, and refuses a
 * malformed event whole, naming what is wrong.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { listAll } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';
import { sealInterval } from '../../core/streaming/intake.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { removeDir, tempDir } from '../support/stream-harness.ts';
import { loggedJson, s3Event, s3PutEvent } from './support.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const INTERVAL = 10_000;

let root: string;
let store: FsObjectStore;
let log: ReturnType<typeof vi.spyOn>;

beforeEach(async () => {
  root = await tempDir();
  store = new FsObjectStore(root);
  log = vi.spyOn(console, 'log').mockImplementation(() => {});
});

afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
  await removeDir(root);
});

/** The handler of a stream whose clock started at T0 (the first event creates the progress pointer then). */
const ingest = () => createIngestHandler({ store, now: () => T0, intervalMs: INTERVAL });
const intake = async () => (await listAll(store, 'intake/')).map((o) => o.key);

describe('ingest handler', () => {
  it('decodes a URL-encoded key with spaces and non-ASCII characters and admits it to the interval of its event time', async () => {
    // The fixture: "incoming/café au lait/day 1.txt" as S3 writes it, at T0 + 15 s.
    await ingest()(s3PutEvent());
    const uploads = await sealInterval(store, 1);
    expect(uploads).toEqual([{ key: 'incoming/café au lait/day 1.txt', name: 'café au lait/day 1.txt', size: 1024, version: '0055AED6DCD90281E5' }]);
    expect(await sealInterval(store, 0)).toEqual([]);
  });

  it("decodes '+' in a key as a space and %2B as a plus", async () => {
    await ingest()(s3Event([{ key: 'incoming/a+b c.txt', size: 3, at: T0 + 1 }]));
    expect((await sealInterval(store, 0)).map((u) => u.name)).toEqual(['a+b c.txt']);
  });

  it('admits an upload that arrived in an interval the driver has moved past to the first one still open', async () => {
    await store.put(keys.driverProgress, JSON.stringify({ next: 3, base: 0, epoch: T0, intervalMs: INTERVAL }));
    await ingest()(s3Event([{ key: 'incoming/late.txt', size: 5, at: T0 + 1_000 }]));
    expect((await sealInterval(store, 3)).map((u) => u.key)).toEqual(['incoming/late.txt']);
  });

  it('takes the epoch from the progress pointer once it exists, not from its own clock', async () => {
    await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0 - 5 * INTERVAL, intervalMs: INTERVAL }));
    await ingest()(s3Event([{ key: 'incoming/x.txt', size: 5, at: T0 + 1_000 }]));
    expect((await sealInterval(store, 5)).map((u) => u.key)).toEqual(['incoming/x.txt']);
  });

  it('creates the progress pointer, starting the stream now, when no driver has run yet', async () => {
    await ingest()(s3Event([{ key: 'incoming/x.txt', size: 5, at: T0 }]));
    expect(JSON.parse(Buffer.from((await store.get(keys.driverProgress))!).toString())).toEqual({ next: 0, base: 0, epoch: T0, intervalMs: INTERVAL });
  });

  it('admits an upload once however often S3 notifies of it, and a re-upload of the key as a second upload', async () => {
    const handler = ingest();
    const first = s3Event([{ key: 'incoming/a.txt', size: 5, at: T0 + 1_000, sequencer: '0A' }]);
    await handler(first);
    await handler(first);
    await handler(structuredClone(first));
    await handler(s3Event([{ key: 'incoming/a.txt', size: 7, at: T0 + 2_000, sequencer: '0B' }]));
    const uploads = await sealInterval(store, 0);
    expect(uploads.map((u) => [u.key, u.size, u.version])).toEqual([
      ['incoming/a.txt', 5, '0A'],
      ['incoming/a.txt', 7, '0B'],
    ]);
  });

  it("ignores objects outside incoming/, such as the engine's own outputs, with a log line", async () => {
    await ingest()(
      s3Event([
        { key: 'output/counts/interval=000000/part-00000', size: 10, at: T0 },
        { key: 'lineage/interval=000000/record.json', size: 10, at: T0 },
      ]),
    );
    expect(await intake()).toEqual([]);
    expect(loggedJson(log.mock.calls).map((l) => l.message)).toEqual([
      'ignored output/counts/interval=000000/part-00000: not under incoming/',
      'ignored lineage/interval=000000/record.json: not under incoming/',
    ]);
  });

  it('ignores folder markers and keys no task could read', async () => {
    await ingest()(
      s3Event([
        { key: 'incoming/day-1/', size: 0, at: T0 },
        { key: 'incoming/a//b.txt', size: 3, at: T0 },
      ]),
    );
    expect(await intake()).toEqual([]);
    expect(loggedJson(log.mock.calls).map((l) => l.message)).toEqual([
      'ignored incoming/day-1/: not an object dstream can read',
      'ignored incoming/a//b.txt: not an object dstream can read',
    ]);
  });

  it('ignores records that are not ObjectCreated notifications, and the test event S3 sends on configuration', async () => {
    const removed = s3Event([{ key: 'incoming/a.txt', size: 5, at: T0 }]);
    removed.Records[0]!.eventName = 'ObjectRemoved:Delete';
    await ingest()(removed);
    await ingest()({ Service: 'Amazon S3', Event: 's3:TestEvent', Time: '2025-01-01T00:00:00.000Z', Bucket: 'b', RequestId: 'r', HostId: 'h' } as never);
    expect(await intake()).toEqual([]);
    expect(loggedJson(log.mock.calls).map((l) => l.message)).toEqual([
      'ignored record 0: not an S3 ObjectCreated notification',
      'ignored the s3:TestEvent S3 sends when notifications are configured',
    ]);
  });

  describe('a malformed event is refused with an error naming what is wrong, and admits nothing', () => {
    const good = { key: 'incoming/good.txt', size: 5, at: T0 };
    const cases: [string, () => unknown, RegExp][] = [
      ['no Records', () => ({}), /not an S3 event: it has no Records array \(got \{\}\)/],
      ['Records not an array', () => ({ Records: 'x' }), /no Records array/],
      ['no key', () => withObject((o) => delete o.key), /S3 event record 1 \(ObjectCreated:Put\) has no s3\.object\.key/],
      ['no size', () => withObject((o) => delete o.size), /record 1 .* has no valid s3\.object\.size for incoming\/bad\.txt/],
      ['a bad percent-encoding', () => withObject((o) => (o.key = 'incoming/%E0%A4%A.txt')), /s3\.object\.key that is not URL-encoded: "incoming\/%E0%A4%A\.txt"/],
      ['no version at all', () => withObject((o) => (delete o.sequencer, delete o.eTag)), /none of s3\.object\.versionId, sequencer or eTag for incoming\/bad\.txt/],
      ['a bad event time', () => withRecord((r) => (r.eventTime = 'yesterday')), /record 1 .* has no valid eventTime for incoming\/bad\.txt \(got "yesterday"\)/],
    ];
    function withRecord(change: (record: Record<string, unknown>) => void) {
      const event = s3Event([good, { key: 'incoming/bad.txt', size: 5, at: T0 }]);
      change(event.Records[1] as unknown as Record<string, unknown>);
      return event;
    }
    function withObject(change: (object: Record<string, unknown>) => void) {
      return withRecord((r) => change((r as { s3: { object: Record<string, unknown> } }).s3.object));
    }
    it.each(cases)('%s', async (_name, event, error) => {
      await expect(ingest()(event() as never)).rejects.toThrow(error);
      expect(await intake()).toEqual([]);
    });
  });

  it('reads its configuration on the first event, so that an entry module can create it at load without any', async () => {
    vi.stubEnv('DSTREAM_BUCKET', '');
    const handler = createIngestHandler();
    await expect(handler(s3Event([{ key: 'incoming/a.txt', size: 1, at: T0 }]))).rejects.toThrow('environment variable DSTREAM_BUCKET is not set');
  });
});
