import type { ObjectStore } from '../ports/object-store.ts';
import type { TaskRecord } from '../exec/task.ts';
import { keys } from '../layout.ts';

/** A message that is no task this engine can run, on any delivery. */
export class MalformedTaskMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MalformedTaskMessageError';
  }
}

/** A message that is no task belongs to no stage and fails none; it is kept where it can be read. */
export async function keepUnreadableMessage(store: ObjectStore, message: { id: string; body: string; receiveCount: number }, error: unknown): Promise<void> {
  await store.put(
    keys.unreadableDeadLetter(message.id),
    JSON.stringify({ id: message.id, receiveCount: message.receiveCount, error: String(error), body: message.body }, null, 2),
  );
}

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
    throw new MalformedTaskMessageError(`task message is not JSON: ${body.slice(0, 200)}`);
  }
  if (parsed && typeof parsed === 'object' && 'ref' in parsed && typeof parsed.ref === 'string') {
    const stored = await store.get(parsed.ref);
    if (!stored) throw new MalformedTaskMessageError(`task record ${parsed.ref} referenced by a message is missing`);
    parsed = JSON.parse(Buffer.from(stored).toString('utf8'));
  }
  const task = parsed as TaskRecord;
  if (!task || task.v !== 1 || typeof task.scope !== 'string' || typeof task.stage !== 'string' || !Number.isInteger(task.partition)) {
    throw new MalformedTaskMessageError(`not a dstream task record: ${body.slice(0, 200)}`);
  }
  return task;
}
