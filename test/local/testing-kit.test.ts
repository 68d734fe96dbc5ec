import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { replay } from 'dstream/testing';
import { definePipeline } from 'dstream';
import wordcount from '../../examples/wordcount.ts';
import { removeDir, tempDir } from '../support/stream-harness.ts';

const sorted = (records: unknown[]) => records.map((r) => JSON.stringify(r)).sort();

describe('the testing kit: replay(pipeline, intervals) in process', () => {
  it('gives each interval its outputs, parsed back from what the runtime committed', async () => {
    const result = await replay(wordcount, [['a b a'], { 'x.txt': 'b\n', 'logs/y.txt': 'c a\n' }, []]);

    expect(result.intervals.map((i) => i.interval)).toEqual([0, 1, 2]);
    expect(sorted(result.output('counts', 0))).toEqual(sorted([['a', 2], ['b', 1]]));
    expect(sorted(result.output('totals', 1))).toEqual(sorted([['a', 3], ['b', 2], ['c', 1]]));
    expect(result.output('counts', 2)).toEqual([]);
    expect(result.intervals[1]!.report.uploads).toBe(2);
  });

  it('returns text outputs as lines, and runs foreachRDD sinks in the caller', async () => {
    const seen: string[] = [];
    const grep = definePipeline({ name: 'kit-grep' }, (ctx) => {
      const errors = ctx.textStream().filter((l) => l.includes('ERROR'));
      errors.saveAsTextFiles('errors');
      errors.foreachRDD((records) => void seen.push(...records));
    });

    const result = await replay(grep, [['ok', 'ERROR disk', 'ERROR net']]);

    expect([...result.output('errors', 0)].sort()).toEqual(['ERROR disk', 'ERROR net']);
    expect(seen.sort()).toEqual(['ERROR disk', 'ERROR net']);
  });

  it('gives the same bytes on every run: a replay is the runtime itself, deterministic', async () => {
    const input = [['the quick brown fox', 'jumps over the lazy dog'], ['the end']];

    const [first, second] = [await replay(wordcount, input), await replay(wordcount, input)];

    expect(second.intervals.map((i) => i.outputs)).toEqual(first.intervals.map((i) => i.outputs));
  });

  it('names what is wrong: a missing output, an interval not replayed, a module instead of a pipeline', async () => {
    const result = await replay(wordcount, [['a']]);

    expect(() => result.output('count', 0)).toThrow(/no file output 'count' \(it has: counts, totals\)/);
    expect(() => result.output('counts', 1)).toThrow(/interval 1 was not replayed/);
    await expect(replay({ default: wordcount } as never, [])).rejects.toThrow(/pass the pipeline itself/);
  });

  it('keeps the run in the given root, and deletes its temporary one otherwise', async () => {
    const dir = await tempDir();
    try {
      const root = path.join(dir, 'root');

      const result = await replay(wordcount, [['a']], { root });

      expect(result.root).toBe(root);
      expect(existsSync(path.join(root, 'output', 'counts', 'interval=000000', '_SUCCESS'))).toBe(true);
    } finally {
      await removeDir(dir);
    }
  });
});
