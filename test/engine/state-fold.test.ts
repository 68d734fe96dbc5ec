/**
 * updateStateByKey's and mapWithState's step folds the batch into the state by a hash merge
 * (Rdd.foldState) where it once grouped both by a cogroup and mapped each group. Determinism is the
 * engine's law: on generated states and batches, the fold writes what the cogroup-based step
 * writes, byte for byte, partition by partition; a key's prior state is its first, and the values
 * it is given are its own array.
 */
import { expect, it } from 'vitest';
import fc from 'fast-check';
import path from 'node:path';
import { definePipeline } from '../../core/index.ts';
import { removeDir, replayInProcess } from '../support/stream-harness.ts';

/** A record of the state (`s`) or of the batch (`b`): a key and a value. */
type Tagged = ['s' | 'b', unknown, number];

const keyArb = fc.oneof(fc.constantFrom('a', 'b', 'é', 'k k', ''), fc.integer({ min: -3, max: 3 }), fc.tuple(fc.constantFrom('x', 'y'), fc.integer({ min: 0, max: 2 })));
const scenarioArb = fc.record({
  files: fc.array(fc.array(fc.tuple(fc.constantFrom('s' as const, 'b' as const), keyArb, fc.integer({ min: -5, max: 20 })), { maxLength: 25 }), { minLength: 1, maxLength: 3 }),
  partitions: fc.integer({ min: 1, max: 4 }),
});

/** What a step makes of a key: nothing, one record, or two, so that emptiness and order both show. */
const step = (key: unknown, prior: number | undefined, values: number[]): unknown[] => {
  values.push(-1);
  const sum = values.reduce((a, b) => a + b, prior ?? 0);
  return sum % 3 === 0 ? [] : sum % 3 === 1 ? [[key, prior ?? null, values]] : [[key, sum], [key, values.length]];
};

it('writes what the cogroup-based step wrote, byte for byte, on generated states and batches', async () => {
  await fc.assert(
    fc.asyncProperty(scenarioArb, async ({ files, partitions }) => {
      const pipeline = definePipeline({ name: 'state-fold', partitions: 2 }, (ctx) => {
        const tagged = ctx.jsonStream<Tagged>();
        const sides = (records: import('../../core/index.ts').Rdd<Tagged>) => ({
          state: records.filter((r) => r[0] === 's').map((r): [unknown, number] => [r[1], r[2]]),
          batch: records.filter((r) => r[0] === 'b').map((r): [unknown, number] => [r[1], r[2]]),
        });
        tagged
          .transform((records) => {
            const { state, batch } = sides(records);
            return state.foldState(batch, partitions, 'fold', (key, prior, values) => step(key, prior, values as number[]));
          })
          .saveAsJsonFiles('folded');
        tagged
          .transform((records) => {
            const { state, batch } = sides(records);
            return state
              .cogroup([batch], partitions)
              .flatMapSameKey('fold', ([key, [states, values]]: [unknown, number[][]]) => step(key, states![0], values!) as Iterable<[unknown, unknown]>);
          })
          .saveAsJsonFiles('grouped');
      });
      const uploads = Object.fromEntries(files.map((records, i) => [`f${i}.jsonl`, records.map((r) => JSON.stringify(r) + '\n').join('')]));
      const run = await replayInProcess(pipeline, [uploads]);
      try {
        const written = await run.files();
        const parts = (name: string) => [...written].filter(([file]) => file.startsWith(`output/${name}/`)).map(([file, bytes]) => [path.basename(file), bytes]);

        expect(parts('folded')).toHaveLength(partitions + 1);
        expect(parts('folded')).toEqual(parts('grouped'));
      } finally {
        await removeDir(path.dirname(run.root));
      }
    }),
    { numRuns: 12 },
  );
});
