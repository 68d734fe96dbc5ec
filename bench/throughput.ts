/**
 * The engine against the practical limit on this machine: a hand-written single-process loop
 * doing the same work over the same bytes. Same input, same outputs written, one run.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { mb, type Row } from './table.ts';
import { BENCH_DIR, freshRoot, sizeOf, stagedFiles, stagedText, timedReplay } from './workspace.ts';
import type { PoolStats } from '../local/runtime/worker-pool.ts';
import { breakdownRow, breakdowns } from './breakdown.ts';
import type { IntervalReport } from '../core/streaming/driver.ts';
import type { IntervalBreakdown } from '../core/streaming/breakdown.ts';

const GREP_PATTERN = 'error';

/** Per-interval times of a run; interval 0 warms up the JIT and is left out of the figures. */
type Timed = { records: number; ms: number[] };

/** WordCount by hand: per-interval counts and running totals, written as JSON lines. */
async function handWordCount(intervals: string[][], out: string): Promise<Timed> {
  const totals = new Map<string, number>();
  let records = 0;
  const ms: number[] = [];
  await mkdir(out, { recursive: true });
  for (let k = 0; k < intervals.length; k++) {
    const started = performance.now();
    const counts = new Map<string, number>();
    for (const file of intervals[k]!) {
      const lines = (await readFile(file, 'utf8')).split('\n');
      for (const line of lines) {
        if (line === '') continue;
        records++;
        for (const w of line.split(/\s+/)) if (w) counts.set(w, (counts.get(w) ?? 0) + 1);
      }
    }
    for (const [w, n] of counts) totals.set(w, (totals.get(w) ?? 0) + n);
    await writeFile(path.join(out, `counts-${k}`), [...counts].map((e) => JSON.stringify(e)).join('\n'));
    await writeFile(path.join(out, `totals-${k}`), [...totals].map((e) => JSON.stringify(e)).join('\n'));
    ms.push(performance.now() - started);
    if (k === 0) records = 0;
  }
  return { records, ms };
}

async function handGrep(intervals: string[][], out: string): Promise<Timed> {
  let records = 0;
  const ms: number[] = [];
  await mkdir(out, { recursive: true });
  for (let k = 0; k < intervals.length; k++) {
    const started = performance.now();
    const matches: string[] = [];
    for (const file of intervals[k]!) {
      for (const line of (await readFile(file, 'utf8')).split('\n')) {
        if (line === '') continue;
        records++;
        if (line.includes(GREP_PATTERN)) matches.push(line);
      }
    }
    await writeFile(path.join(out, `matches-${k}`), matches.join('\n'));
    await writeFile(path.join(out, `count-${k}`), String(matches.length));
    ms.push(performance.now() - started);
    if (k === 0) records = 0;
  }
  return { records, ms };
}

/**
 * `totalMb` of input over four measured intervals, after a first one (a fifth more input) that
 * warms up the JIT of the loop and of the worker processes alike and is not counted. Beside the
 * throughput rows, where each dstream run's time went (bench/breakdown.ts), from the same runs.
 */
export async function benchThroughput(totalMb: number): Promise<{ rows: Row[]; breakdown: Row[] }> {
  const measured = 4;
  const { dir } = await stagedText('throughput', measured + 1, 4, totalMb / measured);
  const files = await stagedFiles(dir);
  let bytes = 0;
  for (const interval of files.slice(1)) for (const f of interval) bytes += await sizeOf(f);
  const rows: Row[] = [];
  const breakdown: Row[] = [];
  for (const [name, example, hand] of [
    ['WordCount', 'examples/wordcount.ts', handWordCount],
    ['Grep', 'examples/grep.ts', handGrep],
  ] as const) {
    const timed = await hand(files, path.join(BENCH_DIR, 'hand', name));
    rows.push(row(`${name}: hand-written loop, 1 thread`, timed.records, bytes, sum(timed.ms.slice(1))));
    // One interval at a time, and with 2 workers also two in flight (the next one's map stage under this one's reduce side).
    for (const [workers, inFlight] of [[1, 1], [2, 1], [2, 2]] as const) {
      const root = await freshRoot(`${name}-${workers}-${inFlight}`);
      const { reports, openMs, runtime } = await timedReplay({ pipelinePath: example, root, workers, partitions: 4 * workers, maxIntervalsInFlight: inFlight }, dir);
      const steady = reports.slice(1);
      const records = steady.reduce((n, r) => n + r.recordsIn, 0);
      const run = `${name}: dstream, ${workers} worker${workers > 1 ? 's' : ''}, ${inFlight} in flight`;
      const all = await breakdowns(runtime.store, reports);
      rows.push(row(run, records, bytes, processingWallMs(steady, all.slice(1))));
      breakdown.push(breakdownRow(run, openMs, all));
    }
  }
  return { rows, breakdown };
}

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

/**
 * The wall time intervals took, each from the start of its processing to its commit: with
 * intervals in flight these overlap, and time two intervals share counts once (one after another,
 * it is the sum of their processing times).
 */
function processingWallMs(reports: IntervalReport[], all: IntervalBreakdown[]): number {
  const spans = reports.map((r, i) => {
    const end = all[i]!.at.committed!;
    return [end - r.processingMs, end] as const;
  });
  spans.sort((a, b) => a[0] - b[0]);
  let total = 0;
  let reached = -Infinity;
  for (const [start, end] of spans) {
    total += Math.max(0, end - Math.max(start, reached));
    reached = Math.max(reached, end);
  }
  return total;
}

function row(name: string, records: number, bytes: number, ms: number): Row {
  return { run: name, records, MB: mb(bytes), seconds: ms / 1000, 'records/s': records / (ms / 1000), 'MB/s': mb(bytes) / (ms / 1000) };
}

/**
 * A task streams its split: its memory should grow with what it keeps (distinct words), not
 * with the split. One worker, one split per interval, splits of growing size; the first, tiny
 * interval shows what the worker process costs on its own.
 */
export async function benchMemory(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const splitMb of [0.01, 16, 64]) {
    const { dir } = await stagedText(`memory-${splitMb}`, 1, 1, splitMb);
    const { runtime } = await timedReplay({ pipelinePath: 'examples/wordcount.ts', root: await freshRoot(`memory-${splitMb}`), workers: 1, partitions: 1 }, dir);
    const stats = (runtime.pool as { stats: PoolStats }).stats;
    const split = Math.max(...stats.usage.map((u) => u.splitBytes));
    rows.push({ 'split MB': mb(split), 'worker peak RSS MB': mb(Math.max(...stats.usage.map((u) => u.maxRss))) });
  }
  const base = rows[0]!['worker peak RSS MB'] as number;
  for (const row of rows.slice(1)) row['(peak - idle worker) / split'] = ((row['worker peak RSS MB'] as number) - base) / (row['split MB'] as number);
  return rows;
}
