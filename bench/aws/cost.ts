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
}

const DAY = 86_400_000;

export function costOf(run: ScenarioResult): Cost {
  let lambda = 0;
  let driverGbSeconds = 0;
  for (const f of run.functions) {
    const gbSeconds = (f.billedMs / 1000) * (f.memoryMb / 1024);
    lambda += f.invocations * P.LAMBDA_PER_REQUEST + gbSeconds * P.LAMBDA_ARM_PER_GB_SECOND;
    if (f.role === 'driver') driverGbSeconds += gbSeconds;
  }
  const { s3, sqs } = run.meter.totals();
  const s3Cost = (s3.put + s3.list) * P.S3_PUT_LIST_PER_REQUEST + s3.get * P.S3_GET_PER_REQUEST + s3.delete * P.S3_DELETE_PER_REQUEST;
  // The event source mappings' long polls while their queues are empty, billed whether or not a message comes.
  const idlePolls = (run.eventSourceMappings * L.ESM_IDLE_POLLERS * run.options.durationMs) / L.SQS_LONG_POLL_MS;
  const sqsCost = (sqs.send + sqs.receive + sqs.delete + sqs.visibility + idlePolls) * P.SQS_PER_REQUEST;
  const total = lambda + s3Cost + sqsCost;
  const scale = DAY / run.options.durationMs;
  return { lambda, s3: s3Cost, sqs: sqsCost, total, perDay: total * scale, driverGbSecondsPerDay: driverGbSeconds * scale };
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
