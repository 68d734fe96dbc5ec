/**
 * The streaming UI's server: node:http, a page and a few JSON endpoints over one object store (a
 * local root or a deployed stream's bucket), read only. It binds to 127.0.0.1 by default and
 * sends nothing anywhere else: the page and its script are served from here (./page.ts).
 *
 *   GET /api/status                       readStreamStatus (its last intervals too), and the failed interval with the runbook's next step
 *   GET /api/intervals?before=<k>&limit=<n>  committed intervals below k (default: all), newest first, at most n
 *   GET /api/intervals/<k>                readIntervalDetail: DAG, tasks, outputs, state, errors
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readJson, type ObjectStore } from '../../core/ports/object-store.ts';
import { intervalScope, keys, parseErrorKey, parseTaskFailed } from '../../core/layout.ts';
import type { DriverProgress } from '../../core/streaming/progress.ts';
import { readIntervalSummaries, readStreamStatus, RECENT_INTERVALS, type Failure, type IntervalSummary, type StreamStatus } from '../../core/streaming/status.ts';
import { readIntervalDetail } from '../../core/streaming/inspect.ts';
import { APP_JS, PAGE_HTML, STYLE_CSS } from './page.ts';

export interface UiOptions {
  store: ObjectStore;
  /** Where the store is, as a person reads it: a directory, or s3://bucket/prefix. */
  where: string;
  /** A local root or a deployed stream's bucket: the runbook's next step differs. */
  runtime: 'local' | 'aws';
  /** @default 4040; 0 picks a free port. */
  port?: number;
  /** @default '127.0.0.1': only this machine can reach the page. */
  host?: string;
}

export interface RunningUi {
  url: string;
  close(): Promise<void>;
}

/** Intervals one request may ask for: a page of the table, or the charts' window. */
export const MAX_PAGE = 500;
const DEFAULT_PAGE = 50;
/** Committed reports never change: kept in memory so a poll reads only intervals committed since the last. */
const CACHED_SUMMARIES = 20_000;

/** A failure that stops the stream, with what to do about it (README, "When an interval fails: the runbook"). */
export interface FailureView extends Failure {
  kind: 'bad-record' | 'dead-letter';
  nextStep: string;
}

export async function startUi(options: UiOptions): Promise<RunningUi> {
  const { store } = options;
  const summaries = new SummaryCache(store);
  const routes: [RegExp, (m: RegExpExecArray, url: URL) => Promise<Answer>][] = [
    [/^\/$/, async () => ({ type: 'text/html; charset=utf-8', body: PAGE_HTML })],
    [/^\/app\.js$/, async () => ({ type: 'text/javascript; charset=utf-8', body: APP_JS })],
    [/^\/style\.css$/, async () => ({ type: 'text/css; charset=utf-8', body: STYLE_CSS })],
    [/^\/api\/status$/, async () => json(await statusView(store, options, summaries))],
    [/^\/api\/intervals$/, async (_, url) => json(await summaries.page(url.searchParams))],
    [
      /^\/api\/intervals\/(\d+)$/,
      async (m) => {
        const k = Number(m[1]);
        const detail = Number.isSafeInteger(k) ? await readIntervalDetail(store, k) : undefined;
        return detail ? json(detail) : json({ error: `interval ${m[1]} has no lineage record: it was not planned` }, 404);
      },
    ],
  ];
  const server = createServer((req, res) => void handle(req, res));
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://ui');
    let answer: Answer;
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') answer = json({ error: `${req.method} is not served: the UI only reads` }, 405);
      else {
        const route = routes.map(([re, fn]) => [re.exec(url.pathname), fn] as const).find(([m]) => m);
        answer = route ? await route[1](route[0]!, url) : json({ error: `no page at ${url.pathname}` }, 404);
      }
    } catch (error) {
      answer = json({ error: error instanceof Error ? error.message : String(error) }, error instanceof BadRequest ? 400 : 500);
    }
    res.writeHead(answer.status ?? 200, { 'content-type': answer.type, 'cache-control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : answer.body);
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) =>
      reject(error.code === 'EADDRINUSE' ? new Error(`port ${options.port ?? 4040} is in use: give another with --port`, { cause: error }) : error),
    );
    server.listen(options.port ?? 4040, options.host ?? '127.0.0.1', resolve);
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}/`,
    close: () =>
      new Promise((resolve, reject) => {
        server.closeAllConnections();
        server.close((error) => (error ? reject(error) : resolve()));
      }),
  };
}

interface Answer {
  type: string;
  body: string;
  status?: number;
}

class BadRequest extends Error {}

const json = (value: unknown, status = 200): Answer => ({ type: 'application/json; charset=utf-8', body: JSON.stringify(value), status });

/** The stream's status, its recent intervals as `dstream status` lists them, and the interval that stops it, if one does. */
async function statusView(
  store: ObjectStore,
  options: UiOptions,
  summaries: SummaryCache,
): Promise<{ where: string; status: StreamStatus; failed: { interval: number; failures: FailureView[] } | null }> {
  // The recent intervals come from the pages' cache: a poll reads only the reports committed since the last.
  const [status, recent] = await Promise.all([readStreamStatus(store, { intervals: 0 }), summaries.page(new URLSearchParams({ limit: String(RECENT_INTERVALS) }))]);
  status.recent = recent.intervals.filter((r) => status.position && r.interval < status.position.next).reverse();
  const first = status.failures.length ? Math.min(...status.failures.map((f) => f.interval)) : undefined;
  const failures = status.failures.filter((f) => f.interval === first).map((f) => withNextStep(f, options));
  return { where: options.where, status, failed: first === undefined ? null : { interval: first, failures } };
}

function withNextStep(failure: Failure, { runtime, where }: UiOptions): FailureView {
  const k = failure.interval;
  // A failure record beside the completions is an error every delivery meets; the rest are dead letters.
  if (parseTaskFailed(failure.key)) {
    const how =
      runtime === 'local'
        ? `run \`dstream quarantine ${k} --root ${where}\`, then run the stream again as before (dstream run … or dstream replay …)`
        : `invoke the driver function with {"quarantine": ${k}} (aws lambda invoke --function-name <driver> --cli-binary-format raw-in-base64-out --payload '{"quarantine": ${k}}' out.json)`;
    return { ...failure, kind: 'bad-record', nextStep: `A bad record under badRecords: 'fail'. To go on without changing the code, ${how}: the interval quarantines its bad records under errors/${intervalScope(k)}/records/.` };
  }
  const letter = parseErrorKey(failure.key);
  const folder = letter ? keys.errorsPrefix(letter.scope) + 'dead-letters/' : failure.key;
  const again = runtime === 'local' ? 'run the stream again (dstream run or replay, as before)' : 'the watchdog starts a driver within a minute, or invoke the driver';
  return { ...failure, kind: 'dead-letter', nextStep: `The task failed every delivery. Read ${folder}, fix the cause (memory, timeout, access, a dependency down), then ${again}: the task is sent afresh and the old dead letter kept.` };
}

