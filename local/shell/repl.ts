import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import path from 'node:path';
import repl, { type REPLServer } from 'node:repl';
import { PassThrough, Writable } from 'node:stream';
import { inspect } from 'node:util';
import vm from 'node:vm';
import { QuerySession, type SessionOptions } from './session.ts';

type Esbuild = typeof import('esbuild');
/** esbuild as tsx, a dependency, has it: its transform strips the types of what is typed. */
const esbuild = createRequire(import.meta.resolve('tsx'))('esbuild') as Esbuild;

/** TypeScript to JavaScript; an input cut short is Recoverable, so the prompt asks for more. */
export function stripTypes(code: string): string {
  // As the REPL reads `{ a: 1 }` as an object, not a block.
  if (/^\s*\{/.test(code) && /\}\s*$/.test(code)) {
    try {
      return esbuild.transformSync(`(${code})`, { loader: 'ts' }).code;
    } catch {
      // A block after all.
    }
  }
  try {
    return esbuild.transformSync(code, { loader: 'ts' }).code;
  } catch (error) {
    const text = (error as { errors?: { text: string }[] }).errors?.[0]?.text ?? String(error);
    if (/Unexpected end of file|Unterminated/.test(text)) throw new repl.Recoverable(new SyntaxError(text));
    throw new SyntaxError(text);
  }
}

const isThenable = (v: unknown): v is PromiseLike<unknown> => typeof (v as PromiseLike<unknown> | undefined)?.then === 'function';

/** A REPL whose context has `sc`, reads TypeScript, and awaits what a query answers. */
function queryRepl(options: Omit<SessionOptions, 'lookup'>, replOptions: repl.ReplOptions): { server: REPLServer; session: QuerySession } {
  let context: vm.Context | undefined;
  let builtIn = new Set<string>();
  // A function's free names, from the session's own variables: what the user defined, not the REPL's globals.
  const lookup = (name: string) => {
    if (!context || builtIn.has(name)) return undefined;
    try {
      return { value: vm.runInContext(name, context) as unknown };
    } catch {
      return undefined;
    }
  };
  const session = new QuerySession({ ...options, lookup });
  const server = repl.start({ ignoreUndefined: true, useGlobal: false, writer: formatResult, ...replOptions });
  context = server.context;
  builtIn = new Set([...Object.getOwnPropertyNames(context), 'sc']);
  Object.defineProperty(context, 'sc', { value: session.sc, enumerable: true });
  // The REPL's own eval is kept (it runs `await` at the top level); types are stripped before it.
  const evaluate = server.eval;
  (server as { eval: repl.REPLEval }).eval = (code, ctx, file, callback) => {
    let js: string;
    try {
      js = stripTypes(code);
    } catch (error) {
      return callback(error as Error, undefined);
    }
    evaluate.call(server, js, ctx, file, (error, result) => {
      if (error || !isThenable(result)) return callback(error, result);
      void awaitQuery(server, session, result, callback);
    });
  };
  // A query awaited by the REPL itself (`await` in the input): Ctrl-C stops the query too.
  server.prependListener('SIGINT', () => session.cancel());
  return { server, session };
}

/** Awaits a query's answer; meanwhile Ctrl-C cancels it, and only that: the shell stays. */
async function awaitQuery(server: REPLServer, session: QuerySession, answer: PromiseLike<unknown>, callback: (error: Error | null, result?: unknown) => void): Promise<void> {
  const listeners = server.listeners('SIGINT') as (() => void)[];
  server.removeAllListeners('SIGINT');
  server.on('SIGINT', () => session.cancel());
  try {
    const value = await answer;
    callback(null, value);
  } catch (error) {
    callback(error as Error);
  } finally {
    server.removeAllListeners('SIGINT');
    for (const l of listeners) server.on('SIGINT', l);
  }
}

