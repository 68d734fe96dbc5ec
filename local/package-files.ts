import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The runtime runs from its TypeScript sources in this repository and from dist/ once built and
 * installed; these find its files either way.
 */

/** The module `name` beside `moduleUrl`, with the same extension (`.ts` from sources, `.js` built). */
export function siblingModule(moduleUrl: string, name: string): string {
  const file = fileURLToPath(moduleUrl);
  return path.join(path.dirname(file), `${name}${path.extname(file)}`);
}

/** The package's root folder: the nearest above this file holding package.json. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`dstream: no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  return dir;
}
