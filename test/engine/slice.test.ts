/**
 * A batch job reads a stream's committed outputs over a range of intervals as one RDD, as Spark's
 * DStream.slice(fromTime, toTime) gives the RDDs of a range of times: the records are the union of
 * what the stream wrote at those intervals, and a range reaching an interval not committed is
 * refused rather than read in part.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import path from 'node:path';
import { defineBatch, definePipeline } from '../../core/index.ts';
import type { BatchJob } from '../../core/graph/pipeline.ts';
import { EmbeddedRuntime } from '../../local/runtime/embedded-runtime.ts';
import { bag, removeDir, replayInProcess } from '../support/stream-harness.ts';

type Pair = [string, number];
const add = (a: number, b: number) => a + b;

const pipeline = definePipeline({ name: 'sliced', partitions: 3 }, (ctx) => {
  const pairs = ctx.jsonStream<Pair>();
  pairs.reduceByKey(add).saveAsJsonFiles('counts');
  // An RDD every other interval only: the intervals between add nothing to a slice.
  pairs.window(2, 2).count().saveAsJsonFiles('windowed');
  pairs.map(([k, v]) => `${k}=${v}`).saveAsTextFiles('lines');
});

/** What the pipeline writes at interval k, computed in memory. */
const reference = (batches: Pair[][], k: number) => {
  const sums = new Map<string, number>();
  for (const [key, v] of batches[k]!) sums.set(key, (sums.get(key) ?? 0) + v);
  return {
    counts: [...sums] as unknown[],
    windowed: (k + 1) % 2 === 0 ? [batches.slice(Math.max(0, k - 1), k + 1).flat().length] : [],
    lines: batches[k]!.map(([key, v]) => `${key}=${v}`) as unknown[],
  };
};

async function runJob(root: string, job: BatchJob) {
  const runtime = await EmbeddedRuntime.open({ pipelinePath: 'in-process', inProcess: job, root, workers: 1, scheduler: { pollMs: 2 } });
  try {
    return await runtime.batch();
  } finally {
    await runtime.close();
  }
}

const pairArb = fc.tuple(fc.constantFrom('a', 'b', 'c', 'é'), fc.integer({ min: -3, max: 9 }));

describe('slice of a stream in a batch job', () => {
  it('equals the union of the outputs of the intervals sliced', async () => {
    await fc.assert(
      fc.asyncProperty(
        // Two intervals at least, so that the windowed output has written once.
        fc.array(fc.array(pairArb, { maxLength: 12 }), { minLength: 2, maxLength: 5 }).chain((batches) =>
          fc.tuple(fc.constant(batches), fc.integer({ min: 0, max: batches.length - 1 }), fc.integer({ min: 1, max: 3 })).chain(([b, from, parts]) =>
            fc.tuple(fc.constant(b), fc.constant(from), fc.integer({ min: from, max: b.length - 1 }), fc.constant(parts)),
          ),
        ),
        async ([batches, from, to, inputPartitions]) => {
          const uploads = batches.map((b) => ({ 'u.jsonl': b.map((r) => JSON.stringify(r) + '\n').join('') }));
          const run = await replayInProcess(pipeline, uploads, { partitions: inputPartitions });
          try {
            const job = defineBatch({ name: 'read-slices', partitions: 2 }, (sc) => {
              sc.slice('counts', from, to).collect('counts');
              sc.slice('windowed', from, to).collect('windowed');
              sc.sliceText('lines', from, to).collect('lines');
            });
            const result = await runJob(run.root, job);
            for (const name of ['counts', 'windowed', 'lines'] as const) {
              const expected: unknown[] = [];
              for (let k = from; k <= to; k++) expected.push(...reference(batches, k)[name]);
              expect(bag(result.collected[name]), `${name} from ${from} to ${to}`).toEqual(bag(expected));
            }
          } finally {
            await removeDir(path.dirname(run.root));
          }
        },
      ),
      { numRuns: Number(process.env.DSTREAM_PROPERTY_RUNS ?? 6), endOnFailure: true },
    );
  }, 300_000);

  it('refuses a range reaching an uncommitted interval, an output never written, and a backward range, when the run starts', async () => {
    const run = await replayInProcess(pipeline, [{ 'u.jsonl': '["a",1]\n' }, { 'u.jsonl': '["b",2]\n' }]);
    try {
      const beyond = defineBatch({ name: 'beyond' }, (sc) => void sc.slice('counts', 1, 2).collect('x'));
      await expect(runJob(run.root, beyond)).rejects.toThrow('slice of output counts from interval 1 to 2: interval 2 is not committed; a slice reads committed intervals only');
      const unknown = defineBatch({ name: 'unknown' }, (sc) => void sc.slice('totals', 0, 1).collect('x'));
      await expect(runJob(run.root, unknown)).rejects.toThrow('slice of output totals: nothing was ever written under output/totals/');
      const backwards = defineBatch({ name: 'backwards' }, (sc) => void sc.slice('counts', 1, 0).collect('x'));
      await expect(runJob(run.root, backwards)).rejects.toThrow('slice of output counts: intervals must be whole numbers with 0 <= from <= to, got from 1 to 0');
    } finally {
      await removeDir(path.dirname(run.root));
    }
  });
});
