/**
 * `--on-lambda`: a shell session whose tasks go through the query queue to the query function
 * answers what a session running its tasks in-process answers, byte for byte, and recomputes lost
 * state with the pipeline it bundles and sends; the function runs every task on the session's
 * scratch, so a stream task smuggled into its queue cannot write the stream's keys.
 *
 * A real Lambda cannot run here: the in-process harness of test/functions/support.ts (the SQS
 * event source mapping over a local queue, invoking the handler the query function's entry
 * exports) stands in for Lambda's invoke, and a filesystem store for the bucket.
 */
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it, vi } from 'vitest';
import { createHash } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { pipelineFromModule } from '../../core/runtime/task-handler.ts';
import { bundlePipeline } from '../../local/shell/query-code.ts';
import { FsObjectStore } from '../../local/store/fs-object-store.ts';
import { FsTaskQueue } from '../../local/queue/fs-task-queue.ts';
import { listAll } from '../../core/ports/object-store.ts';
import { keys, QUERY_CODE_PREFIX } from '../../core/layout.ts';
import { encodeQueryTask } from '../../core/query/query-message.ts';
import { QuerySession } from '../../local/shell/session.ts';
import { planFromRecord, readLineageRecord } from '../../core/streaming/lineage.ts';
import { createQueryTaskHandler } from '../../functions/task/handler.ts';
import { loadQueryCode } from '../../functions/task/query-code.ts';
import { removeDir, replayInProcess, tempDir } from '../support/stream-harness.ts';
import { eventSourceMapping } from '../functions/support.ts';

type Pair = [string, number];
const WORDCOUNT = path.resolve(import.meta.dirname, '../../examples/wordcount.ts');
const batches = [['the cat sat', 'on the mat'], ['the dog', 'sat on the cat'], ['a mat', 'the end']];

let root: string;
/**
 * WordCount as the shell bundles it for the function. A plan names a user function by the hash of
 * its printed source, so a stream is recomputed only by code built as the code that planned it:
 * this stream is run by the bundle, as a deployed stream is run by its function's bundle.
 */
let wordcount: Pipeline;

beforeAll(async () => {
  const dir = await tempDir();
  await writeFile(path.join(dir, 'wordcount.mjs'), await bundlePipeline(WORDCOUNT));
  wordcount = pipelineFromModule(await import(pathToFileURL(path.join(dir, 'wordcount.mjs')).href), 'wordcount.mjs') as Pipeline;
  root = (await replayInProcess(wordcount, batches.map((lines) => ({ 'u.txt': lines.join('\n') + '\n' })))).root;
  // Interval 1's cache is gone, as the driver drops it: its state must be recomputed from lineage.
  await rm(path.join(root, 'cache', 'interval=000001'), { recursive: true });
}, 60_000);
afterAll(async () => {
  await removeDir(path.dirname(root));
});

/** The query queue and the query function behind it, as the construct deploys them with interactiveQueries. */
async function queryFunction() {
  const dir = await tempDir();
  const store = new FsObjectStore(root);
  const queue = new FsTaskQueue({ dir, maxReceives: 2 });
  await queue.ready();
  const lambda = eventSourceMapping(queue, createQueryTaskHandler({ store, queue, maxTaskAttempts: 2 }));
  return {
    store,
    queue,
    stop: async () => {
      await lambda.stop();
      await queue.close();
      await removeDir(dir);
    },
  };
}

let fn: Awaited<ReturnType<typeof queryFunction>>;
beforeEach(async () => {
  vi.spyOn(console, 'error').mockImplementation(() => {});
  fn = await queryFunction();
});
afterEach(async () => {
  vi.restoreAllMocks();
  await fn.stop();
});

