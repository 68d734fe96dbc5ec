/**
 * `BENCH_ONLY=aws`: the cost and latency model of the AWS deployment. The real handlers run on a
 * virtual clock (scenario.ts) with modelled S3/SQS/Lambda latencies (latency.ts); counts and
 * billed durations are priced (prices.ts). One column per control plane: today the current one;
 * the event-driven one joins as another ControlPlane in CONTROL_PLANES.
 */
import type { Pipeline } from '../../core/graph/pipeline.ts';
import wordcount from '../../examples/wordcount.ts';
import windowed from '../../examples/windowed-counts.ts';
import { printTable, type Row } from '../table.ts';
import { currentControlPlane } from './control-plane.ts';
import type { ControlPlane } from './deployment.ts';
import { costOf, keepsUp, median } from './cost.ts';
import * as L from './latency.ts';
import { runScenario, type ScenarioResult } from './scenario.ts';

export const CONTROL_PLANES: ControlPlane[] = [currentControlPlane];

const S = 1000;
const MIN = 60 * S;
const KB = 1024;
const MB = 1024 * KB;
/** The busy runs' input: 100 KB/s, one upload a second (8.2 GB a day). */
const BUSY_RATE = 100 * KB;

export interface AwsModel {
  tables: { title: string; rows: Row[] }[];
  idleCostAt10s: number;
  keepsUpAt1s: boolean;
  p50EndToEndAt1s: number;
}

/** The last line the bench prints, in the issue's exact words. */
export function summaryLine(model: Pick<AwsModel, 'idleCostAt10s' | 'keepsUpAt1s' | 'p50EndToEndAt1s'>): string {
  return `idle cost at 10 s intervals: $${model.idleCostAt10s.toFixed(2)}/day; 1 s intervals keep up: ${model.keepsUpAt1s ? 'yes' : 'no'}; p50 end-to-end at 1 s: ${Math.round(model.p50EndToEndAt1s)} ms`;
}

/** Durations of virtual time per run; `scale` < 1 shortens them (the test's quick model). */
export async function modelAws(controlPlane: ControlPlane = currentControlPlane, scale = 1): Promise<AwsModel> {
  const run = (pipeline: Pipeline, intervalMs: number, durationMs: number, bytesPerSecond: number) =>
    runScenario({ pipeline, controlPlane, intervalMs, durationMs: Math.max(6 * intervalMs, Math.round(durationMs * scale)), bytesPerSecond });
  const idle = { 1: await run(wordcount, 1 * S, 3 * MIN, 0), 10: await run(wordcount, 10 * S, 16 * MIN, 0), 60: await run(wordcount, 60 * S, 32 * MIN, 0) };
  const busy = { 1: await run(wordcount, 1 * S, 90 * S, BUSY_RATE), 10: await run(wordcount, 10 * S, 3 * MIN, BUSY_RATE), 60: await run(wordcount, 60 * S, 6 * MIN, BUSY_RATE) };
  const windowedRuns = { 1: await run(windowed, 1 * S, 60 * S, BUSY_RATE), 10: await run(windowed, 10 * S, 2 * MIN, BUSY_RATE) };
  const between: ScenarioResult[] = [];
  for (const seconds of [2, 3, 5]) between.push(await run(wordcount, seconds * S, 60 * S, BUSY_RATE));

  for (const r of [...Object.values(idle), ...Object.values(busy), ...Object.values(windowedRuns), ...between]) {
    if (r.errors.length > 0) throw new Error(`the AWS model's ${describe(r)} run logged errors, so its figures mean nothing: ${r.errors.slice(0, 3).join('; ')}`);
  }
  const perGb = (seconds: 1 | 10 | 60) => {
    const gbPerDay = (BUSY_RATE * 86_400) / (1024 * MB);
    return (costOf(busy[seconds]).perDay - costOf(idle[seconds]).perDay) / gbPerDay;
  };

  const costRows: Row[] = [];
  for (const seconds of [1, 10, 60] as const) {
    for (const [load, r] of [['idle', idle[seconds]], ['100 KB/s', busy[seconds]]] as const) {
      const c = costOf(r);
      const n = Math.max(1, r.intervals.length);
      const { s3 } = r.meter.totals();
      costRows.push({
        'control plane': controlPlane.name,
        interval: `${seconds} s`,
        input: load,
        '$/day': c.perDay,
        'Lambda $/day': c.perDay * (c.lambda / c.total),
        'S3 $/day': c.perDay * (c.s3 / c.total),
        'SQS $/day': c.perDay * (c.sqs / c.total),
        'driver GB-s/day': c.driverGbSecondsPerDay,
        'tasks/interval': (r.functions.find((f) => f.role === 'task')!.invocations) / n,
        'S3 GET/interval': s3.get / n,
        'S3 PUT/interval': s3.put / n,
        'S3 LIST/interval': s3.list / n,
        '$/GB (marginal)': load === 'idle' ? '' : perGb(seconds).toFixed(4),
        simulated: `${(r.options.durationMs / MIN).toFixed(1)} min in ${(r.realMs / S).toFixed(1)} s`,
      });
    }
  }

  const latencyRows: Row[] = [];
  for (const [name, runs] of [['wordcount', busy], ['windowed-counts', windowedRuns]] as const) {
    for (const seconds of [1, 10] as const) latencyRows.push(latencyRow(controlPlane, name, runs[seconds]));
  }
  const sweep = [busy[1], ...between, busy[10], busy[60]];
  for (const r of between) latencyRows.push(latencyRow(controlPlane, 'wordcount', r));
  const smallest = sweep.find(keepsUp);
  latencyRows.push({ 'control plane': controlPlane.name, pipeline: `smallest interval that keeps up (WordCount, 100 KB/s): ${smallest ? `${smallest.options.intervalMs / S} s` : 'none of 1-60 s'}` });

  return {
    tables: [
      { title: `AWS model: cost per day (us-east-1, ARM64; WordCount, 4 splits; idle and ${BUSY_RATE / KB} KB/s of input)`, rows: costRows },
      { title: 'AWS model: processing time (interval end to commit) and end-to-end latency (upload to committed output), p50 over the run', rows: latencyRows },
      { title: 'AWS model: growth with tasks per stage and input rate at 10 s intervals (extrapolated from the simulated 10 s runs)', rows: growth(controlPlane, idle[10], busy[10]) },
    ],
    idleCostAt10s: costOf(idle[10]).perDay,
    keepsUpAt1s: keepsUp(busy[1]),
    p50EndToEndAt1s: median(busy[1].endToEnd),
  };
}

