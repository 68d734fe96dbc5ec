/**
 * End to end on LocalStack: uploads sample files into the deployed pipeline's `incoming/` with the
 * real S3 client, waits until every interval up to the last one holding an upload is committed,
 * and checks that each committed output of each interval holds the same records as the embedded
 * runtime produces when it replays the same uploads in the same intervals.
 *
 *   npm run local:up && npm run local:deploy && npm run local:e2e
 *   npm run local:e2e -- --pipeline examples/grep.ts --samples some/dir --timeout 900
 *
 * Without --samples it uploads a few generated files of words.
 *
 * The pipeline must be the deployed one (the lineage records name it).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import { INCOMING, keys } from '../../core/layout.ts';
import { listAll, type ObjectStore } from '../../core/ports/object-store.ts';
import { readLineageRecord, readLineageUploads, type LineageRecord } from '../../core/streaming/lineage.ts';
import type { IntakeUpload } from '../../core/streaming/intake.ts';
import { mapConcurrently, STORE_CONCURRENCY } from '../../core/util/map-concurrently.ts';
import { makeS3Client } from '../../functions/aws/clients.ts';
import { S3ObjectStore } from '../../functions/aws/s3-object-store.ts';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.ts';
import { compilePipeline, loadCompiledPipeline } from '../runtime/pipeline-bundle.ts';
import { FsObjectStore } from '../store/fs-object-store.ts';
import { sampleLines } from '../sample/generate.ts';

const POLL_MS = 2_000;
/** Generated input when no --samples directory is given: a few files of skewed words. */
const GENERATED = { files: 6, linesPerFile: 200 };

/**
 * ── REFERENCE RUNTIME HOOK ──────────────────────────────────────────────────────────────────
 * Runs the embedded runtime over `stagedDir` (folders 0, 1, 2, ... holding each interval's uploads
 * by their name below `incoming/`; an interval without uploads is an empty folder) with `outRoot`
 * as its store root, so that its outputs land in `outRoot/output/<name>/interval=NNNNNN/`.
 */
async function runEmbeddedReference(stagedDir: string, outRoot: string, pipelineModule: string): Promise<void> {
  const runtime = await EmbeddedRuntime.open({ pipelinePath: pipelineModule, root: outRoot, workers: 2 });
  try {
    await runtime.replay(stagedDir);
  } finally {
    await runtime.close();
  }
}

const { values: args } = parseArgs({
  options: {
    pipeline: { type: 'string', default: 'examples/wordcount.ts' },
    samples: { type: 'string' },
    outputs: { type: 'string', default: 'cdk.out/localstack-outputs.json' },
    bucket: { type: 'string' },
    timeout: { type: 'string', default: '600' },
  },
});

const endpoint = process.env.LOCALSTACK_ENDPOINT ?? 'http://localhost:4566';
const client = makeS3Client(
  { AWS_ENDPOINT_URL: endpoint, AWS_REGION: process.env.AWS_REGION ?? 'us-east-1' },
  // LocalStack takes any credentials; explicit ones keep ~/.aws out of it.
  { credentials: { accessKeyId: 'test', secretAccessKey: 'test' } },
);

