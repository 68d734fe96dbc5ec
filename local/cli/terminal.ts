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
  out: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
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
  /** The progress line on screen now, if any. */
  private progressShown: string | undefined;

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
    if (text === this.progressShown) return;
    this.io.out.write(`${CLEAR_LINE}${text}`);
    this.progressShown = text;
  }

  private clearProgress(): void {
    if (this.progressShown === undefined) return;
    this.io.out.write(CLEAR_LINE);
    this.progressShown = undefined;
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
        let text = running && formatProgress(running, this.style);
        // Redrawn in place only while it fits on one line: a wrapped line cannot be cleared.
        const width = (this.io.out.columns || 80) - 1;
        if (running && formatProgress(running, plain).length > width) text = formatProgress(running, plain).slice(0, width);
        if (!stopped) this.progress(text);
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
