import type { ObjectStore } from '../ports/object-store.ts';
import { readJson } from '../ports/object-store.ts';
import { keys } from '../layout.ts';

/**
 * The stream's durable clock and position. Interval `base` starts at `epoch`, and each lasts
 * `intervalMs`; `next` is the first interval not committed. Everyone who maps a time to an
 * interval (driver, ingest, the local runtime) reads the length from here, never from its own
 * configuration, so all agree even while a new interval length is being deployed.
 */
export interface DriverProgress {
  next: number;
  base: number;
  epoch: number;
  intervalMs: number;
}

/**
 * The progress pointer; a stream without one starts now, at interval 0. Whichever driver or
 * ingest comes first creates it; every later caller, in any process, reads the same epoch.
 */
export async function readProgress(store: ObjectStore, now: number, intervalMs: number): Promise<DriverProgress> {
  const existing = await readJson<Omit<DriverProgress, 'base'> & { base?: number }>(store, keys.driverProgress);
  // A pointer written before the clock had a base counts from interval 0.
  if (existing) return { ...existing, base: existing.base ?? 0 };
  const fresh: DriverProgress = { next: 0, base: 0, epoch: now, intervalMs };
  await store.putIfAbsent(keys.driverProgress, JSON.stringify(fresh));
  return (await readJson<DriverProgress>(store, keys.driverProgress))!;
}

/** When interval k ends. */
export function intervalEnd(progress: DriverProgress, k: number): number {
  return progress.epoch + (k - progress.base + 1) * progress.intervalMs;
}

/** The interval in progress at time t (never before the base). */
export function intervalAt(progress: DriverProgress, t: number): number {
  return progress.base + Math.max(0, Math.floor((t - progress.epoch) / progress.intervalMs));
}

/**
 * The clock with a new interval length from the next uncommitted interval on: it starts where
 * the old clock would have started it, so committed intervals keep their times and no interval
 * is skipped or squeezed.
 */
export function rebased(progress: DriverProgress, intervalMs: number): DriverProgress {
  return { next: progress.next, base: progress.next, epoch: intervalEnd(progress, progress.next - 1), intervalMs };
}