async function main(): Promise<void> {
  const timeoutMs = Number(args.timeout) * 1000;
  if (!(timeoutMs > 0)) throw new Error(`--timeout must be a number of seconds > 0, got ${JSON.stringify(args.timeout)}`);
  const pipelineModule = resolve(args.pipeline);
  const bucket = args.bucket ?? (await bucketFromOutputs(resolve(args.outputs)));
  const store = new S3ObjectStore({ client, bucket });

  const work = await mkdtemp(join(tmpdir(), 'dstream-e2e-'));
  // Loaded as the embedded runtime loads it, for the reference run below.
  const pipeline = await loadCompiledPipeline(pipelineModule, await compilePipeline(pipelineModule, work));
  if (pipeline.kind !== 'stream') throw new Error(`${pipelineModule} is a batch job, not a streaming pipeline`);
  const samples = args.samples ? resolve(args.samples) : await generateSamples(join(work, 'samples'));
  const uploads = await uploadSamples(bucket, samples);
  console.log(`uploaded ${uploads.size} files from ${samples} to s3://${bucket}/${INCOMING} on ${endpoint}`);

  const records = await awaitCommitted(store, uploads, Date.now() + timeoutMs);
  // The name, not the fingerprint: function hashes come from source text, which bundling rewrites.
  const foreign = records.find((r) => r.pipeline !== pipeline.options.name);
  if (foreign) {
    throw new Error(
      `interval ${foreign.interval} ran pipeline ${foreign.pipeline}, not ${pipeline.options.name} from ${pipelineModule}: ` +
        `deploy it (npm run local:deploy -- -c pipeline=${args.pipeline}) or pass the deployed one with --pipeline`,
    );
  }

  const stagedDir = join(work, 'staged');
  const outRoot = join(work, 'reference');
  await stage(store, records, stagedDir);
  console.log(`replaying intervals 0..${records.length - 1} in the embedded runtime (${work})`);
  await runEmbeddedReference(stagedDir, outRoot, pipelineModule);

  const differences: string[] = [];
  let compared = 0;
  let lines = 0;
  for (const record of records) {
    for (const output of record.outputs.filter((o) => o.format === 'text' || o.format === 'json')) {
      const [cloud, local] = await Promise.all([committedOutput(store, output.name, record.scope), committedOutput(new FsObjectStore(outRoot), output.name, record.scope)]);
      compared++;
      lines += cloud?.length ?? 0;
      const difference = describeDifference(cloud, local);
      if (difference) differences.push(`output ${output.name}, ${record.scope}: ${difference}`);
    }
  }
  if (differences.length > 0) {
    throw new Error(`LocalStack and the embedded runtime disagree on ${differences.length} of ${compared} outputs:\n  ${differences.join('\n  ')}`);
  }
  // Agreeing on nothing proves nothing.
  if (lines === 0) throw new Error(`the ${compared} outputs compared hold no records on either side: nothing was checked`);
  console.log(`OK: ${compared} outputs of ${records.length} intervals hold the same records on LocalStack as in the embedded runtime`);
}

/** The bucket named by `cdk deploy --outputs-file` (the deploy script writes it). */
async function bucketFromOutputs(file: string): Promise<string> {
  if (!existsSync(file)) throw new Error(`${file} does not exist: run npm run local:deploy first, or pass --bucket`);
  const stacks = JSON.parse(await readFile(file, 'utf8')) as Record<string, Record<string, string>>;
  const buckets = Object.values(stacks).flatMap((outputs) => Object.entries(outputs).filter(([id]) => /BucketName[0-9A-F]{8}$/.test(id)).map(([, v]) => v));
  if (buckets.length !== 1) throw new Error(`${file} names ${buckets.length} pipeline buckets; pass --bucket`);
  return buckets[0]!;
}

async function generateSamples(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  for (let f = 0; f < GENERATED.files; f++) await writeFile(join(dir, `sample-${f}.txt`), sampleLines(GENERATED.linesPerFile, f + 1));
  return dir;
}

/**
 * Uploads every file under `dir` to `incoming/<its path>`, a run id before its extension so that
 * a rerun adds new uploads. Returns the upload keys.
 */
async function uploadSamples(bucket: string, dir: string): Promise<Set<string>> {
  const files = await filesUnder(dir);
  if (files.length === 0) throw new Error(`no sample files under ${dir}`);
  const run = Date.now().toString(36);
  const uploaded = new Set<string>();
  for (const file of files) {
    const name = relative(dir, file).split(/[\\/]/).join('/').replace(/(\.[^./]*)?$/, `-${run}$1`);
    const key = `${INCOMING}${name}`;
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: await readFile(file) }));
    uploaded.add(key);
  }
  return uploaded;
}

/**
 * Waits until every upload is in the sealed list of some interval, and every interval up to the
 * last of those is committed. Returns the lineage records of intervals 0..that last one.
 */