/** `dstream shell`: the REPL on this terminal, its history in DSTREAM_HISTORY or ~/.dstream_history. */
export async function startShell(options: Omit<SessionOptions, 'lookup'>, where: string): Promise<void> {
  process.stdout.write(
    `dstream shell over ${where}\n` +
      `  sc.output('name', { from, to }), sc.textFile(prefix), sc.jsonFile(prefix), await sc.state('name', k), await sc.intervals()\n` +
      `  actions: collect() take(n) first() count() countByKey() countByValue() top(n, compare) takeOrdered(n, compare); Ctrl-C cancels one\n`,
  );
  const { server, session } = queryRepl(options, { prompt: 'dstream> ', input: process.stdin, output: process.stdout });
  // The workers start while the first question is typed; a failure to start is that query's error.
  session.warm().catch(() => {});
  try {
    const history = process.env.DSTREAM_HISTORY || path.join(homedir(), '.dstream_history');
    await new Promise<void>((resolve) => server.setupHistory(history, () => resolve()));
    await new Promise<void>((resolve) => server.once('exit', resolve));
  } finally {
    await session.close();
  }
}

/**
 * `dstream query <file>`: the script runs as if typed at the shell's prompt (TypeScript, `await`
 * at the top level); its last expression is the answer, an RDD being collected.
 */
export async function runQueryScript(options: Omit<SessionOptions, 'lookup'>, source: string, file: string): Promise<unknown> {
  // An error the script throws (or awaits) reaches the REPL's own handler, which prints it as
  // "Uncaught …" and never calls eval's callback: that print is the script's failure.
  let failed: ((error: Error) => void) | undefined;
  const sink = new Writable({
    write: (chunk, _encoding, done) => {
      const text = String(chunk);
      // The error as the REPL prints it, its stack cut to the script's own lines: dstream's say nothing to the script's author.
      const ownLines = (stack: string) => stack.replace(/^\s+at .*\n?/gm, (frame) => (frame.includes(file) ? frame : ''));
      if (text.startsWith('Uncaught')) failed?.(new Error(`query ${file} failed: ${ownLines(text.replace(/^Uncaught:?\s*/, '')).trim()}`));
      done();
    },
  });
  const { server, session } = queryRepl(options, { prompt: '', input: new PassThrough(), output: sink, terminal: false });
  session.warm().catch(() => {});
  try {
    const js = stripTypes(source);
    const value = await new Promise<unknown>((resolve, reject) => {
      failed = reject;
      server.eval(js, server.context, file, (error, result) => (error ? reject(error) : resolve(result)));
    });
    const answer = isThenable(value) ? await value : value;
    return session.isRdd(answer) ? await (answer as { collect(): Promise<unknown[]> }).collect() : answer;
  } finally {
    server.close();
    await session.close();
  }
}

const MAX_ROWS = 50;

/** An answer as the shell prints it: records as a table, anything else as Node shows it. */
export function formatResult(value: unknown): string {
  if (!Array.isArray(value) || value.length === 0) return inspect(value, { colors: !process.env.NO_COLOR && process.stdout.isTTY, depth: 4 });
  const pairs = value.every((r) => Array.isArray(r) && r.length === 2);
  const objects = !pairs && value.every((r) => r !== null && typeof r === 'object' && !Array.isArray(r));
  const columns = pairs ? ['key', 'value'] : objects ? [...new Set(value.flatMap((r) => Object.keys(r as object)))] : ['value'];
  const cell = (v: unknown) => (typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v));
  const rows = value.slice(0, MAX_ROWS).map((r) => (pairs ? (r as unknown[]).map(cell) : objects ? columns.map((c) => cell((r as Record<string, unknown>)[c])) : [cell(r)]));
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(columns), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line), ...(value.length > MAX_ROWS ? [`… ${value.length - MAX_ROWS} more (${value.length} records)`] : [`(${value.length} record${value.length === 1 ? '' : 's'})`])].join('\n');
}
