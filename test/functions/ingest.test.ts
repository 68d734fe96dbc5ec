/**
 * The ingest function admits each upload S3 notifies it of to the interval its arrival time falls
 * in, once, whatever S3 repeats, pinned to the version S3 named; an upload it cannot pin or read
 * is admitted as refused, with why; it ignores what is not an upload under `incoming/`, and refuses
 * a malformed event whole, naming what is wrong. The bucket is a versioned one in memory
 * (test/support/versioned-store.ts), as no versioned S3 can be reached here.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { VersionedMemoryStore } from '../support/versioned-store.ts';
import { listAll } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';
import { sealInterval } from '../../core/streaming/intake.ts';
import { createIngestHandler } from '../../functions/ingest/handler.ts';
import { logged, s3Event, s3PutEvent, upload } from './support.ts';

const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const INTERVAL = 10_000;

let store: VersionedMemoryStore;
let info: ReturnType<typeof vi.spyOn>;
let warn: ReturnType<typeof vi.spyOn>;

beforeEach(async () => {
  store = new VersionedMemoryStore();
  info = vi.spyOn(console, 'info').mockImplementation(() => {});
  warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
});

afterEach(async () => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

/** The handler of a stream whose clock started at T0 (the first event creates the progress pointer then). */
const ingest = () => createIngestHandler({ store, now: () => T0, intervalMs: INTERVAL });
const intake = async () => (await listAll(store, 'intake/')).map((o) => o.key);
/** Writes five bytes to a key as a producer would, and says what S3 notifies of it. */
const put = (key: string, at = T0) => upload(store, key, 'abcd\n', at);

