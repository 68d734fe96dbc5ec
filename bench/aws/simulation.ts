/**
 * A discrete-event simulation on a virtual clock: the real handlers run in this process, every
 * wait they make (a poll, a sleep to an interval's end, a modelled request) is a timer on the
 * virtual clock, and the clock jumps to the next timer once nothing can run. So hours of pipeline
 * time pass in seconds. Who runs is an actor (one Lambda invocation, a producer); the CPU time an
 * actor burns between two waits is measured and charged to it, on the virtual clock too.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import type { Clock } from '../../core/ports/clock.ts';

/** Who runs: the CPU it burns is measured, and on the virtual clock scaled by `cpuScale` (slower CPU: > 1). */
export class Actor {
  busyMs = 0;
  /** Real time at which this actor last resumed or was last charged. */
  mark = 0;
  constructor(
    readonly role: string,
    readonly cpuScale = 1,
  ) {}
}

interface Timer {
  at: number;
  seq: number;
  fire: () => void;
}

export class Simulation implements Clock {
  private readonly timers: Timer[] = [];
  private readonly current = new AsyncLocalStorage<Actor>();
  private seq = 0;
  /** Bumped by every wait and every event: no change over a turn of the event loop means all actors wait. */
  private activity = 0;

  constructor(public time: number) {}

  now(): number {
    return this.time;
  }

  /** The actor running now, if any (undefined in the simulation's own code). */
  actor(): Actor | undefined {
    return this.current.getStore();
  }

  /** Waits `ms` of virtual time, after the CPU time the calling actor burnt since it last waited. */
  sleep(ms: number): Promise<void> {
    const busy = this.charge();
    const actor = this.actor();
    return new Promise((resolve) =>
      this.push(this.time + busy + Math.max(0, ms), () => {
        if (actor) actor.mark = performance.now();
        resolve();
      }),
    );
  }

  /**
   * Waits `ms` of virtual time like `sleep`, or less: until `wake` is called (by anyone, any
   * number of times). A long poll's wait for a message.
   */
  interruptibleSleep(ms: number): { done: Promise<void>; wake: () => void } {
    const busy = this.charge();
    const actor = this.actor();
    let resolve!: () => void;
    const done = new Promise<void>((r) => (resolve = r));
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      if (actor) actor.mark = performance.now();
      resolve();
    };
    this.push(this.time + busy + Math.max(0, ms), finish);
    return { done, wake: () => this.push(this.time, finish) };
  }

  /** Runs `fn` as `actor` at virtual time `at`. The promise settles with it. */
  spawn<T>(actor: Actor, at: number, fn: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.push(at, () => {
        actor.mark = performance.now();
        this.current.run(actor, () => fn().then((v) => (this.charge(), resolve(v)), (e: unknown) => (this.charge(), reject(e))));
      });
    });
  }

  /** Calls `fn` (simulation code, no actor) at virtual time `at`. */
  at(at: number, fn: () => void): void {
    this.push(Math.max(at, this.time), fn);
  }

  /** Runs events in time order until none is left at or before `until`; the clock ends at `until`. */
  async run(until: number): Promise<void> {
    for (;;) {
      await this.quiesce();
      const next = this.timers[0];
      if (!next || next.at > until) break;
      this.pop();
      this.time = Math.max(this.time, next.at);
      this.activity++;
      next.fire();
    }
    this.time = Math.max(this.time, until);
  }

  /** Real time the calling actor burnt since its last wait, added to its busy time; virtual ms to charge. */
  private charge(): number {
    this.activity++;
    const actor = this.current.getStore();
    if (!actor) return 0;
    const now = performance.now();
    const burnt = now - actor.mark;
    actor.mark = now;
    actor.busyMs += burnt;
    return burnt * actor.cpuScale;
  }

  /** Lets every actor run until all wait on the virtual clock (the handlers do no real I/O here). */
  private async quiesce(): Promise<void> {
    for (let quiet = 0; quiet < 2; ) {
      const before = this.activity;
      await new Promise((r) => setImmediate(r));
      quiet = this.activity === before ? quiet + 1 : 0;
    }
  }

  private push(at: number, fire: () => void): void {
    const timer = { at, seq: this.seq++, fire };
    const heap = this.timers;
    heap.push(timer);
    for (let i = heap.length - 1; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private pop(): void {
    const heap = this.timers;
    const last = heap.pop()!;
    if (heap.length === 0) return;
    heap[0] = last;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
      if (m === i) return;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  }
}

const before = (a: Timer, b: Timer) => a.at < b.at || (a.at === b.at && a.seq < b.seq);
