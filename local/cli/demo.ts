import { rm, readFile } from 'node:fs/promises';
import path from 'node:path';
import { packageRoot } from '../package-files.ts';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.ts';
import { writeStaged } from '../sample/generate.ts';
import { formatInterval } from './format.ts';
import { intervalScope } from '../../core/layout.ts';

const WORDCOUNT = path.join(packageRoot(), 'examples', 'wordcount.ts');

/** `npm start`: WordCount over five intervals of generated text, in the embedded runtime. */
export async function runDemo(rootArg?: string): Promise<void> {
  const base = path.resolve(rootArg ?? '.dstream/demo');
  const staged = path.join(base, 'staged');
  const root = path.join(base, 'root');
  await rm(base, { recursive: true, force: true });
  const intervals = 5;
  await writeStaged(staged, intervals, 3, 20_000);
  console.log(`WordCount over ${intervals} intervals of sample text staged in ${staged}`);
  const runtime = await EmbeddedRuntime.open({ pipelinePath: WORDCOUNT, root });
  console.log(`embedded runtime: ${runtime.options.workers} workers, ${runtime.config.inputPartitions} splits per interval, root ${root}`);
  try {
    await runtime.replay(staged, (r) => console.log(formatInterval(r)));
  } finally {
    await runtime.close();
  }
  const last = intervalScope(intervals - 1);
  const totals: [string, number][] = [];
  for (let p = 0; p < 4; p++) {
    const text = await readFile(path.join(root, 'output', 'totals', last, `part-${String(p).padStart(5, '0')}`), 'utf8');
    for (const line of text.split('\n').filter(Boolean)) totals.push(JSON.parse(line));
  }
  totals.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  console.log(`\ntop words since interval 0: ${totals.slice(0, 8).map(([w, n]) => `${w} ${n}`).join(', ')}`);
  console.log(`\noutputs (one folder per interval, _SUCCESS marks a committed one):`);
  console.log(`  per-interval counts: ${path.join(root, 'output', 'counts')}/interval=<k>/part-*`);
  console.log(`  running totals:      ${path.join(root, 'output', 'totals')}/interval=<k>/part-*`);
  console.log(`  lineage:             npx dstream lineage ${intervals - 1} --root ${path.relative(process.cwd(), root) || '.'}`);
}