describe('a session on the query function', () => {
  it('answers as a session running its tasks in-process, byte for byte, and leaves neither scratch nor code behind', async () => {
    const before = (await listAll(fn.store, '')).map((o) => o.key);
    const onLambda = new QuerySession({ store: fn.store, workers: 2, pipeline: wordcount, pipelinePath: WORDCOUNT, onLambda: { queue: () => fn.queue } });
    const inProcess = new QuerySession({ store: fn.store, workers: 2, pipeline: wordcount });
    const queries = async (session: QuerySession) => {
      const { sc } = session;
      const last = (await sc.intervals())!.last;
      const growth = sc
        .output<Pair>('totals', { from: last, to: last })
        .join(sc.output<Pair>('totals', { from: 0, to: 0 }))
        .mapValues(([now, then]: [number, number]) => now - then);
      return [
        await growth.collect(),
        await sc.output<Pair>('counts').reduceByKey((a: number, b: number) => a + b).top(3, (a: Pair, b: Pair) => a[1] - b[1] || (a[0] < b[0] ? 1 : -1)),
        await sc.textFile('intake/uploads/').count(),
        // Interval 1's state is gone from the cache: recomputed with the pipeline, on the function from the code sent it.
        await (await sc.state('totals', 1)).collect(),
      ];
    };
    try {
      const [lambdaAnswers, localAnswers] = [await queries(onLambda), await queries(inProcess)];
      expect((lambdaAnswers[3] as Pair[]).length).toBeGreaterThan(0);
      expect(JSON.stringify(lambdaAnswers)).toBe(JSON.stringify(localAnswers));
      expect((await listAll(fn.store, QUERY_CODE_PREFIX)).map((o) => o.key)).toEqual([expect.stringMatching(new RegExp(`^queries/code/${onLambda.id}/[0-9a-f]{64}\\.mjs$`))]);
    } finally {
      await onLambda.close();
      await inProcess.close();
    }
    expect((await listAll(fn.store, '')).map((o) => o.key)).toEqual(before);
  }, 120_000);

  it('loads only code whose bytes have the hash its key names', async () => {
    const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
    const genuine = 'export default 1;';
    await fn.store.put(keys.queryCode('s-altered', sha256(genuine)), 'export default 2;');
    await expect(loadQueryCode(fn.store, 's-altered', sha256(genuine))).rejects.toThrow(/has SHA-256 [0-9a-f]{64}, not the [0-9a-f]{64} its name and the task give: it was altered/);
    await expect(loadQueryCode(fn.store, 's-ended', sha256('gone'))).rejects.toThrow(/is missing: its session has ended/);
    await fn.store.delete(keys.queryCode('s-altered', sha256(genuine)));
  });
});

describe('the query function', () => {
  it("runs a stream's own task on the session's scratch: what it writes lands there, not under the stream's keys", async () => {
    // The first task of interval 2, as the stream's driver sent it, whose shuffle blocks the cache has lost.
    const stream = new FsObjectStore(root);
    await rm(path.join(root, 'cache', 'interval=000002'), { recursive: true });
    const plan = planFromRecord(wordcount, (await readLineageRecord(stream, 2))!);
    const first = plan.stages[0]!;
    const task = { v: 1, pipeline: wordcount.options.name, fingerprint: wordcount.fingerprint, scope: 'interval=000002', planHash: plan.planHash, stage: first.id, partition: 0, attempt: 0, copy: 0 };
    const session = new QuerySession({ store: stream, workers: 1, pipeline: wordcount, pipelinePath: WORDCOUNT, onLambda: { queue: () => fn.queue } });
    try {
      await session.warm();
      const [code] = await listAll(stream, `${QUERY_CODE_PREFIX}${session.id}/`);
      await fn.queue.send([encodeQueryTask({ session: session.id, code: path.basename(code!.key, '.mjs'), task: JSON.stringify(task) })]);
      const done = `${keys.queryScratch(session.id)}${keys.taskDone('interval=000002', first.id, 0)}`;
      for (let i = 0; i < 400 && !(await stream.head(done)); i++) await new Promise((r) => setTimeout(r, 25));

      expect(await stream.head(done)).toBeDefined();
      expect((await listAll(stream, `${keys.queryScratch(session.id)}cache/interval=000002/`)).length).toBeGreaterThan(0);
      expect(await listAll(stream, 'cache/interval=000002/')).toEqual([]);
      expect(await stream.head(keys.taskDone('interval=000002', first.id, 0))).toBeDefined();
    } finally {
      await session.close();
    }
  }, 120_000);
});
