/** What a simulated run costs, from its counts and billed durations at the list prices (prices.ts). */
import * as L from './latency.ts';
import * as P from './prices.ts';
import type { ScenarioResult } from './scenario.ts';

export interface Cost {
  lambda: number;
  s3: number;
  sqs: number;
  total: number;
  /** The run's cost scaled to a day of the same traffic. */
  perDay: number;
  /** Billed GB-seconds of the driver function, per day. */
  driverGbSecondsPerDay: number;
  /**
   * `perDay` by who pays it: each function (its Lambda bill and the requests it makes), 'esm'
   * (the event source mappings' receives and deletes) and 'idle long polls' (theirs on empty queues).
   */
  perDayByRole: Map<string, number>;
}

const DAY = 86_400_000;

export function costOf(run: ScenarioResult): Cost {
  const scale = DAY / run.options.durationMs;
  const byRole = new Map<string, { lambda: number; s3: number; sqs: number }>();
  const of = (role: string) => byRole.get(role) ?? (byRole.set(role, { lambda: 0, s3: 0, sqs: 0 }), byRole.get(role)!);
  let driverGbSeconds = 0;
  for (const f of run.functions) {
    const gbSeconds = (f.billedMs / 1000) * (f.memoryMb / 1024);
    of(f.role).lambda += f.invocations * P.LAMBDA_PER_REQUEST + gbSeconds * P.LAMBDA_ARM_PER_GB_SECOND;
    if (f.role === 'driver') driverGbSeconds += gbSeconds;
  }
  for (const [role, c] of run.meter.s3) of(role).s3 += (c.put + c.list) * P.S3_PUT_LIST_PER_REQUEST + c.get * P.S3_GET_PER_REQUEST + c.delete * P.S3_DELETE_PER_REQUEST;
  for (const [role, c] of run.meter.sqs) of(role).sqs += (c.send + c.receive + c.delete + c.visibility) * P.SQS_PER_REQUEST;
  // The event source mappings' long polls while their queues are empty, billed whether or not a message comes.
  of('idle long polls').sqs += ((run.eventSourceMappings * L.ESM_IDLE_POLLERS * run.options.durationMs) / L.SQS_LONG_POLL_MS) * P.SQS_PER_REQUEST;
  const sum = (part: 'lambda' | 's3' | 'sqs') => [...byRole.values()].reduce((total, c) => total + c[part], 0);
  const [lambda, s3, sqs] = [sum('lambda'), sum('s3'), sum('sqs')];
  const total = lambda + s3 + sqs;
  const perDayByRole = new Map([...byRole].map(([role, c]) => [role, (c.lambda + c.s3 + c.sqs) * scale]));
  return { lambda, s3, sqs, total, perDay: total * scale, driverGbSecondsPerDay: driverGbSeconds * scale, perDayByRole };
}

export function median(values: number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[(sorted.length - 1) >> 1]!;
}

/**
 * Whether the stream kept up: every interval that ended a processing time before the run's end
 * committed, and the commit delay did not grow from the first half of the run to the second.
 */
export function keepsUp(run: ScenarioResult): boolean {
  const { intervalMs, durationMs } = run.options;
  const delays = run.intervals.map((i) => i.committedAt - i.end);
  if (delays.length < 4) return false;
  const due = Math.floor(durationMs / intervalMs) - 1 - Math.ceil(Math.max(...delays) / intervalMs);
  const half = delays.length >> 1;
  return run.intervals.length >= due && median(delays.slice(half)) <= median(delays.slice(0, half)) + intervalMs / 2;
}