describe('ingest handler', () => {
  it('decodes a URL-encoded key with spaces and non-ASCII characters and admits it to the interval of its event time', async () => {
    // The fixture: "incoming/café au lait/day 1.txt" as S3 writes it, at T0 + 15 s.
    const event = s3PutEvent();
    event.Records[0]!.s3.object.versionId = store.write('incoming/café au lait/day 1.txt', Buffer.alloc(1024, 'x'));
    await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0, intervalMs: INTERVAL }));
    await createIngestHandler({ store, now: () => T0 + 16_000, intervalMs: INTERVAL })(event);
    const uploads = await sealInterval(store, 1);
    expect(uploads).toEqual([
      { key: 'incoming/café au lait/day 1.txt', name: 'café au lait/day 1.txt', size: 1024, version: event.Records[0]!.s3.object.versionId, sequencer: '0055AED6DCD90281E5' },
    ]);
    expect(await sealInterval(store, 0)).toEqual([]);
  });

  it("decodes '+' in a key as a space and %2B as a plus", async () => {
    await ingest()(s3Event([put('incoming/a+b c.txt', T0 + 1)]));
    expect((await sealInterval(store, 0)).map((u) => u.name)).toEqual(['a+b c.txt']);
  });

  it('admits an upload that arrived in an interval the driver has moved past to the first one still open', async () => {
    await store.put(keys.driverProgress, JSON.stringify({ next: 3, base: 0, epoch: T0, intervalMs: INTERVAL }));
    await ingest()(s3Event([put('incoming/late.txt', T0 + 1_000)]));
    expect((await sealInterval(store, 3)).map((u) => u.key)).toEqual(['incoming/late.txt']);
  });

  it('takes the epoch from the progress pointer once it exists, not from its own clock', async () => {
    await store.put(keys.driverProgress, JSON.stringify({ next: 0, base: 0, epoch: T0 - 5 * INTERVAL, intervalMs: INTERVAL }));
    await ingest()(s3Event([put('incoming/x.txt', T0 + 1_000)]));
    expect((await sealInterval(store, 5)).map((u) => u.key)).toEqual(['incoming/x.txt']);
  });

  it('creates the progress pointer, starting the stream now, when no driver has run yet', async () => {
    await ingest()(s3Event([put('incoming/x.txt')]));
    expect(JSON.parse(Buffer.from((await store.get(keys.driverProgress))!).toString())).toEqual({ next: 0, base: 0, epoch: T0, intervalMs: INTERVAL });
  });

  it('admits an upload once however often S3 notifies of it, and a re-upload of the key as a second upload, each pinned to its version', async () => {
    const handler = ingest();
    const first = s3Event([{ ...upload(store, 'incoming/a.txt', 'first', T0 + 1_000), sequencer: '0A' }]);
    await handler(first);
    await handler(first);
    await handler(structuredClone(first));
    await handler(s3Event([{ ...upload(store, 'incoming/a.txt', 'second!', T0 + 2_000), sequencer: '0B' }]));
    const uploads = await sealInterval(store, 0);
    expect(uploads.map((u) => [u.key, u.size, u.sequencer, u.refused])).toEqual(
      expect.arrayContaining([
        ['incoming/a.txt', 5, '0A', undefined],
        ['incoming/a.txt', 7, '0B', undefined],
      ]),
    );
    expect(uploads).toHaveLength(2);
    // Each reads its own bytes, though the key now holds only the second.
    for (const u of uploads) expect((await store.head(u.key, { version: u.version }))?.size).toBe(u.size);
  });

  it('an event time ahead of its own clock places the upload in the interval open now, not in the future', async () => {
    await ingest()(s3Event([put('incoming/forged.txt', T0 + 1_000 * 365 * 24 * 3600_000)]));
    expect((await sealInterval(store, 0)).map((u) => u.key)).toEqual(['incoming/forged.txt']);
  });

  describe('an upload that cannot be pinned or read is admitted as refused, with why, and the others go on', () => {
    it.each([
      ['a key with a backslash', () => put('incoming/a\\b.txt'), /its key cannot be read by dstream: .*contains NUL or backslash/],
      ['a key with an empty segment', () => put('incoming/a//b.txt'), /segment "" is not allowed/],
      ['a key over 1024 bytes', () => ({ key: `incoming/${'x'.repeat(1100)}`, size: 5, at: T0, versionId: 'v' }), /longer than 1024 bytes/],
      ['a bucket without versioning', () => ({ key: 'incoming/unversioned.txt', size: 5, at: T0 }), /names no version of it .* enable versioning/],
      ['a version deleted before admission', () => {
        const n = put('incoming/gone.txt');
        store.deleteVersion(n.key, n.versionId!);
        return n;
      }, /was deleted before it could be admitted/],
      ['a size that is not the version\'s', () => ({ ...put('incoming/liar.txt'), size: 99 }), /holds 5 bytes, not the 99 its event announced/],
    ])('%s', async (_name, notified, reason) => {
      const bad = notified();
      await ingest()(s3Event([put('incoming/good.txt'), bad]));
      const uploads = await sealInterval(store, 0);
      expect(uploads.find((u) => u.key === 'incoming/good.txt')?.refused).toBeUndefined();
      expect(uploads.find((u) => u.key === bad.key)?.refused).toMatch(reason);
      expect(logged(warn.mock.calls).map((l) => l.msg)).toEqual([expect.stringMatching(reason)]);
    });
  });

  it("ignores objects outside incoming/, such as the engine's own outputs, with a log line", async () => {
    await ingest()(
      s3Event([
        { key: 'output/counts/interval=000000/part-00000', size: 10, at: T0 },
        { key: 'lineage/interval=000000/record.json', size: 10, at: T0 },
      ]),
    );
    expect(await intake()).toEqual([]);
    expect(logged(info.mock.calls).map((l) => l.msg)).toEqual([
      'ignored output/counts/interval=000000/part-00000: not under incoming/',
      'ignored lineage/interval=000000/record.json: not under incoming/',
    ]);
  });

  it('ignores an empty folder marker, which is no upload', async () => {
    await ingest()(s3Event([{ key: 'incoming/day-1/', size: 0, at: T0 }]));
    expect(await intake()).toEqual([]);
    expect(logged(info.mock.calls).map((l) => l.msg)).toEqual(['ignored incoming/day-1/: a folder marker, not an upload']);
  });

  it('ignores records that are not ObjectCreated notifications, and the test event S3 sends on configuration', async () => {
    const removed = s3Event([{ key: 'incoming/a.txt', size: 5, at: T0 }]);
    removed.Records[0]!.eventName = 'ObjectRemoved:Delete';
    await ingest()(removed);
    await ingest()({ Service: 'Amazon S3', Event: 's3:TestEvent', Time: '2025-01-01T00:00:00.000Z', Bucket: 'b', RequestId: 'r', HostId: 'h' } as never);
    expect(await intake()).toEqual([]);
    expect(logged(info.mock.calls).map((l) => l.msg)).toEqual([
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
    await expect(handler(s3Event([put('incoming/a.txt')]))).rejects.toThrow('environment variable DSTREAM_BUCKET is not set');
  });
});