async function awaitCommitted(store: S3ObjectStore, uploads: Set<string>, deadline: number): Promise<LineageRecord[]> {
  const records: LineageRecord[] = [];
  const read: IntakeUpload[][] = [];
  let committed = 0;
  for (;;) {
    // Intervals are planned in order from 0, and a record never changes once written.
    for (let record = await readLineageRecord(store, records.length); record; record = await readLineageRecord(store, records.length)) {
      records.push(record);
      read.push(await readLineageUploads(store, record));
    }
    while (committed < records.length && (await store.head(keys.committed(records[committed]!.scope)))) committed++;
    const placed = read.flat().filter((u) => uploads.has(u.key));
    const last = Math.max(-1, ...records.filter((_, i) => read[i]!.some((u) => uploads.has(u.key))).map((r) => r.interval));
    if (placed.length === uploads.size && committed > last) return records.slice(0, last + 1);
    if (Date.now() > deadline) {
      // Ingest leaves a claim per admitted upload: none means S3 never told it of the uploads.
      const admitted = (await listAll(store, 'intake/claims/')).length;
      throw new Error(
        `timed out: ${placed.length} of ${uploads.size} uploads are in a sealed interval, intervals 0..${committed - 1} are committed. ` +
          (admitted === 0
            ? `No upload was admitted at all: the ingest function never ran for them. Check the bucket's notification to it ` +
              `(npm run local:deploy sets one if the deployment left none) and the ingest function's log group.`
            : `Uploads were admitted, so ingest runs: is the driver running? See its log group in LocalStack.`),
      );
    }
    console.log(`waiting: ${placed.length}/${uploads.size} uploads sealed into intervals, ${committed} intervals committed`);
    await new Promise((done) => setTimeout(done, POLL_MS));
  }
}

/** Writes each interval's uploads, by name, into `dir/<k>/`, the embedded runtime's staged layout. */
async function stage(store: S3ObjectStore, records: LineageRecord[], dir: string): Promise<void> {
  for (const record of records) {
    await mkdir(join(dir, String(record.interval)), { recursive: true });
    for (const upload of await readLineageUploads(store, record)) {
      const bytes = await store.get(upload.key);
      if (!bytes) throw new Error(`upload ${upload.key} of interval ${record.interval} is gone from the bucket (expired?)`);
      const file = join(dir, String(record.interval), upload.name);
      await mkdir(dirname(file), { recursive: true });
      await writeFile(file, bytes);
    }
  }
}

/** An output of one interval: its records sorted, or undefined when it was not committed. */
type Output = string[] | undefined;

/** Interval `scope`'s records of output `name` in a store (S3 or a local root), or undefined when it was not committed. */
async function committedOutput(store: ObjectStore, name: string, scope: string): Promise<Output> {
  if (!(await store.head(keys.outputSuccess(name, scope)))) return undefined;
  const parts = await listAll(store, keys.outputPartsPrefix(name, scope));
  const bodies = await mapConcurrently(parts, STORE_CONCURRENCY, (p) => store.get(p.key));
  return recordsOf(bodies.map((b) => Buffer.from(b ?? new Uint8Array()).toString('utf8')));
}

/** Partitioning may differ between the runs; the records may not. */
function recordsOf(bodies: string[]): string[] {
  return bodies.flatMap((b) => b.split('\n').filter((line) => line.length > 0)).sort();
}

function describeDifference(cloud: Output, local: Output): string | undefined {
  if (!cloud && !local) return undefined;
  if (!cloud) return 'committed by the embedded runtime only';
  if (!local) return 'committed on LocalStack only';
  const onlyCloud = multisetMinus(cloud, local);
  const onlyLocal = multisetMinus(local, cloud);
  if (onlyCloud.length === 0 && onlyLocal.length === 0) return undefined;
  return `${onlyCloud.length} records only on LocalStack (${preview(onlyCloud)}), ${onlyLocal.length} only embedded (${preview(onlyLocal)})`;
}

function multisetMinus(a: string[], b: string[]): string[] {
  const counts = new Map<string, number>();
  for (const x of b) counts.set(x, (counts.get(x) ?? 0) + 1);
  return a.filter((x) => {
    const n = counts.get(x) ?? 0;
    if (n > 0) counts.set(x, n - 1);
    return n === 0;
  });
}

const preview = (records: string[]) => records.slice(0, 3).join(' | ') + (records.length > 3 ? ' ...' : '');

async function filesUnder(dir: string): Promise<string[]> {
  if (!existsSync(dir)) throw new Error(`sample directory ${dir} does not exist`);
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) out.push(join(entry.parentPath, entry.name));
  }
  return out.sort();
}

try {
  await main();
} catch (error) {
  console.error(`e2e failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
}
