/**
 * Where in the user's own code an error was thrown: the frames of its stack (or of its first cause
 * that has some) in files of the user's, not dstream's (dist/, or a compiled pipeline before its
 * source map), a dependency's (node_modules/) or Node's.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../package-files.ts';

export interface UserFrame {
  /** file:line:column */
  location: string;
  /** The function's name, when it has one. */
  fn?: string;
}

export function userFrames(error: unknown, limit: number): UserFrame[] {
  const skipped = [path.join(packageRoot(), 'dist') + path.sep, `${path.sep}node_modules${path.sep}`, `${path.sep}.dstream${path.sep}pipelines${path.sep}`];
  for (let e = error; e instanceof Error; e = e.cause) {
    const frames = (e.stack ?? '').split('\n').flatMap((line): UserFrame[] => {
      const m = /^\s+at (?:(.+?) \()?(.+?):(\d+):(\d+)\)?$/.exec(line);
      if (!m) return [];
      const [, fn, where, row, col] = m as unknown as [string, string | undefined, string, string, string];
      const file = where.startsWith('file://') ? fileURLToPath(where) : where;
      if (!path.isAbsolute(file) || skipped.some((s) => file.startsWith(s) || file.includes(s))) return [];
      return [{ location: `${file}:${row}:${col}`, ...(fn && !fn.includes('<anonymous>') ? { fn } : {}) }];
    });
    if (frames.length) return frames.slice(0, limit);
  }
  return [];
}

export function formatFrame(frame: UserFrame): string {
  return frame.fn ? `${frame.location} (${frame.fn})` : frame.location;
}
