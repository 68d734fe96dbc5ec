/**
 * What an interval costs with almost no data: WordCount's two stages (the map side, and the
 * reduce side writing `counts`, the state and `totals`) over a few lines per split, with
 * `partitions` reduce partitions and as many input splits, so 2 x partitions tasks; and a
 * four-stage variant (three shuffles one after another), 4 x partitions tasks. Seal to commit is
 * all fixed cost: sealing, planning, dispatch and each task's protocol with the store.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sampleLines } from '../local/sample/generate.ts';
import type { Row } from './table.ts';
import { BENCH_DIR, freshRoot, timedReplay } from './workspace.ts';
import { breakdowns } from './breakdown.ts';

const INTERVALS = 4;

/** One case: `partitions` splits and reduce partitions, in WordCount's 2 stages or the 4-stage variant. */
export interface FixedCostCase {
  partitions: number;
  stages: 2 | 4;
}

/** examples/wordcount.ts with another number of reduce partitions. */
async function wordcountWith(partitions: number): Promise<string> {
  const source = await readFile('examples/wordcount.ts', 'utf8');
  if (!/partitions: \d+/.test(source)) throw new Error('bench: examples/wordcount.ts no longer sets its partitions as the fixed-cost bench expects');
  return pipelineFile(`wordcount-${partitions}.ts`, source.replace(/partitions: \d+/, `partitions: ${partitions}`));
}

/** Words counted, then counts by word length, then lengths by count modulo 7: three shuffles, four stages. */
function fourStagesWith(partitions: number): Promise<string> {
  return pipelineFile(
    `four-stages-${partitions}.ts`,
    `import { definePipeline } from 'dstream';

export default definePipeline({ name: 'four-stages', partitions: ${partitions} }, (ctx) => {
  const counts = ctx.textStream().flatMap((line) => line.split(/\\s+/).filter((w) => w.length > 0)).map((w) => [w, 1]).reduceByKey((a, b) => a + b);
  const byLength = counts.map(([w, c]) => [w.length, c]).reduceByKey((a, b) => a + b);
  byLength.map(([n, c]) => [c % 7, n]).reduceByKey((a, b) => a + b).saveAsJsonFiles('shape');
});
`,
  );
}

async function pipelineFile(name: string, source: string): Promise<string> {
  const file = path.join(BENCH_DIR, 'pipelines', name);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, source);
  return file;
}

export async function benchFixedCosts(cases: FixedCostCase[]): Promise<Row[]> {
  const rows: Row[] = [];
  for (const { partitions, stages } of cases) {
    const staged = path.join(BENCH_DIR, 'staged', `fixed-${partitions}`);
    for (let k = 0; k < INTERVALS; k++) {
      await mkdir(path.join(staged, String(k)), { recursive: true });
      for (let f = 0; f < partitions; f++) await writeFile(path.join(staged, String(k), `part-${f}.txt`), sampleLines(20, k * 1000 + f + 1));
    }
    const { reports, runtime } = await timedReplay(
      { pipelinePath: await (stages === 2 ? wordcountWith(partitions) : fourStagesWith(partitions)), root: await freshRoot(`fixed-${stages}-${partitions}`), workers: 2, partitions },
      staged,
    );
    // The first interval warms up the JIT and the plan caches.
    const measured = (await breakdowns(runtime.store, reports)).slice(1);
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const tasks = measured[0]!.stages.reduce((n, s) => n + s.tasks, 0);
    const taskMs = median(measured.map((b) => b.stages.reduce((n, s) => n + s.taskMs, 0))) / tasks;
    rows.push({
      stages,
      tasks,
      'seal to commit ms': median(measured.map((b) => b.at.committed! - b.at.sealing!)),
      'seal ms': median(measured.map((b) => b.sealMs!)),
      'plan ms': median(measured.map((b) => b.planMs!)),
      'no task running ms': median(measured.map((b) => b.dispatchMs)),
      'commit ms': median(measured.map((b) => b.commitMs!)),
      'task ms (marker to record)': taskMs,
      'turnaround ms/task': median(measured.map((b) => b.turnaroundMs ?? 0)),
      'two busy %': 100 * median(measured.map((b) => b.busyShare[1] ?? 0)),
    });
  }
  return rows;
}
