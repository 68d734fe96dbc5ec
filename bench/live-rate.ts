/**
 * The paper's measure of throughput at a latency target: the highest input rate at which the live
 * runtime with 1-second intervals keeps each interval's processing under the interval, so the
 * scheduling delay stays flat.
 */
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { EmbeddedRuntime } from '../local/runtime/embedded-runtime.ts';
import { sampleLines } from '../local/sample/generate.ts';
import type { IntervalReport } from '../core/streaming/driver.ts';
import type { Row } from './table.ts';
import { freshRoot } from './workspace.ts';

async function trial(mbPerSecond: number, seconds: number): Promise<{ reports: IntervalReport[]; sustained: boolean }> {
  const root = await freshRoot(`live-${mbPerSecond}`);
  const runtime = await EmbeddedRuntime.open({ pipelinePath: 'examples/wordcount.ts', root, workers: 2, partitions: 4, intervalMs: 1000 });
  const incoming = path.join(root, 'incoming');
  const staging = path.join(root, 'upload-staging');
  await mkdir(incoming, { recursive: true });
  await mkdir(staging, { recursive: true });
  // Ten uploads a second, each written aside then renamed in: an atomic upload.
  const chunk = sampleLines(Math.ceil((mbPerSecond * 1024 * 1024) / 10 / 44), mbPerSecond);
  let stop = false;
  const feeder = (async () => {
    for (let i = 0; !stop; i++) {
      const tmp = path.join(staging, `u${i}.txt`);
      await writeFile(tmp, chunk);
      await rename(tmp, path.join(incoming, `u${i}.txt`));
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  let reports: IntervalReport[] = [];
  try {
    reports = await runtime.live({ intervals: seconds });
  } finally {
    stop = true;
    await feeder;
    await runtime.close();
  }
  // The first interval starts mid-way; judge the steady ones.
  const steady = reports.slice(2);
  const delays = steady.map((r) => r.schedulingDelayMs);
  // With intervals in flight one may take longer than an interval and the stream still keep up: the scheduling delay says.
  const inFlight = runtime.config.maxIntervalsInFlight ?? 1;
  const sustained = steady.every((r) => r.processingMs < 1000 * inFlight) && delays[delays.length - 1]! <= delays[0]! + 250;
  return { reports, sustained };
}

export async function benchLiveRate(): Promise<Row[]> {
  const rows: Row[] = [];
  for (const rate of [8, 16, 32, 48, 64, 96]) {
    const { reports, sustained } = await trial(rate, 8);
    const steady = reports.slice(2);
    rows.push({
      'input MB/s': rate,
      'mean processing ms': Math.round(steady.reduce((n, r) => n + r.processingMs, 0) / steady.length),
      'max processing ms': Math.max(...steady.map((r) => r.processingMs)),
      'scheduling delay first..last ms': `${steady[0]?.schedulingDelayMs}..${steady[steady.length - 1]?.schedulingDelayMs}`,
      'records/s': Math.round(steady.reduce((n, r) => n + r.recordsIn, 0) / steady.length),
      'keeps up': sustained ? 'yes' : 'no',
    });
    if (!sustained) break;
  }
  return rows;
}
