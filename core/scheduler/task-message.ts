import type { ObjectStore } from '../ports/object-store.ts';
import type { TaskRecord } from '../exec/task.ts';
import { keys } from '../layout.ts';

/** SQS takes 256 KiB a message; a task record larger than this is stored and sent by reference. */
export const MAX_INLINE_TASK_BYTES = 200 * 1024;

export async function encodeTaskMessage(store: ObjectStore, task: TaskRecord): Promise<string> {
  const body = JSON.stringify(task);
  if (Buffer.byteLength(body) <= MAX_INLINE_TASK_BYTES) return body;
  const key = keys.largeTask(task.scope, task.stage, task.partition, task.attempt);
  await store.put(key, body);
  return JSON.stringify({ ref: key });
}

export async function decodeTaskMessage(store: ObjectStore, body: string): Promise<TaskRecord> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new Error(`task message is not JSON: ${body.slice(0, 200)}`);
  }
  if (parsed && typeof parsed === 'object' && 'ref' in parsed && typeof parsed.ref === 'string') {
    const stored = await store.get(parsed.ref);
    if (!stored) throw new Error(`task record ${parsed.ref} referenced by a message is missing`);
    parsed = JSON.parse(Buffer.from(stored).toString('utf8'));
  }
  const task = parsed as TaskRecord;
  if (!task || task.v !== 1 || typeof task.scope !== 'string' || typeof task.stage !== 'string' || !Number.isInteger(task.partition)) {
    throw new Error(`not a dstream task record: ${body.slice(0, 200)}`);
  }
  return task;
}
