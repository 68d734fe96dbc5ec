/**
 * The AWS cost and latency model (bench/aws): properties its figures must have whatever the
 * machine's speed. The real handlers run on the virtual clock; nothing here asserts a time.
 */
import { expect, it } from 'vitest';
import wordcount from '../../examples/wordcount.ts';
import { intervalScope, keys } from '../../core/layout.ts';
import { sampleLines } from '../../local/sample/generate.ts';
import { currentControlPlane, eventDrivenControlPlane } from '../../bench/aws/control-plane.ts';
import { costOf } from '../../bench/aws/cost.ts';
import { Deployment } from '../../bench/aws/deployment.ts';
import { sideBySide, summaryLine } from '../../bench/aws/index.ts';
import { captureOutput, runScenario } from '../../bench/aws/scenario.ts';
import type { ControlPlane } from '../../bench/aws/deployment.ts';

const S = 1000;
const MIN = 60 * S;
const idle = (intervalMs: number, durationMs: number, controlPlane: ControlPlane = currentControlPlane) =>
  runScenario({ pipeline: wordcount, controlPlane, intervalMs, durationMs, bytesPerSecond: 0 });

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

it('an idle day costs the event-driven control plane less than the current one, its driver billed a small fraction of the day', async () => {
  const [current, eventDriven] = [await idle(10 * S, 10 * MIN), await idle(10 * S, 10 * MIN, eventDrivenControlPlane)];

  expect(current.errors).toEqual([]);
  expect(eventDriven.errors).toEqual([]);
  expect(costOf(eventDriven).perDay).toBeLessThan(costOf(current).perDay);
  expect(costOf(eventDriven).driverGbSecondsPerDay).toBeLessThan(costOf(current).driverGbSecondsPerDay / 10);
});

/** The event-driven deployment with two uploads, `gapMs` apart, its handlers' output taken; samples whether a driver runs. */
async function uploadsApart(gapMs: number) {
  const deployment = new Deployment({ pipeline: wordcount, controlPlane: eventDrivenControlPlane, intervalMs: 10 * S, partitions: 4 });
  const [first, second] = [deployment.epoch + 5 * S, deployment.epoch + 5 * S + gapMs];
  deployment.upload('incoming/first.txt', sampleLines(100, 1), first);
  deployment.upload('incoming/second.txt', sampleLines(100, 2), second);
  // Halfway between watchdog ticks (each minute from the epoch), from two minutes after the first upload to the second.
  const running: number[] = [];
  for (let at = first + 2 * MIN + 25 * S; at < second; at += MIN) deployment.sim.at(at, () => running.push(deployment.driver.running));
  const errors: string[] = [];
  const restore = captureOutput({ log: () => {}, error: (r) => errors.push(String(r.msg)), metrics: () => {} });
  try {
    await deployment.begin();
    await deployment.sim.run(second + 2 * MIN);
  } finally {
    restore();
  }
  return { deployment, running, errors, second };
}

it('a dormant stream runs no driver between uploads, and an upload after dormancy is committed', async () => {
  const { deployment, running, errors, second } = await uploadsApart(10 * MIN);

  expect(errors).toEqual([]);
  expect(running.length).toBeGreaterThan(5);
  expect(running.every((n) => n === 0)).toBe(true);
  // The second upload's interval (its event time's) committed, the stream having woken for it.
  const k = Math.floor((second - deployment.epoch) / (10 * S));
  expect(await deployment.bucket.get(keys.committed(intervalScope(k)))).toBeDefined();
  // Dormant again by the end: nothing after it wakes the stream.
  expect(await deployment.bucket.get(keys.driverDormant)).toBeDefined();
});

it('the bench prints the control planes side by side, row by row, and its summary line is the last one\'s', () => {
  const table = (plane: string) => ({ title: 'cost', rows: [{ 'control plane': plane, interval: '1 s' }, { 'control plane': plane, interval: '10 s' }] });
  const current = { tables: [table('current')], idleCostAt10s: 2.3, keepsUpAt1s: false, p50EndToEndAt1s: 32_000 };
  const eventDriven = { tables: [table('new')], idleCostAt10s: 0.021, keepsUpAt1s: false, p50EndToEndAt1s: 25_165.4 };

  const model = sideBySide([current, eventDriven]);

  expect(model.tables[0]!.rows.map((r) => `${r['control plane']} ${r.interval}`)).toEqual(['current 1 s', 'new 1 s', 'current 10 s', 'new 10 s']);
  expect(summaryLine(model)).toBe('idle cost at 10 s intervals: $0.02/day; 1 s intervals keep up: no; p50 end-to-end at 1 s: 25165 ms');
});
