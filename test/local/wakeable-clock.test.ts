import { describe, expect, it } from 'vitest';
import type { Clock } from '../../core/ports/clock.ts';
import { WakeableClock } from '../../local/runtime/wakeable-clock.ts';

/** A clock whose sleeps end only when the test says so, so that what ends a wait early shows. */
function manualClock(): Clock & { elapse(): void } {
  const sleepers: (() => void)[] = [];
  return {
    now: () => 0,
    sleep: () => new Promise<void>((resolve) => sleepers.push(resolve)),
    elapse: () => sleepers.splice(0).forEach((resolve) => resolve()),
  };
}

/** Whether `promise` has settled once pending callbacks have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe('WakeableClock, the embedded runtime change feed', () => {
  it('a wake ends a wait for a change and a sleep under way', async () => {
    const clock = new WakeableClock(manualClock());
    const change = clock.waitForChange(25);
    const sleep = clock.sleep(100);

    clock.wake();

    expect(await settled(change)).toBe(true);
    expect(await settled(sleep)).toBe(true);
  });

  it('a wake while no one waits (the driver is polling) ends the next wait at once, and only that one', async () => {
    const inner = manualClock();
    const clock = new WakeableClock(inner);

    clock.wake();
    const next = clock.waitForChange(25);
    const after = clock.waitForChange(25);

    expect(await settled(next)).toBe(true);
    expect(await settled(after)).toBe(false);
    inner.elapse();
    expect(await settled(after)).toBe(true);
  });

  it('a wake that ended a wait is not kept for the next one', async () => {
    const inner = manualClock();
    const clock = new WakeableClock(inner);
    const first = clock.waitForChange(25);

    clock.wake();
    await first;
    const second = clock.waitForChange(25);

    expect(await settled(second)).toBe(false);
    inner.elapse();
    expect(await settled(second)).toBe(true);
  });

  it('a plain sleep neither takes nor keeps a wake: it is not a look at the store', async () => {
    const inner = manualClock();
    const clock = new WakeableClock(inner);
    const sleep = clock.sleep(100);

    clock.wake();

    expect(await settled(sleep)).toBe(true);
    expect(await settled(clock.waitForChange(25))).toBe(true);
  });
});
