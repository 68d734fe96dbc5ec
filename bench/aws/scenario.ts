/**
 * One simulated run: a deployment, a producer's uploads, a stretch of virtual time; what it cost
 * (counts and billed durations) and how fast it answered (each interval's commit, each upload's
 * end-to-end latency). The handlers' logs and metrics, CloudWatch's in AWS, are read here.
 */
import type { Pipeline } from '../../core/graph/pipeline.ts';
import { sampleLines } from '../../local/sample/generate.ts';
import { Deployment, type ControlPlane, type LambdaFunction } from './deployment.ts';
import type { Meter } from './services.ts';

export interface ScenarioOptions {
  pipeline: Pipeline;
  controlPlane: ControlPlane;
  intervalMs: number;
  /** Virtual time to run. */
  durationMs: number;
  /** Input, bytes per second, as one upload a second; 0 for an idle stream. */
  bytesPerSecond: number;
  partitions?: number;
  taskConcurrency?: number;
  /** See DeploymentOptions. */
  notificationMs?: number;
  fanOutAll?: boolean;
}

export interface FunctionUse {
  role: string;
  memoryMb: number;
  invocations: number;
  coldStarts: number;
  billedMs: number;
  busyMs: number;
  errors: number;
}

export interface ScenarioResult {
  options: ScenarioOptions;
  functions: FunctionUse[];
  meter: Meter;
  /** Intervals committed: when each interval ended and when its commit was published. */
  intervals: { interval: number; end: number; committedAt: number }[];
  /** Upload to committed output, ms, of each upload whose interval committed within the run. */
  endToEnd: number[];
  uploadedBytes: number;
  /** Event source mappings on SQS queues, each long-polling its queue all day (cost.ts). */
  eventSourceMappings: number;
  /** Error records the handlers logged: a model run that fails is not a figure. */
  errors: string[];
  realMs: number;
}

const SECOND = 1000;

export async function runScenario(options: ScenarioOptions): Promise<ScenarioResult> {
  const realStart = performance.now();
  const deployment = new Deployment({ ...options, partitions: options.partitions ?? 4 });
  const uploads = new Map<string, number>();
  let uploadedBytes = 0;
  if (options.bytesPerSecond > 0) {
    // Sample lines average about 44 bytes; one upload in the middle of each second.
    const lines = Math.max(1, Math.round(options.bytesPerSecond / 44));
    for (let s = 0; s * SECOND < options.durationMs; s++) {
      const text = sampleLines(lines, s + 1);
      const key = `incoming/s${s}.txt`;
      const at = deployment.epoch + s * SECOND + SECOND / 2;
      uploads.set(key, at);
      uploadedBytes += Buffer.byteLength(text);
      deployment.upload(key, text, at);
    }
  }
  const admitted = new Map<string, number>();
  const commits = new Map<number, number>();
  const errors: string[] = [];
  const restore = captureOutput({
    log: (record) => {
      if (typeof record.key === 'string' && typeof record.interval === 'number' && String(record.msg).startsWith('admitted')) admitted.set(record.key, record.interval);
    },
    error: (record) => errors.push(String(record.msg ?? JSON.stringify(record))),
    metrics: (line) => {
      if (typeof line.interval === 'number') commits.set(line.interval, (line._aws as { Timestamp: number }).Timestamp);
    },
  });
  try {
    await deployment.begin();
    await deployment.sim.run(deployment.epoch + options.durationMs);
  } finally {
    restore();
  }
  const intervals = [...commits].sort((a, b) => a[0] - b[0]).map(([interval, committedAt]) => ({ interval, end: deployment.epoch + (interval + 1) * options.intervalMs, committedAt }));
  const endToEnd: number[] = [];
  for (const [key, interval] of admitted) {
    const committedAt = commits.get(interval);
    if (committedAt !== undefined) endToEnd.push(committedAt - uploads.get(key)!);
  }
  const end = deployment.sim.now();
  const use = (f: LambdaFunction<unknown>): FunctionUse => ({ role: f.role, memoryMb: f.memoryMb, invocations: f.invocations, coldStarts: f.coldStarts, billedMs: f.billedUntil(end), busyMs: f.busyMs, errors: f.errors });
  return {
    options,
    functions: [use(deployment.driver), use(deployment.task), use(deployment.ingest)],
    meter: deployment.meter,
    intervals,
    endToEnd,
    uploadedBytes,
    eventSourceMappings: deployment.mappings.length,
    errors,
    realMs: performance.now() - realStart,
  };
}

type LogRecord = Record<string, unknown>;

/**
 * Takes the handlers' console records and stdout metric lines (EMF) for the run, so that they
 * feed the model rather than the bench's output. Returns the function that puts things back.
 */
export function captureOutput(sinks: { log: (r: LogRecord) => void; error: (r: LogRecord) => void; metrics: (line: LogRecord) => void }): () => void {
  const saved = { debug: console.debug, info: console.info, warn: console.warn, error: console.error, write: process.stdout.write };
  const asRecord = (value: unknown): LogRecord => (typeof value === 'object' && value !== null ? (value as LogRecord) : { msg: String(value) });
  console.debug = () => {};
  console.info = (record: unknown) => sinks.log(asRecord(record));
  console.warn = (record: unknown) => sinks.log(asRecord(record));
  console.error = (record: unknown) => sinks.error(asRecord(record));
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    const text = String(chunk);
    if (text.startsWith('{"_aws"')) {
      for (const line of text.split('\n')) if (line) sinks.metrics(JSON.parse(line) as LogRecord);
      return true;
    }
    return (saved.write as (...a: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
  }) as typeof process.stdout.write;
  return () => {
    Object.assign(console, { debug: saved.debug, info: saved.info, warn: saved.warn, error: saved.error });
    process.stdout.write = saved.write;
  };
}
