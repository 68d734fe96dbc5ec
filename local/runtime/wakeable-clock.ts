import type { Clock } from '../../core/ports/clock.ts';
import type { ChangeFeed } from '../../core/ports/change-feed.ts';

/**
 * A clock whose sleeps end early when something happened: the workers tell the driver a task
 * finished, so it looks at once instead of at its next poll. Waking is only a hint; the driver
 * still reads progress from the store. The embedded runtime's change feed (the AWS runtime's is
 * the driver events queue).
 *
 * A wake that comes while no one waits for a change (the driver is busy looking at the store) is
 * kept for the next waitForChange, which then returns at once: the look under way may have been
 * too early to see what the wake tells of, and the scheduler polls only after a wait. Without
 * that, a task settling during a poll cost a whole poll interval, most often the last task of a
 * stage, as the stage's other tasks keep the scheduler polling. A kept wake that turns out stale
 * costs one look. With several drivers' schedulers waiting in turn (intervals in flight), the
 * first to wait takes it; the others wait as before.
 */
export class WakeableClock implements Clock, ChangeFeed {
  private readonly sleepers = new Set<() => void>();
  private readonly changeWaiters = new Set<() => void>();
  private pendingChange = false;

  constructor(private readonly inner: Clock) {}

  now(): number {
    return this.inner.now();
  }

  sleep(ms: number): Promise<void> {
    return this.wait(ms, this.sleepers);
  }

  waitForChange(ms: number): Promise<void> {
    if (this.pendingChange) {
      this.pendingChange = false;
      return Promise.resolve();
    }
    return this.wait(ms, this.changeWaiters);
  }

  wake(): void {
    if (this.changeWaiters.size === 0) this.pendingChange = true;
    for (const waiter of [...this.sleepers, ...this.changeWaiters]) waiter();
  }

  private wait(ms: number, waiters: Set<() => void>): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        waiters.delete(done);
        resolve();
      };
      waiters.add(done);
      void this.inner.sleep(ms).then(done);
    });
  }
}
