/**
 * What starts a driver invocation, read from its event: a wake message from the driver wake queue
 * (a timer the driver set, a hand-over, an upload to a dormant stream), the watchdog's schedule, or
 * an operator's invocation. A wake message the driver sent itself names the lease owner that sent
 * it, so that the invocation it starts carries that driver on, and the watchdog's stays out.
 */
import { log } from '../log.ts';

export type WakeReason = 'timer' | 'hand-over' | 'upload';

/** The body of a driver wake queue message. */
export interface WakeMessage {
  source: 'dstream.wake';
  reason: WakeReason;
  /** The lease owner that set the timer: the invocation it starts takes the lease over from it. */
  owner?: string;
  /** Intervals in a row without uploads so far, carried from invocation to invocation. */
  quiet?: number;
}

/** Sends a wake message to the driver, delivered no sooner than `delayMs` from now (whole seconds, 900 at most). */
export type WakeSender = (message: WakeMessage, delayMs: number) => Promise<void>;

export interface Wake {
  /** The watchdog leaves a dormant stream alone; everything else wakes it. */
  kind: 'watchdog' | 'wake' | 'other';
  /** Lease owners this invocation may take over from: those that sent its wake messages. */
  heirOf: ReadonlySet<string>;
  quiet: number;
}

export function wakeOf(event: unknown): Wake {
  const e = event as { source?: unknown; Records?: unknown } | null | undefined;
  if (e?.source === 'aws.events') return { kind: 'watchdog', heirOf: new Set(), quiet: 0 };
  if (!Array.isArray(e?.Records)) return { kind: 'other', heirOf: new Set(), quiet: 0 };
  const heirOf = new Set<string>();
  let quiet = Infinity;
  for (const record of e.Records as { body?: unknown; messageId?: unknown }[]) {
    const message = parse(record?.body);
    if (!message) {
      // Still a wake-up: the driver runs as for the watchdog, minus the dormancy check.
      log.warn('a driver wake queue message is not a dstream wake message; woken as by an operator', { messageId: record?.messageId, body: String(record?.body).slice(0, 200) });
      quiet = 0;
      continue;
    }
    if (message.owner !== undefined) heirOf.add(message.owner);
    quiet = Math.min(quiet, message.quiet ?? 0);
  }
  return { kind: 'wake', heirOf, quiet: Number.isFinite(quiet) ? quiet : 0 };
}

function parse(body: unknown): WakeMessage | undefined {
  if (typeof body !== 'string') return undefined;
  try {
    const m = JSON.parse(body) as Partial<WakeMessage>;
    if (m?.source !== 'dstream.wake' || !['timer', 'hand-over', 'upload'].includes(m.reason as string)) return undefined;
    if (m.owner !== undefined && typeof m.owner !== 'string') return undefined;
    if (m.quiet !== undefined && !(Number.isSafeInteger(m.quiet) && m.quiet >= 0)) return undefined;
    return m as WakeMessage;
  } catch {
    return undefined;
  }
}
