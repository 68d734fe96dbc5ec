import type { ObjectStore } from '../ports/object-store.ts';
import type { TaskRecord } from '../exec/task.ts';
import type { BlockRef } from '../exec/compute.ts';
import { isScope, keys, parseLargeTask } from '../layout.ts';

/** A message that is no task belongs to no stage and fails none; it is kept where it can be read. */
export async function keepUnreadableMessage(store: ObjectStore, message: { id: string; body: string; receiveCount: number; reason?: string }, error: unknown): Promise<void> {
  await store.put(
    keys.unreadableDeadLetter(message.id),
    JSON.stringify({ id: message.id, receiveCount: message.receiveCount, error: String(error), reason: message.reason, body: message.body }, null, 2),
  );
}

/** SQS takes 256 KiB a message; a task record larger than this is stored and sent by reference. */
export const MAX_INLINE_TASK_BYTES = 200 * 1024;

/**
 * A queue message that is no task of this pipeline: malformed, or naming a task its scope's
 * lineage does not have. Deterministic: every delivery would fail the same way, so it is settled
 * at once (dead-lettered, with the reason), never retried, and nothing is written for it.
 */
export class InvalidTaskMessageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidTaskMessageError';
  }
}

/** Stage ids are built from operator ids and names (stageIds): letters, digits, '.', '_', '-'. */
const STAGE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;
/** What a message carries: who the task is, and the shuffle blocks the driver resolved for it. */
const FIELDS = new Set(['v', 'pipeline', 'fingerprint', 'scope', 'planHash', 'stage', 'partition', 'attempt', 'copy', 'run', 'shuffleInputs']);

export async function encodeTaskMessage(store: ObjectStore, task: TaskRecord): Promise<string> {
  const body = JSON.stringify(task);
  if (Buffer.byteLength(body) <= MAX_INLINE_TASK_BYTES) return body;
  const key = keys.largeTask(task.scope, task.stage, task.partition, task.attempt);
  await store.put(key, body);
  return JSON.stringify({ ref: key });
}

/**
 * The task a message names, checked field by field; throws InvalidTaskMessageError naming what
 * is wrong. Whether the task exists in its scope's lineage is the task handler's check.
 */
export async function decodeTaskMessage(store: ObjectStore, body: string): Promise<TaskRecord> {
  const parsed = parseJson(body, 'task message');
  if (isObject(parsed) && 'ref' in parsed) {
    const ref = parsed.ref;
    // A stored record is sent by reference only where the driver stores them (keys.largeTask).
    const m = typeof ref === 'string' ? parseLargeTask(ref) : undefined;
    if (!m || Object.keys(parsed).length !== 1) {
      throw new InvalidTaskMessageError(`a task message by reference must be exactly { "ref": "lineage/<scope>/task-records/..." }, got ${preview(body)}`);
    }
    const stored = await store.get(ref as string);
    if (!stored) throw new InvalidTaskMessageError(`task record ${String(ref)} referenced by a message is missing`);
    const task = validateTaskRecord(parseJson(Buffer.from(stored).toString('utf8'), `task record ${String(ref)}`));
    // The key says whose record it is: a record stored for one task cannot be run as another.
    if (task.scope !== m.scope || task.stage !== m.stage || task.partition !== m.partition || task.attempt !== m.attempt) {
      throw new InvalidTaskMessageError(`task record ${String(ref)} is of ${task.scope} ${task.stage} partition ${task.partition} attempt ${task.attempt}, not of the task its key names`);
    }
    return task;
  }
  return validateTaskRecord(parsed);
}

function validateTaskRecord(value: unknown): TaskRecord {
  if (!isObject(value)) throw new InvalidTaskMessageError(`not a dstream task record: ${preview(JSON.stringify(value) ?? String(value))}`);
  const fail = (what: string): never => {
    throw new InvalidTaskMessageError(`not a dstream task record: ${what} (in ${preview(JSON.stringify(value))})`);
  };
  for (const field of Object.keys(value)) {
    if (!FIELDS.has(field)) {
      fail(`field ${JSON.stringify(field)} is not part of a task message; a task takes what it computes and writes from its scope's lineage record`);
    }
  }
  if (value.v !== 1) fail(`v must be 1, got ${JSON.stringify(value.v)}`);
  for (const field of ['pipeline', 'fingerprint', 'planHash'] as const) {
    if (typeof value[field] !== 'string' || value[field] === '') fail(`${field} must be a non-empty string`);
  }
  if (typeof value.scope !== 'string' || !isScope(value.scope)) fail(`scope must be interval=<6+ digits> or batch=<name>.run-<id>, got ${JSON.stringify(value.scope)}`);
  if (typeof value.stage !== 'string' || !STAGE.test(value.stage)) fail(`stage must be a stage id (letters, digits, '.', '_', '-'), got ${JSON.stringify(value.stage)}`);
  for (const field of ['partition', 'attempt', 'copy'] as const) {
    if (!isCount(value[field])) fail(`${field} must be a non-negative integer, got ${JSON.stringify(value[field])}`);
  }
  if (value.shuffleInputs !== undefined) {
    if (!isObject(value.shuffleInputs)) fail('shuffleInputs must be an object of block lists');
    for (const [shuffle, blocks] of Object.entries(value.shuffleInputs as Record<string, unknown>)) {
      if (!Array.isArray(blocks) || !blocks.every(isBlockRef)) {
        fail(`shuffleInputs.${shuffle} must be a list of [key, start, end] with 0 <= start <= end`);
      }
    }
  }
  return value as unknown as TaskRecord;
}

function isBlockRef(block: unknown): block is BlockRef {
  return Array.isArray(block) && block.length === 3 && typeof block[0] === 'string' && isCount(block[1]) && isCount(block[2]) && block[1] <= block[2];
}

const isCount = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0;

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new InvalidTaskMessageError(`${what} is not JSON: ${preview(text)}`);
  }
}

const preview = (text: string) => text.slice(0, 200);
