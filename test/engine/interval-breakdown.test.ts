/**
 * Where an interval's time went, from its markers and its tasks' timelines: seal, plan, each
 * stage's task time and idle tail, the time no task ran, the commit, the turnaround between one
 * executor's tasks, and how long one and two tasks ran at once.
 */
import { describe, expect, it } from 'vitest';
import { intervalBreakdown } from '../../core/streaming/breakdown.ts';
import type { TaskTimeline } from '../../core/streaming/inspect.ts';

function ran(stage: string, partition: number, executor: string, startedAt: number, endedAt: number, durationMs: number): TaskTimeline {
  return {
    stage,
    partition,
    starts: [],
    failures: [],
    done: { attempt: 0, copy: 0, startedAt, endedAt, durationMs, recordsIn: 0, recordsOut: 0, bytesOut: 0, quarantined: 0, executor },
  };
}

describe('an interval breakdown', () => {
  it('adds up two executors running a map stage and a reduce stage', () => {
    const tasks = [
      ran('out-counts', 0, 'w0', 1060, 1080, 20),
      ran('out-counts', 1, 'w1', 1061, 1070, 9),
      ran('map-a', 0, 'w0', 1010, 1050, 40),
      ran('map-a', 1, 'w1', 1012, 1030, 18),
      ran('map-a', 2, 'w1', 1034, 1044, 10),
      // A task that never completed has no share of the time.
      { stage: 'map-a', partition: 3, starts: [{ attempt: 0, run: 'r', at: 1020 }], failures: [] },
    ];

    const b = intervalBreakdown(tasks, { sealing: 990, sealed: 995, planned: 1000, committed: 1090 });

    expect(b.sealMs).toBe(5);
    expect(b.planMs).toBe(5);
    expect(b.stages).toEqual([
      // w1 ran out of map tasks at 1044, w0 finished at 1050.
      { stage: 'map-a', tasks: 3, wallMs: 40, taskMs: 68, tailMs: 6 },
      { stage: 'out-counts', tasks: 2, wallMs: 20, taskMs: 29, tailMs: 10 },
    ]);
    expect(b.at.lastTaskEnd).toBe(1080);
    expect(b.commitMs).toBe(10);
    // No task ran 1000-1010 and 1050-1060; 1080-1090 is the commit's.
    expect(b.dispatchMs).toBe(20);
    // w1 ended map-a/1 at 1030 and started map-a/2 at 1034.
    expect(b.turnaroundMs).toBe(4);
    // Of 90 ms: 60 with at least one task running, 37 with two.
    expect(b.busyShare).toEqual([60 / 90, 37 / 90]);
  });

  it('of an interval still running, ends at its last task and leaves out what has not happened', () => {
    const b = intervalBreakdown([ran('map-a', 0, 'w0', 1005, 1025, 20)], { planned: 1000 });

    expect(b.sealMs).toBeUndefined();
    expect(b.commitMs).toBeUndefined();
    expect(b.stages).toEqual([{ stage: 'map-a', tasks: 1, wallMs: 20, taskMs: 20, tailMs: 0 }]);
    expect(b.dispatchMs).toBe(5);
    expect(b.busyShare).toEqual([20 / 25]);
  });
});
