/**
 * A worker process of the embedded runtime: the same task code a task Lambda runs, fed by the
 * pool over IPC instead of by SQS.
 */
import { FsObjectStore } from '../store/fs-object-store.ts';
import { ScratchStore } from '../../core/query/scratch-store.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { TaskHandler, settlementOf, taskModulesFromModule } from '../../core/runtime/task-handler.ts';
import { importCompiled } from './pipeline-bundle.ts';
import type { TaskRecord } from '../../core/exec/task.ts';
import { ChaosStore } from '../chaos/chaos-store.ts';
import { InjectedFault, type FaultKind } from '../chaos/chaos-spec.ts';
import { seededRandom } from '../../core/util/seeded-random.ts';
import type { FromWorker, ToWorker } from './worker-protocol.ts';

let handler: TaskHandler | undefined;
let chaos: ChaosStore | undefined;
let random: () => number = () => 1;
let spec: Extract<ToWorker, { type: 'init' }>['chaos'];
let injected: FaultKind[] = [];

const reply = (message: FromWorker) => process.send!(message);

process.on('message', (message: ToWorker) => {
  if (message.type === 'init') void init(message);
  else void runOne(message);
});
process.on('disconnect', () => process.exit(0));

async function init(message: Extract<ToWorker, { type: 'init' }>): Promise<void> {
  try {
    const module = taskModulesFromModule(await importCompiled(message.pipelinePath, message.pipeline), message.pipelinePath);
    // One task at a time: nothing else waits on this process while it reads or writes a small file.
    let store: ObjectStore = new FsObjectStore(message.root, { blocking: true });
    if (message.scratch !== undefined) store = new ScratchStore(store, message.scratch);
    spec = message.chaos;
    if (spec) {
      // Each worker draws its own sequence, so workers do not fail in lockstep.
      random = seededRandom(spec.seed * 7919 + message.workerIndex * 104729 + process.pid);
      chaos = new ChaosStore(store, spec, random, (kind) => injected.push(kind));
      store = chaos;
    }
    // Local HEADs are cheap: a losing copy frees its worker within a tenth of a second.
    handler = new TaskHandler(module, store, { supersededCheckMs: 100, executor: `worker-${message.workerIndex}` });
    reply({ type: 'ready' });
  } catch (error) {
    reply({ type: 'init-error', message: error instanceof Error ? error.message : String(error) });
  }
}

async function runOne(message: Extract<ToWorker, { type: 'task' }>): Promise<void> {
  injected = [];
  const started = Date.now();
  const cancel = new AbortController();
  let task: TaskRecord;
  try {
    task = await handler!.decode(message.body);
  } catch (error) {
    reply({ type: 'failed', id: message.id, message: describe(error), settlement: settlementOf(error), injected });
    return;
  }
  try {
    reply({ type: 'started', id: message.id, task: { scope: task.scope, stage: task.stage, partition: task.partition, attempt: task.attempt, copy: task.copy } });
    if (spec && chaos) {
      // Speculative copies run on a healthy worker; only the first copy is ever slowed.
      const straggle =
        task.copy === 0 && (spec.slowTask ? spec.slowTask === `${task.stage}/${task.partition}` && message.receiveCount === 1 : random() < spec.straggler);
      chaos.pending = { crash: random() < spec.taskCrash, slowdown: 1, startedAt: started, signal: cancel.signal };
      if (random() < spec.taskError) {
        injected.push('task-error');
        const fault = new InjectedFault('task-error');
        await handler!.recordFailure(task, message.receiveCount, fault);
        throw fault;
      }
      if (straggle) {
        injected.push('straggler');
        chaos.pending.slowdown = spec.slowdown;
      }
    }
    const outcome = await handler!.handle(task, message.receiveCount, cancel);
    const splitBytes = outcome.status === 'done' ? outcome.done.bytesIn : 0;
    reply({
      type: 'done',
      id: message.id,
      outcome: outcome.status === 'done' && outcome.skipped ? 'skipped' : outcome.status,
      injected,
      usage: { maxRss: process.resourceUsage().maxRSS * 1024, splitBytes, stage: task.stage, durationMs: Date.now() - started },
    });
  } catch (error) {
    reply({ type: 'failed', id: message.id, message: describe(error), settlement: settlementOf(error), injected });
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
