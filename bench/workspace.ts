import { mkdir, readdir, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sampleLines } from '../local/sample/generate.ts';
import { EmbeddedRuntime, type EmbeddedOptions } from '../local/runtime/embedded-runtime.ts';
import type { IntervalReport } from '../core/streaming/driver.ts';

export const BENCH_DIR = path.resolve('.bench');

/** Staged text: `intervals` folders of `files` files, `mbPerInterval` in all per interval. */
export async function stagedText(name: string, intervals: number, files: number, mbPerInterval: number): Promise<{ dir: string; bytes: number }> {
  const dir = path.join(BENCH_DIR, 'staged', name);
  await rm(dir, { recursive: true, force: true });
  let bytes = 0;
  // Sample lines average about 44 bytes.
  const linesPerFile = Math.ceil((mbPerInterval * 1024 * 1024) / files / 44);
  for (let k = 0; k < intervals; k++) {
    await mkdir(path.join(dir, String(k)), { recursive: true });
    for (let f = 0; f < files; f++) {
      const text = sampleLines(linesPerFile, k * 100 + f + 1);
      await writeFile(path.join(dir, String(k), `part-${f}.txt`), text);
      bytes += Buffer.byteLength(text);
    }
  }
  return { dir, bytes };
}

export async function stagedFiles(dir: string): Promise<string[][]> {
  const out: string[][] = [];
  for (const k of (await readdir(dir)).map(Number).sort((a, b) => a - b)) {
    out.push((await readdir(path.join(dir, String(k)))).sort().map((f) => path.join(dir, String(k), f)));
  }
  return out;
}

export async function freshRoot(name: string): Promise<string> {
  const root = path.join(BENCH_DIR, 'roots', name);
  await rm(root, { recursive: true, force: true });
  return root;
}

/**
 * Replays a staged directory; the time counted is the intervals' processing, not the staging
 * copy. `openMs`: the runtime's start-up (pipeline loaded, workers ready).
 */
export async function timedReplay(options: EmbeddedOptions, staged: string): Promise<{ reports: IntervalReport[]; processingMs: number; openMs: number; runtime: EmbeddedRuntime }> {
  const opening = performance.now();
  const runtime = await EmbeddedRuntime.open(options);
  const openMs = performance.now() - opening;
  try {
    const reports = await runtime.replay(staged);
    return { reports, processingMs: reports.reduce((n, r) => n + r.processingMs, 0), openMs, runtime };
  } finally {
    await runtime.close();
  }
}

export async function sizeOf(file: string): Promise<number> {
  return (await stat(file)).size;
}
