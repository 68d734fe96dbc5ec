import type { Clock } from '../../core/ports/clock.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';

export interface LeaseRecord {
  owner: string;
  expiresAt: number;
}

/**
 * Which driver invocation runs the stream, so that the watchdog's invocation every minute leaves
 * a live driver alone. Not a lock: it is read and then taken with a plain put, so two drivers
 * racing may both run for a while. That costs work, never correctness: every step of an interval
 * is idempotent and the engine commits one result whoever runs it. Of two racers, the one that
 * finds the other's lease at its next renewal stops.
 */
export class DriverLease {
  constructor(
    private readonly store: ObjectStore,
    private readonly clock: Clock,
    readonly owner: string,
  ) {}

  /**
   * Takes or renews the lease until `expiresAt`; false, taking nothing, while another owner's
   * lease is unexpired, unless that owner is one this driver carries on for (`heirOf`: the driver
   * whose timer woke it). Of two invocations woken by one timer (SQS delivers at least once),
   * both take it; the one that finds the other's name at its next renewal stops.
   */
  async acquire(expiresAt: number, heirOf: ReadonlySet<string> = new Set()): Promise<boolean> {
    const current = await this.read();
    if (current && current.owner !== this.owner && !heirOf.has(current.owner) && current.expiresAt > this.clock.now()) return false;
    const lease: LeaseRecord = { owner: this.owner, expiresAt };
    await this.store.put(keys.driverLease, JSON.stringify(lease));
    return true;
  }

  /** Gives the lease up, if it is still ours, so that a successor need not wait for it to expire. */
  async release(): Promise<void> {
    if ((await this.read())?.owner === this.owner) await this.store.delete(keys.driverLease);
  }

  async read(): Promise<LeaseRecord | undefined> {
    const bytes = await this.store.get(keys.driverLease);
    if (!bytes) return undefined;
    try {
      const lease = JSON.parse(Buffer.from(bytes).toString('utf8')) as Partial<LeaseRecord>;
      if (typeof lease.owner === 'string' && typeof lease.expiresAt === 'number') return { owner: lease.owner, expiresAt: lease.expiresAt };
    } catch {
      // Unreadable: no one holds it.
    }
    return undefined;
  }
}
