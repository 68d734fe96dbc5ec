import type { Clock } from '../../core/ports/clock.ts';
import type { ChangeFeed } from '../../core/ports/change-feed.ts';

/**
 * A clock whose sleeps end early when something happened: the workers tell the driver a task
 * finished, so it looks at once instead of at its next poll. Waking is only a hint; the driver
 * still reads progress from the store. The embedded runtime's change feed (the AWS runtime's is
 * the driver events queue).
 */
export class WakeableClock implements Clock, ChangeFeed {
  private waiters = new Set<() => void>();

  constructor(private readonly inner: Clock) {}

  now(): number {
    return this.inner.now();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        resolve();
      };
      this.waiters.add(done);
      void this.inner.sleep(ms).then(done);
    });
  }

  waitForChange(ms: number): Promise<void> {
    return this.sleep(ms);
  }

  wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
