import type { DeadLetter, QueueMessage, TaskQueue } from '../ports/task-queue.ts';
import { InvalidTaskMessageError } from '../scheduler/task-message.ts';
import { isQuerySession } from '../layout.ts';

/**
 * A task of a shell session as the query function gets it: the task message as the scheduler
 * wrote it, with the session whose scratch the task runs in and, when the session recomputes lost
 * stream data, the SHA-256 of the code it sent for that (`keys.queryCode`). The query queue
 * serves every session of a bucket, so each message says whose it is.
 */
export interface QueryTaskMessage {
  session: string;
  code?: string;
  task: string;
}

const SHA256 = /^[0-9a-f]{64}$/;

export function encodeQueryTask(message: QueryTaskMessage): string {
  return JSON.stringify({ query: { session: message.session, ...(message.code === undefined ? {} : { code: message.code }) }, task: message.task });
}

/** The session, code and task of a query queue message; InvalidTaskMessageError naming what is wrong. */
export function decodeQueryTask(body: string): QueryTaskMessage {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    throw new InvalidTaskMessageError(`a query task message must be JSON { "query": { "session", "code"? }, "task" }, got ${body.slice(0, 200)}`);
  }
  const { query, task } = (parsed ?? {}) as { query?: { session?: unknown; code?: unknown }; task?: unknown };
  if (typeof query !== 'object' || query === null || typeof task !== 'string' || Object.keys(parsed as object).length !== 2) {
    throw new InvalidTaskMessageError(`a query task message must be exactly { "query": { "session", "code"? }, "task" }, got ${body.slice(0, 200)}`);
  }
  const { session, code } = query;
  if (typeof session !== 'string' || !isQuerySession(session)) throw new InvalidTaskMessageError(`query task message: session must be a query session's id, got ${JSON.stringify(session)}`);
  if (code !== undefined && (typeof code !== 'string' || !SHA256.test(code))) throw new InvalidTaskMessageError(`query task message: code must be a SHA-256 in hex, got ${JSON.stringify(code)}`);
  return { session, ...(code === undefined ? {} : { code }), task };
}

/** Whether a query queue message is of `session`: what a shared dead-letter queue's drain keeps for it. */
export function isQueryTaskOf(session: string): (body: string) => boolean {
  return (body) => {
    try {
      return decodeQueryTask(body).session === session;
    } catch {
      return false;
    }
  };
}

/**
 * The query queue as one session's scheduler sees it: what it sends is wrapped with the session
 * (and its code), and dead letters come back unwrapped, as the scheduler wrote them. `queue` must
 * drain only this session's letters (SqsTaskQueue's `ownsDeadLetter: isQueryTaskOf(session)`),
 * since the query queue serves every session of its bucket.
 */
export function sessionTaskQueue(queue: TaskQueue, session: string, code?: string): TaskQueue {
  return {
    send: (bodies) => queue.send(bodies.map((task) => encodeQueryTask({ session, ...(code === undefined ? {} : { code }), task }))),
    receive: (max, visibilityTimeoutMs, waitMs) => queue.receive(max, visibilityTimeoutMs, waitMs),
    delete: (receipt) => queue.delete(receipt),
    changeVisibility: (receipt, ms) => queue.changeVisibility(receipt, ms),
    deadLetter: (message: QueueMessage, reason) => queue.deadLetter(message, reason),
    async drainDeadLetters(max): Promise<DeadLetter[]> {
      return (await queue.drainDeadLetters(max)).map((letter) => {
        // A letter that is not a query task is passed on as it is: the scheduler keeps it as unreadable.
        let task: string;
        try {
          task = decodeQueryTask(letter.body).task;
        } catch {
          return letter;
        }
        return { ...letter, body: task };
      });
    },
  };
}
