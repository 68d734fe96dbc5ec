import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { packageRoot } from '../package-files.ts';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.ts';
import { writeStaged } from '../sample/generate.ts';
import { formatInterval } from './format.ts';
import type { Terminal } from './terminal.ts';
import { intervalScope } from '../../core/layout.ts';

const WORDCOUNT = path.join(packageRoot(), 'examples', 'wordcount.ts');
/** Left in a folder the demo made, so a later demo knows it may start it afresh. */
export const DEMO_MARKER = '.dstream-demo';

/** `npm start`: WordCount over five intervals of generated text, in the embedded runtime. */
export async function runDemo(term: Terminal, rootArg?: string): Promise<void> {
  const base = path.resolve(rootArg ?? '.dstream/demo');
  const staged = path.join(base, 'staged');
  const root = demoStreamRoot(base);
  await claimDemoFolder(base, [staged, root]);
  const intervals = 5;
  await writeStaged(staged, intervals, 3, 20_000);
  term.line(`WordCount over ${intervals} intervals of sample text staged in ${staged}`);
  const runtime = await EmbeddedRuntime.open({ pipelinePath: WORDCOUNT, root });
  term.line(`embedded runtime: ${runtime.options.workers} workers, ${runtime.config.inputPartitions} input splits per interval, root ${root}`);
  const stopProgress = term.followProgress(runtime.store);
  try {
    await runtime.replay(staged, (r) => term.line(formatInterval(r, term.style)));
  } finally {
    stopProgress();
    await runtime.close();
  }
  const last = intervalScope(intervals - 1);
  const totals: [string, number][] = [];
  for (let p = 0; p < 4; p++) {
    const text = await readFile(path.join(root, 'output', 'totals', last, `part-${String(p).padStart(5, '0')}`), 'utf8');
    for (const line of text.split('\n').filter(Boolean)) totals.push(JSON.parse(line));
  }
  totals.sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  term.line(`\ntop words since interval 0: ${totals.slice(0, 8).map(([w, n]) => `${w} ${n}`).join(', ')}`);
  term.line(`\noutputs (one folder per interval, _SUCCESS marks a committed one):`);
  term.line(`  per-interval counts: ${path.join(root, 'output', 'counts')}/interval=<k>/part-*`);
  term.line(`  running totals:      ${path.join(root, 'output', 'totals')}/interval=<k>/part-*`);
  term.line(`  lineage:             npx dstream lineage ${intervals - 1} --root ${path.relative(process.cwd(), root) || '.'}`);
  term.line(`  in a browser:        npx dstream ui --root ${path.relative(process.cwd(), base) || '.'}`);
}

/** Where a demo folder keeps its stream's root. */
export function demoStreamRoot(base: string): string {
  return path.join(base, 'root');
}

/**
 * Makes `base` the demo's folder: a new or empty folder, or one an earlier demo made (its marker
 * says so), whose demo folders `owned` are removed to start afresh. Anything else is refused:
 * the demo never deletes what it did not create.
 */
async function claimDemoFolder(base: string, owned: string[]): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(base);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new Error(`demo root ${base} is a file, not a folder: give --root a new or empty folder`);
    if (code !== 'ENOENT') throw error;
    entries = [];
  }
  if (entries.length > 0 && !entries.includes(DEMO_MARKER)) {
    throw new Error(
      `demo root ${base} is not empty and was not made by the demo (it has no ${DEMO_MARKER}): the demo only writes into a new or empty folder, or one an earlier demo made, ` +
        `and never deletes what it did not create. Give --root a new folder.`,
    );
  }
  for (const dir of owned) await rm(dir, { recursive: true, force: true });
  await mkdir(base, { recursive: true });
  await writeFile(path.join(base, DEMO_MARKER), 'made by dstream demo: a later demo may remove its staged/ and root/\n');
}
