import type { ObjectInfo, ObjectStore, ReadOptions } from '../../core/ports/object-store.ts';
import type { ChaosSpec, FaultKind } from './chaos-spec.ts';
import { parseTaskFailed, partitionOfTaskDone, stageOfTaskKey } from '../../core/layout.ts';

/**
 * The worker's view of the store under a fault schedule: cache-tier objects vanish after being
 * written, and a task's commit (its completion record) may be preceded by a crash of the worker
 * or by a long stall, which is when those faults hurt most.
 */
export class ChaosStore implements ObjectStore {
  /** Decided per task by the worker before it runs. */
  pending: { crash: boolean; slowdown: number; startedAt: number; signal?: AbortSignal } = { crash: false, slowdown: 1, startedAt: 0 };

  constructor(
    private readonly inner: ObjectStore,
    private readonly spec: ChaosSpec,
    private readonly random: () => number,
    private readonly injected: (kind: FaultKind) => void,
  ) {}

  get(key: string, options?: ReadOptions) {
    return this.inner.get(key, options);
  }

  getRange(key: string, start: number, end?: number, options?: ReadOptions) {
    return this.inner.getRange(key, start, end, options);
  }

  head(key: string, options?: ReadOptions) {
    return this.inner.head(key, options);
  }

  list(prefix: string): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix);
  }

  delete(key: string) {
    return this.inner.delete(key);
  }

  async put(key: string, body: Uint8Array | string): Promise<void> {
    await this.inner.put(key, body);
    if (key.startsWith('cache/') && this.random() < this.spec.loseCache) {
      this.injected('lose-cache');
      await this.inner.delete(key);
    }
  }

  async putIfAbsent(key: string, body: Uint8Array | string): Promise<boolean> {
    if (stageOfTaskKey(key) !== undefined && (partitionOfTaskDone(key) !== undefined || parseTaskFailed(key))) {
      // A straggler takes `slowdown` times as long as the task did: a slow machine, not slow data.
      // Tiny tasks count as 30 ms, so a straggler among them is still noticeably late.
      const stallMs = (this.pending.slowdown - 1) * Math.max(30, Date.now() - this.pending.startedAt);
      // A slow machine still stops when told its copy lost, as the engine's check would stop it.
      if (stallMs > 0) await sleep(stallMs, this.pending.signal);
      if (this.pending.crash) {
        // The pool counts the crash when it sees the worker go. Dies as a Lambda would: no cleanup, no reply; the message comes back after its timeout.
        process.exit(137);
      }
    }
    return this.inner.putIfAbsent(key, body);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
