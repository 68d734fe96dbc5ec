import type { ChaosSpec, FaultKind } from '../chaos/chaos-spec.ts';
import type { TaskRecord } from '../../core/exec/task.ts';
import type { CompiledPipeline } from './pipeline-bundle.ts';

/** Which task a worker is running: enough for the pool to record why it died, if it dies. */
export type TaskIdentity = Pick<TaskRecord, 'scope' | 'stage' | 'partition' | 'attempt' | 'copy'>;

/** Messages between the worker pool (parent) and a worker process. */
export type ToWorker =
  /**
   * `pipeline`: the compiled module to load (local/runtime/pipeline-bundle.ts), `pipelinePath` the
   * user's, for errors. `scratch`: a query's session, whose tasks run on a ScratchStore over the root.
   */
  | { type: 'init'; pipeline: CompiledPipeline; pipelinePath: string; root: string; chaos?: ChaosSpec; workerIndex: number; scratch?: string }
  | { type: 'task'; id: string; body: string; receiveCount: number };

export type FromWorker =
  | { type: 'ready' }
  | { type: 'init-error'; message: string }
  | { type: 'started'; id: string; task: TaskIdentity }
  | { type: 'done'; id: string; outcome: 'done' | 'skipped' | 'fetch-failed' | 'superseded'; injected: FaultKind[]; usage: WorkerUsage }
  /** `settlement`: what the pool does with the message (core/runtime/task-handler.ts settlementOf). */
  | { type: 'failed'; id: string; message: string; settlement: 'retry' | 'recorded' | 'dead-letter'; injected: FaultKind[] };

export interface WorkerUsage {
  /** Peak resident memory of the worker process so far, in bytes. */
  maxRss: number;
  /** Bytes of input the task read from sources (its split). */
  splitBytes: number;
  stage: string;
  durationMs: number;
}
