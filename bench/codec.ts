/**
 * Record codec throughput against the two obvious alternatives, on the engine's two typical
 * shapes. JSON lines: JSON.stringify per record joined by '\n' (encode ends in bytes, as a
 * partition file must), split + JSON.parse back. v8: v8.serialize / v8.deserialize of the whole
 * array. MB/s is over each format's own output size, so compare records/s across formats.
 *
 *   node --import tsx bench/codec.ts
 */
import { deserialize, serialize } from 'node:v8';
import { pathToFileURL } from 'node:url';
import { RecordWriter, decodeRecords } from '../core/codec/record-codec.ts';

export interface Row {
  name: string;
  [column: string]: string | number;
}

export interface CodecBenchOptions {
  /** Word-count pairs in data set (a). */
  pairs?: number;
  /** Nested objects in data set (b). */
  objects?: number;
  /** Timed repetitions per measurement (after one warm-up); the fastest counts. */
  runs?: number;
}

interface Format {
  name: string;
  encode(records: unknown[]): Uint8Array;
  decode(bytes: Uint8Array, onRecord: (r: unknown) => void): void;
}

const formats: Format[] = [
  {
    name: 'dstream codec',
    encode(records) {
      const writer = new RecordWriter();
      for (const r of records) writer.write(r);
      return writer.finish();
    },
    decode: decodeRecords,
  },
  {
    name: 'JSON lines',
    encode: (records) => Buffer.from(records.map((r) => JSON.stringify(r)).join('\n')),
    decode(bytes, onRecord) {
      for (const line of Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8').split('\n')) {
        onRecord(JSON.parse(line));
      }
    },
  },
  {
    name: 'v8.serialize',
    encode: (records) => serialize(records),
    decode(bytes, onRecord) {
      for (const r of deserialize(bytes) as unknown[]) onRecord(r);
    },
  },
];

export function wordCountPairs(n: number): unknown[] {
  return Array.from({ length: n }, (_, i) => [`word${i % 100_000}`, 1]);
}

export function nestedObjects(n: number): unknown[] {
  const names = ['Ada', 'Grace', 'Zoë', 'Linus', 'Margaret', 'Ken', 'Barbara', 'Dennis'];
  return Array.from({ length: n }, (_, i) => ({
    id: i,
    event: i % 3 === 0 ? 'click' : 'view',
    ts: 1_700_000_000_000 + i * 37,
    user: { name: names[i % names.length]!, age: 18 + (i % 60), premium: i % 5 === 0 },
    page: `/products/${i % 5000}`,
    score: (i % 1000) / 7,
    tags: i % 2 === 0 ? ['new', 'sale'] : ['returning'],
    geo: { lat: 52.52 + (i % 100) / 1000, lon: 13.405 - (i % 100) / 1000 },
    referrer: null,
  }));
}

function fastest(runs: number, f: () => void): number {
  f();
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = process.hrtime.bigint();
    f();
    best = Math.min(best, Number(process.hrtime.bigint() - start) / 1e9);
  }
  return best;
}

function measure(dataset: string, records: unknown[], runs: number): Row[] {
  const rows: Row[] = [];
  for (const format of formats) {
    let bytes = format.encode(records);
    const encodeSeconds = fastest(runs, () => {
      bytes = format.encode(records);
    });
    let decoded = 0;
    const decodeSeconds = fastest(runs, () => {
      decoded = 0;
      format.decode(bytes, () => decoded++);
    });
    if (decoded !== records.length) throw new Error(`${format.name} decoded ${decoded} of ${records.length} records`);
    const mb = bytes.length / 1e6;
    rows.push({
      name: `${dataset} / ${format.name}`,
      'bytes/record': round(bytes.length / records.length, 1),
      'encode rec/s': Math.round(records.length / encodeSeconds),
      'encode MB/s': round(mb / encodeSeconds, 1),
      'decode rec/s': Math.round(records.length / decodeSeconds),
      'decode MB/s': round(mb / decodeSeconds, 1),
    });
  }
  return rows;
}

function round(x: number, digits: number): number {
  const scale = 10 ** digits;
  return Math.round(x * scale) / scale;
}

export async function benchCodec(options: CodecBenchOptions = {}): Promise<Row[]> {
  const { pairs = 1_000_000, objects = 200_000, runs = 3 } = options;
  return [
    ...measure(`${pairs} word-count pairs`, wordCountPairs(pairs), runs),
    ...measure(`${objects} nested objects`, nestedObjects(objects), runs),
  ];
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const rows = await benchCodec();
  console.table(Object.fromEntries(rows.map(({ name, ...columns }) => [name, columns])));
}
