import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { seededRandom } from '../../core/util/seeded-random.ts';

const VOCABULARY = (
  'the stream is cut into intervals each interval becomes an immutable dataset and a small deterministic batch job ' +
  'runs over it lineage lets any lost partition be recomputed in parallel stragglers are simply run twice error warn info'
).split(' ');

/**
 * Text that looks like a stream's input: lines of words drawn with a skew (a few words are
 * common, most are rare), the same for the same seed. Used by the demo, the tests and the bench.
 */
export function sampleLines(lines: number, seed: number): string {
  const random = seededRandom(seed);
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const n = 3 + Math.floor(random() * 10);
    const words: string[] = [];
    for (let j = 0; j < n; j++) {
      const r = random();
      // Skewed: squaring favours the front of the vocabulary; every tenth word is a rare one.
      words.push(r < 0.1 ? `w${Math.floor(random() * 5000)}` : VOCABULARY[Math.floor(random() * random() * VOCABULARY.length)]!);
    }
    out.push(words.join(' '));
  }
  return out.join('\n') + '\n';
}

/** Writes `intervals` folders of `filesPerInterval` files each into a staged directory. */
export async function writeStaged(dir: string, intervals: number, filesPerInterval: number, linesPerFile: number, seed = 1): Promise<void> {
  for (let k = 0; k < intervals; k++) {
    await mkdir(path.join(dir, String(k)), { recursive: true });
    for (let f = 0; f < filesPerInterval; f++) {
      await writeFile(path.join(dir, String(k), `part-${f}.txt`), sampleLines(linesPerFile, seed * 1000 + k * 10 + f));
    }
  }
}
