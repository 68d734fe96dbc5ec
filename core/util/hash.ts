import { createHash } from 'node:crypto';

/** A short, stable content hash for fingerprints and names. */
export function shortHash(text: string, length = 16): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/** Identity of a user function: its source text. Two builds of the same code agree. */
export function functionHash(fn: Function): string {
  return shortHash(fn.toString(), 12);
}