function latencyRow(controlPlane: ControlPlane, pipeline: string, r: ScenarioResult): Row {
  const delays = r.intervals.map((i) => i.committedAt - i.end);
  return {
    'control plane': controlPlane.name,
    pipeline,
    interval: `${r.options.intervalMs / S} s`,
    'p50 processing ms': median(delays),
    'p50 end-to-end ms': median(r.endToEnd),
    'intervals committed': `${r.intervals.length} of ${Math.floor(r.options.durationMs / r.options.intervalMs)}`,
    'keeps up': keepsUp(r) ? 'yes' : 'no',
  };
}

/**
 * Beyond what runs in process in seconds: the 10 s runs give the fixed cost of an interval (its
 * commit delay when idle, requests per task) and the task time per byte; with P tasks per stage
 * running at once, an interval takes the idle delay plus its bytes' task time over P. Limits:
 * P concurrent task Lambdas against the account's 1,000, and the tasks' requests per second
 * against S3's per-prefix rates.
 */
function growth(controlPlane: ControlPlane, idle: ScenarioResult, busy: ScenarioResult): Row[] {
  const task = (r: ScenarioResult) => r.functions.find((f) => f.role === 'task')!;
  const perInterval = (r: ScenarioResult) => Math.max(1, r.intervals.length);
  const idleDelay = median(idle.intervals.map((i) => i.committedAt - i.end));
  const bytesPerInterval = busy.uploadedBytes / perInterval(busy);
  const taskMsPerByte = Math.max(0, task(busy).billedMs / perInterval(busy) - task(idle).billedMs / perInterval(idle)) / bytesPerInterval;
  const tasksPerInterval = task(idle).invocations / perInterval(idle);
  const { s3 } = idle.meter;
  const taskRequests = s3.get('task');
  const getsPerTask = (taskRequests?.get ?? 0) / task(idle).invocations;
  const putsPerTask = (taskRequests?.put ?? 0) / task(idle).invocations;
  const idleDay = costOf(idle).perDay;
  const perGbDay = (costOf(busy).perDay - idleDay) / ((busy.uploadedBytes / busy.options.durationMs) * 86_400_000 / 1024 ** 3);
  const rows: Row[] = [];
  for (const tasks of [10, 100, 1000]) {
    for (const rate of [1 * MB, 10 * MB, 100 * MB, 1024 * MB]) {
      const bytes = (rate * 10 * S) / S;
      const taskMs = (bytes * taskMsPerByte) / tasks;
      const processing = idleDelay + taskMs;
      // Sustained over the interval: two stages of `tasks` tasks every 10 s.
      const putRate = (2 * tasks * putsPerTask) / 10;
      const getRate = (2 * tasks * getsPerTask) / 10;
      const limits = [
        ...(tasks > L.LAMBDA_ACCOUNT_CONCURRENCY ? ['Lambda concurrency'] : []),
        ...(putRate > L.S3_PUT_PER_SECOND_PER_PREFIX ? [`S3 PUT ${Math.round(putRate)}/s`] : []),
        ...(getRate > L.S3_GET_PER_SECOND_PER_PREFIX ? [`S3 GET ${Math.round(getRate)}/s`] : []),
      ];
      rows.push({
        'control plane': controlPlane.name,
        'tasks/stage': tasks,
        'input MB/s': rate / MB,
        'processing ms': processing,
        'keeps up at 10 s': processing <= 10 * S && limits.length === 0 ? 'yes' : 'no',
        '$/day': idleDay * (tasks * 2 / tasksPerInterval) + perGbDay * (rate * 86_400) / 1024 ** 3,
        limit: limits.join(', ') || (processing > 10 * S ? 'task time' : ''),
      });
    }
  }
  return rows;
}

const describe = (r: ScenarioResult) => `${r.options.pipeline.options.name} ${r.options.intervalMs / S} s ${r.options.bytesPerSecond > 0 ? 'busy' : 'idle'}`;

/** Prints the model's tables, then the summary line (the bench's last line when aws runs last). */
export async function benchAws(): Promise<void> {
  for (const controlPlane of CONTROL_PLANES) {
    const model = await modelAws(controlPlane);
    for (const { title, rows } of model.tables) printTable(title, rows);
    if (controlPlane === CONTROL_PLANES.at(-1)) console.log(`\n${summaryLine(model)}`);
  }
}