/**
 * Pages of committed intervals, newest first, found from the driver's progress pointer (`next`):
 * a page reads its own intervals' reports, never a listing of the stream.
 */
class SummaryCache {
  private readonly cache = new Map<number, IntervalSummary>();
  private clock = '';

  constructor(private readonly store: ObjectStore) {}

  async page(query: URLSearchParams): Promise<{ next: number; intervalMs?: number; intervals: IntervalSummary[]; older: number | null }> {
    const progress = await readJson<Omit<DriverProgress, 'base'> & { base?: number }>(this.store, keys.driverProgress);
    if (!progress) return { next: 0, intervals: [], older: null };
    const clock = { base: progress.base ?? 0, intervalMs: progress.intervalMs };
    // An input rate is per interval length: a new length is a new reading of every report.
    const reading = `${clock.base}/${clock.intervalMs}`;
    if (reading !== this.clock) {
      this.cache.clear();
      this.clock = reading;
    }
    const before = Math.min(whole(query, 'before', progress.next, 0), progress.next);
    const limit = whole(query, 'limit', DEFAULT_PAGE, 1);
    if (limit > MAX_PAGE) throw new BadRequest(`limit must be at most ${MAX_PAGE}, got ${limit}`);
    const wanted = Array.from({ length: Math.min(limit, before) }, (_, i) => before - 1 - i);
    const missing = wanted.filter((k) => !this.cache.has(k));
    for (const s of await readIntervalSummaries(this.store, clock, missing)) this.remember(s);
    const from = wanted.at(-1) ?? before;
    return { next: progress.next, intervalMs: clock.intervalMs, intervals: wanted.flatMap((k) => this.cache.get(k) ?? []), older: from > 0 ? from : null };
  }

  private remember(s: IntervalSummary): void {
    if (this.cache.size >= CACHED_SUMMARIES) this.cache.delete(this.cache.keys().next().value!);
    this.cache.set(s.interval, s);
  }
}

function whole(query: URLSearchParams, name: string, fallback: number, min: number): number {
  const text = query.get(name);
  if (text === null) return fallback;
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min) throw new BadRequest(`${name} must be a whole number >= ${min}, got ${JSON.stringify(text)}`);
  return n;
}
