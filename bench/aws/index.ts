/**
 * `BENCH_ONLY=aws`: the cost and latency model of the AWS deployment. The real handlers run on a
 * virtual clock (scenario.ts) with modelled S3/SQS/Lambda latencies (latency.ts); counts and
 * billed durations are priced (prices.ts). Every table has one row per control plane and case:
 * the current one (an always-on driver polling by LIST) and the new, event-driven one.
 */
import type { Pipeline } from '../../core/graph/pipeline.ts';
import wordcount from '../../examples/wordcount.ts';
import windowed from '../../examples/windowed-counts.ts';
import { printTable, type Row } from '../table.ts';
import { currentControlPlane, eventDrivenControlPlane } from './control-plane.ts';
import type { ControlPlane } from './deployment.ts';
import { costOf, keepsUp, median } from './cost.ts';
import * as L from './latency.ts';
import { runScenario, type ScenarioOptions, type ScenarioResult } from './scenario.ts';

/** The summary line is the last one's. */
export const CONTROL_PLANES: ControlPlane[] = [currentControlPlane, eventDrivenControlPlane];

const S = 1000;
const MIN = 60 * S;
const KB = 1024;
const MB = 1024 * KB;
/** The busy runs' input: 100 KB/s, one upload a second (8.2 GB a day). */
const BUSY_RATE = 100 * KB;
/** A second rate at 10 s intervals, to tell the cost of a byte from the cost of a task (growth). */
const BUSIER_RATE = 4 * BUSY_RATE;

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
  const run = (pipeline: Pipeline, intervalMs: number, durationMs: number, bytesPerSecond: number, more: Partial<ScenarioOptions> = {}) =>
    runScenario({ pipeline, controlPlane, intervalMs, durationMs: Math.max(6 * intervalMs, Math.round(durationMs * scale)), bytesPerSecond, ...more });
  // Long enough that the minute a stream runs before it goes dormant weighs little in a day of it.
  const idle = { 1: await run(wordcount, 1 * S, 20 * MIN, 0), 10: await run(wordcount, 10 * S, 120 * MIN, 0), 60: await run(wordcount, 60 * S, 360 * MIN, 0) };
  const busy = { 1: await run(wordcount, 1 * S, 90 * S, BUSY_RATE), 10: await run(wordcount, 10 * S, 3 * MIN, BUSY_RATE), 60: await run(wordcount, 60 * S, 6 * MIN, BUSY_RATE) };
  // Growth is fitted to stages fanned out to task functions: the inputs it extrapolates to are far over the in-driver bound.
  const fanned10 = await run(wordcount, 10 * S, 3 * MIN, BUSY_RATE, { fanOutAll: true });
  const busier10 = await run(wordcount, 10 * S, 3 * MIN, BUSIER_RATE, { fanOutAll: true });
  // The model's least certain figure decides the end-to-end latency at 1 s: shown at a quarter and twice its value.
  const sensitivity = [await run(wordcount, 1 * S, 90 * S, BUSY_RATE, { notificationMs: 250 }), await run(wordcount, 1 * S, 90 * S, BUSY_RATE, { notificationMs: 2000 })];
  const windowedRuns = { 1: await run(windowed, 1 * S, 60 * S, BUSY_RATE), 10: await run(windowed, 10 * S, 2 * MIN, BUSY_RATE) };
  const between: ScenarioResult[] = [];
  for (const seconds of [2, 3, 5]) between.push(await run(wordcount, seconds * S, 60 * S, BUSY_RATE));

  for (const r of [...Object.values(idle), ...Object.values(busy), fanned10, busier10, ...sensitivity, ...Object.values(windowedRuns), ...between]) {
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
  for (const r of sensitivity) latencyRows.push(latencyRow(controlPlane, `wordcount, S3 notification ${r.options.notificationMs! / S} s (model: ${L.S3_NOTIFICATION_MS / S} s)`, r));
  const smallest = sweep.find(keepsUp);
  latencyRows.push({ 'control plane': controlPlane.name, pipeline: `smallest interval that keeps up (WordCount, 100 KB/s): ${smallest ? `${smallest.options.intervalMs / S} s` : 'none of 1-60 s'}` });

  return {
    tables: [
      { title: `AWS model: cost per day (us-east-1, ARM64; WordCount, 4 splits; idle and ${BUSY_RATE / KB} KB/s of input)`, rows: costRows },
      { title: 'AWS model: processing time (interval end to commit) and end-to-end latency (upload to committed output), p50 over the run', rows: latencyRows },
      {
        title: `AWS model: growth with tasks per stage and input rate at 10 s intervals (extrapolated, not simulated: from 10 s runs at ${BUSY_RATE / KB} and ${BUSIER_RATE / KB} KB/s with 4 splits, every stage on task functions)`,
        rows: growth(controlPlane, fanned10, busier10),
      },
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
 * Beyond what runs in process in seconds. A day at T tasks per stage and R bytes a second costs
 * what the busy 10 s run's driver, ingest and the rest pay (the control plane's own cost, which
 * does not grow with the tasks), plus the task function's and its queue's cost, fitted to the two
 * busy 10 s runs (the same tasks over different bytes) as a cost per task plus a cost per GB. An
 * interval takes the busy run's commit delay less its bytes' task time over its splits, plus the
 * new bytes' task time over T tasks running at once (the construct's taskConcurrency raised to T).
 * Limits: T concurrent task Lambdas against the account's 1,000, and the tasks' requests per second
 * against S3's per-prefix rates.
 */
function growth(controlPlane: ControlPlane, busy: ScenarioResult, busier: ScenarioResult): Row[] {
  const task = (r: ScenarioResult) => r.functions.find((f) => f.role === 'task')!;
  const perDay = (r: ScenarioResult) => 86_400_000 / r.options.durationMs;
  const gbPerDay = (r: ScenarioResult) => (r.uploadedBytes * perDay(r)) / 1024 ** 3;
  const tasksDay = (r: ScenarioResult) => { const by = costOf(r).perDayByRole; return (by.get('task') ?? 0) + (by.get('esm') ?? 0); };
  const planeDay = costOf(busy).perDay - tasksDay(busy);
  const perGb = (tasksDay(busier) - tasksDay(busy)) / (gbPerDay(busier) - gbPerDay(busy));
  const perTask = (tasksDay(busy) - perGb * gbPerDay(busy)) / (task(busy).invocations * perDay(busy));
  const intervals = (r: ScenarioResult) => Math.max(1, r.intervals.length);
  const bytesPerInterval = (r: ScenarioResult) => r.uploadedBytes / intervals(r);
  const taskMsPerByte = Math.max(0, (task(busier).billedMs / intervals(busier) - task(busy).billedMs / intervals(busy)) / (bytesPerInterval(busier) - bytesPerInterval(busy)));
  const splits = busy.options.partitions ?? 4;
  const stages = task(busy).invocations / intervals(busy) / splits;
  const fixedDelay = Math.max(0, median(busy.intervals.map((i) => i.committedAt - i.end)) - (bytesPerInterval(busy) * taskMsPerByte) / splits);
  const taskRequests = busy.meter.s3.get('task');
  const getsPerTask = (taskRequests?.get ?? 0) / task(busy).invocations;
  const putsPerTask = (taskRequests?.put ?? 0) / task(busy).invocations;
  const rows: Row[] = [];
  for (const tasks of [10, 100, 1000]) {
    for (const rate of [1 * MB, 10 * MB, 100 * MB, 1024 * MB]) {
      const bytes = rate * 10;
      const processing = fixedDelay + (bytes * taskMsPerByte) / tasks;
      // Sustained over the interval: `stages` stages of `tasks` tasks every 10 s.
      const putRate = (stages * tasks * putsPerTask) / 10;
      const getRate = (stages * tasks * getsPerTask) / 10;
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
        '$/day': planeDay + perTask * stages * tasks * 8640 + (perGb * rate * 86_400) / 1024 ** 3,
        limit: limits.join(', ') || (processing > 10 * S ? 'task time' : ''),
      });
    }
  }
  return rows;
}

const describe = (r: ScenarioResult) => `${r.options.pipeline.options.name} ${r.options.intervalMs / S} s ${r.options.bytesPerSecond > 0 ? 'busy' : 'idle'}`;

/**
 * Every control plane's tables merged, one row per control plane for each case, so that they read
 * side by side; the summary is the last control plane's.
 */
export function sideBySide(models: AwsModel[]): AwsModel {
  const last = models.at(-1)!;
  const tables = last.tables.map(({ title }, t) => {
    const rows: Row[] = [];
    const length = Math.max(...models.map((m) => m.tables[t]!.rows.length));
    for (let i = 0; i < length; i++) for (const m of models) if (m.tables[t]!.rows[i]) rows.push(m.tables[t]!.rows[i]!);
    return { title, rows };
  });
  return { ...last, tables };
}

/** Prints the model's tables, then the summary line (the bench's last line when aws runs last). */
export async function benchAws(): Promise<void> {
  const models: AwsModel[] = [];
  for (const controlPlane of CONTROL_PLANES) models.push(await modelAws(controlPlane));
  const model = sideBySide(models);
  for (const { title, rows } of model.tables) printTable(title, rows);
  console.log(`\n${summaryLine(model)}`);
}
