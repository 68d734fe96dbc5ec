/**
 * What the CLI writes, and how: colour and a live progress line only on a terminal (and never
 * with NO_COLOR for colour), plain lines when piped.
 */
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { readJson } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';
import { readIntervalProgress } from '../../core/streaming/status.ts';
import { formatProgress, plain, type Style } from './format.ts';

export interface Io {
  out: NodeJS.WritableStream & { isTTY?: boolean };
  err: NodeJS.WritableStream & { isTTY?: boolean };
  env: NodeJS.ProcessEnv;
}

export const processIo = (): Io => ({ out: process.stdout, err: process.stderr, env: process.env });

/** https://no-color.org: present and not empty turns colour off. */
export function colourFor(stream: Io['out'], env: NodeJS.ProcessEnv): Style {
  if (!stream.isTTY || (env.NO_COLOR !== undefined && env.NO_COLOR !== '') || env.TERM === 'dumb') return plain;
  const sgr = (on: number, off: number) => (s: string) => `\x1b[${on}m${s}\x1b[${off}m`;
  return { bold: sgr(1, 22), dim: sgr(2, 22), red: sgr(31, 39), yellow: sgr(33, 39), green: sgr(32, 39) };
}

const CLEAR_LINE = '\r\x1b[K';
const PROGRESS_POLL_MS = 250;

/** Standard output and error as the commands use them. */
export class Terminal {
  readonly style: Style;
  readonly errStyle: Style;
  private progressShown = false;

  constructor(readonly io: Io) {
    this.style = colourFor(io.out, io.env);
    this.errStyle = colourFor(io.err, io.env);
  }

  get interactive(): boolean {
    return !!this.io.out.isTTY;
  }

  line(text: string): void {
    this.clearProgress();
    this.io.out.write(`${text}\n`);
  }

  error(text: string): void {
    this.clearProgress();
    this.io.err.write(`${text}\n`);
  }

  /** Redraws the progress line in place; only on a terminal. */
  progress(text: string | undefined): void {
    if (!this.interactive) return;
    if (text === undefined) return this.clearProgress();
    this.io.out.write(`${CLEAR_LINE}${text}`);
    this.progressShown = true;
  }

  private clearProgress(): void {
    if (!this.progressShown) return;
    this.io.out.write(CLEAR_LINE);
    this.progressShown = false;
  }

  /**
   * On a terminal, shows the tasks done of each stage of the interval being run, read from the
   * store every quarter second; returns what stops it. Piped, does nothing.
   */
  followProgress(store: ObjectStore): () => void {
    if (!this.interactive) return () => {};
    let busy = false;
    let stopped = false;
    const timer = setInterval(async () => {
      if (busy) return;
      busy = true;
      try {
        const next = (await readJson<{ next: number }>(store, keys.driverProgress))?.next;
        const running = next === undefined ? undefined : await readIntervalProgress(store, next);
        if (!stopped) this.progress(running && formatProgress(running, this.style));
      } catch {
        // A listing racing the driver's garbage collection: the next tick reads again.
      } finally {
        busy = false;
      }
    }, PROGRESS_POLL_MS);
    timer.unref();
    return () => {
      stopped = true;
      clearInterval(timer);
      this.clearProgress();
    };
  }
}
