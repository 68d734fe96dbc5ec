/**
 * The AWS cost and latency model (bench/aws): properties its figures must have whatever the
 * machine's speed. The real handlers run on the virtual clock; nothing here asserts a time.
 */
import { expect, it } from 'vitest';
import wordcount from '../../examples/wordcount.ts';
import { currentControlPlane } from '../../bench/aws/control-plane.ts';
import { costOf } from '../../bench/aws/cost.ts';
import { summaryLine } from '../../bench/aws/index.ts';
import { runScenario } from '../../bench/aws/scenario.ts';

const S = 1000;
const idle = (intervalMs: number, durationMs: number) => runScenario({ pipeline: wordcount, controlPlane: currentControlPlane, intervalMs, durationMs, bytesPerSecond: 0 });

it('an idle stream costs more a day the more intervals it runs, and never nothing while the driver is always on', async () => {
  const [every2s, every10s, every60s] = [await idle(2 * S, 60 * S), await idle(10 * S, 3 * 60 * S), await idle(60 * S, 10 * 60 * S)];

  for (const run of [every2s, every10s, every60s]) expect(run.errors).toEqual([]);
  expect(costOf(every2s).perDay).toBeGreaterThan(costOf(every10s).perDay);
  expect(costOf(every10s).perDay).toBeGreaterThan(costOf(every60s).perDay);
  // The always-on 1 GB driver bills about a GB-second per second of the day, data or not.
  expect(costOf(every60s).driverGbSecondsPerDay).toBeGreaterThan(0.9 * 86_400);
  expect(costOf(every60s).perDay).toBeGreaterThan(1);
});

it('an idle interval commits without tasks, yet the current control plane pays requests for it: GET, PUT and a LIST per poll', async () => {
  const run = await idle(10 * S, 2 * 60 * S);

  const intervals = run.intervals.length;
  const { s3 } = run.meter.totals();
  expect(intervals).toBeGreaterThanOrEqual(10);
  for (const perInterval of [s3.get / intervals, s3.put / intervals]) expect(perInterval).toBeGreaterThan(5), expect(perInterval).toBeLessThan(200);
  expect(s3.list / intervals).toBeGreaterThan(3);
  expect(s3.list / intervals).toBeLessThan(100);
  expect(run.functions.find((f) => f.role === 'task')!.invocations).toBe(0);
});

it('uploads come out committed, each with an end-to-end latency after its upload', async () => {
  const run = await runScenario({ pipeline: wordcount, controlPlane: currentControlPlane, intervalMs: 10 * S, durationMs: 60 * S, bytesPerSecond: 10_000 });

  expect(run.errors).toEqual([]);
  expect(run.endToEnd.length).toBeGreaterThan(30);
  expect(Math.min(...run.endToEnd)).toBeGreaterThan(0);
  // One upload a second, each notified 1 s later: the last one's notification falls after the run.
  expect(run.functions.find((f) => f.role === 'ingest')!.invocations).toBe(59);
});

it('the summary line has the exact format the issue asks for', () => {
  expect(summaryLine({ idleCostAt10s: 4.1349, keepsUpAt1s: false, p50EndToEndAt1s: 45_927.6 })).toBe(
    'idle cost at 10 s intervals: $4.13/day; 1 s intervals keep up: no; p50 end-to-end at 1 s: 45928 ms',
  );
  expect(summaryLine({ idleCostAt10s: 0.03, keepsUpAt1s: true, p50EndToEndAt1s: 1200 })).toMatch(/^idle cost at 10 s intervals: \$\d+\.\d\d\/day; 1 s intervals keep up: (yes|no); p50 end-to-end at 1 s: \d+ ms$/);
});
