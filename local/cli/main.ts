import { existsSync } from 'node:fs';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { tmpdir } from 'node:os';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../package-files.ts';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { readJson } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';
import type { IntervalReport } from '../../core/streaming/driver.ts';
import { readStreamStatus, type FinishedReplay } from '../../core/streaming/status.ts';
import { FsObjectStore } from '../store/fs-object-store.ts';
import { quarantineInterval, readLineageRecord, readLineageUploads } from '../../core/streaming/lineage.ts';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.ts';
import { compilePipeline, loadCompiledPipeline } from '../runtime/pipeline-bundle.ts';
import { formatFrame, userFrames } from '../runtime/user-frames.ts';
import { describeUpgrade, exportSavepoint, importSavepoint, upgradeStream } from '../../core/streaming/upgrade.ts';
import { TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { MAX_INTERVALS_IN_FLIGHT } from '../../core/streaming/interval-pipeline.ts';
import { COMMANDS, commandUsage, generalUsage, parseCommandLine, parseCount, parseDuration, UsageError } from './args.ts';
import { formatAlreadyCommitted, formatChaos, formatInterval, formatLineage, formatStatus } from './format.ts';
import { processIo, Terminal } from './terminal.ts';
import { DEMO_MARKER, demoStreamRoot, runDemo } from './demo.ts';
import { startUi } from '../ui/server.ts';

/** Status is read again every interval length with --watch, but not more often than this. */
const MIN_WATCH_MS = 1000;

export async function main(argv: string[], term = new Terminal(processIo())): Promise<number> {
  const request = parseCommandLine(argv);
  if (request.kind === 'help') {
    term.line(request.command ? commandUsage(request.command) : generalUsage());
    return 0;
  }
  if (request.kind === 'version') {
    term.line(await packageVersion());
    return 0;
  }
  const { command, positionals, values } = request;
  const opt = (name: string) => values[name] as string | undefined;
  const flag = (name: string) => values[name] === true;
  const required = (name: string) => {
    const v = opt(name);
    if (!v) throw new UsageError(`${command} needs --${name}`, command);
    return v;
  };
  const json = flag('json');
  /** What is not an interval report: on stderr when stdout carries JSON for a script. */
  const note = (text: string) => (json ? term.error(text) : term.line(text));
  /** The runtime the command names: its pipeline, root, workers and partitions. */
  const openRuntime = (extra: { intervalMs?: number; chaos?: string; maxAttempts?: number } = {}) =>
    open(positionals[0], required('root'), {
      workers: parseCount('workers', values.workers),
      partitions: parseCount('partitions', values.partitions),
      maxIntervalsInFlight: intervalsInFlight(),
      ...extra,
    });
  const intervalsInFlight = () => {
    const n = parseCount('intervals-in-flight', values['intervals-in-flight']);
    if (n !== undefined && n > MAX_INTERVALS_IN_FLIGHT) throw new UsageError(`--intervals-in-flight must be a whole number from 1 to ${MAX_INTERVALS_IN_FLIGHT}, got ${n}`, command);
    return n;
  };
  const intervalArgument = () => {
    const k = Number(positionals[0]);
    if (positionals[0] === undefined) throw new UsageError(`${command} needs an interval number, e.g. dstream ${command} 3 --root <dir>`, command);
    if (!/^\d+$/.test(positionals[0]) || !Number.isSafeInteger(k)) throw new UsageError(`${command} needs an interval number, got ${JSON.stringify(positionals[0])}`, command);
    return k;
  };
  /** Runs intervals with the progress line on a terminal, reporting each as text or JSON. */
  const runIntervals = async (runtime: EmbeddedRuntime, run: (onInterval: (r: IntervalReport) => void) => Promise<IntervalReport[]>) => {
    // Intervals before the pointer were committed by an earlier run: said so, not reprinted as if run again.
    const before = (await readJson<{ next: number }>(runtime.store, keys.driverProgress))?.next ?? 0;
    const already: number[] = [];
    const flushAlready = () => {
      if (already.length) note(formatAlreadyCommitted(already));
      already.length = 0;
    };
    const stopProgress = json ? () => {} : term.followProgress(runtime.store);
    try {
      const reports = await run((report) => {
        const old = report.interval < before;
        if (json) return term.line(JSON.stringify(old ? { ...report, alreadyCommitted: true } : report));
        if (old) return void already.push(report.interval);
        flushAlready();
        term.line(formatInterval(report, term.style));
      });
      flushAlready();
      return { reports, ran: reports.filter((r) => r.interval >= before).length, already: reports.filter((r) => r.interval < before).length };
    } finally {
      stopProgress();
    }
  };

  switch (command) {
    case 'run': {
      const intervalMs = parseDuration(opt('interval') ?? '2s');
      const runtime = await openRuntime({ intervalMs });
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      process.once('SIGTERM', () => controller.abort());
      try {
        // Before saying where to put files, so the first move into it succeeds.
        const incoming = path.join(runtime.options.root, 'incoming');
        await mkdir(incoming, { recursive: true });
        note(`watching ${incoming} every ${runtime.config.intervalMs} ms (Ctrl-C to stop)`);
        await runIntervals(runtime, (onInterval) => runtime.live({ signal: controller.signal, onInterval }));
      } finally {
        await runtime.close();
      }
      return 0;
    }
    case 'replay': {
      const staged = required('staged');
      const runtime = await openRuntime({
        maxAttempts: parseCount('max-attempts', values['max-attempts']),
        ...(opt('chaos') ? { chaos: opt('chaos')! } : {}),
      });
      try {
        const { reports, ran, already } = await runIntervals(runtime, (onInterval) => runtime.replay(staged, onInterval));
        // So that status tells a finished replay from a stream whose driver stopped: the clock ran on, no interval waits.
        if (reports.length && (ran > 0 || !(await runtime.store.head(keys.finishedReplay)))) {
          const replay: FinishedReplay = { first: reports[0]!.interval, last: reports.at(-1)!.interval, intervals: reports.length, at: Date.now() };
          await runtime.store.put(keys.finishedReplay, JSON.stringify(replay));
        }
        const outputs = path.join(runtime.options.root, 'output');
        note(ran === 0 ? `nothing to run: all ${already} staged intervals were already committed under ${outputs}` : `${ran} intervals committed under ${outputs}`);
        if (runtime.chaos) note(formatChaos(runtime.chaosReport()));
      } finally {
        await runtime.close();
      }
      return 0;
    }
    case 'batch': {
      const runtime = await openRuntime();
      try {
        const result = await runtime.batch(opt('resume'));
        term.line(`batch run ${result.run}`);
        for (const [name, folder] of Object.entries(result.outputs)) term.line(`output ${name}: ${path.join(runtime.options.root, folder)}`);
        for (const [name, records] of Object.entries(result.collected)) {
          term.line(`${name} (${records.length} records):`);
          for (const r of records.slice(0, 20)) term.line(`  ${typeof r === 'string' ? r : JSON.stringify(r)}`);
        }
      } finally {
        await runtime.close();
      }
      return 0;
    }
    case 'status': {
      const { store, where } = await streamStore(command, opt('root'), opt('bucket'), opt('prefix'));
      const intervals = parseCount('intervals', values.intervals, 0) ?? 10;
      const show = async () => {
        const status = await readStreamStatus(store, { intervals });
        if (json) term.line(JSON.stringify(status));
        else term.line(`${flag('watch') && term.interactive ? '\x1b[H\x1b[2J' : ''}${formatStatus(status, where, term.style)}`);
        return status;
      };
      if (!flag('watch')) {
        await show();
        return 0;
      }
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      process.once('SIGTERM', () => controller.abort());
      while (!controller.signal.aborted) {
        const status = await show();
        if (!json && !term.interactive) term.line('');
        await sleep(Math.max(MIN_WATCH_MS, status.clock?.intervalMs ?? 0), undefined, { signal: controller.signal }).catch(() => undefined);
      }
      return 0;
    }
    case 'ui': {
      const port = parseCount('port', values.port, 0) ?? 4040;
      if (port > 65535) throw new UsageError(`--port must be at most 65535, got ${port}`, command);
      const { store, where } = await streamStore(command, opt('root'), opt('bucket'), opt('prefix'));
      const ui = await startUi({ store, where, runtime: opt('bucket') === undefined ? 'local' : 'aws', port });
      term.line(`the stream in ${where}: ${ui.url} (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await ui.close();
      return 0;
    }
    case 'quarantine': {
      const k = intervalArgument();
      const root = path.resolve(required('root'));
      if (!existsSync(root)) throw new Error(`root ${root} does not exist`);
      term.line(`${await quarantineInterval(new FsObjectStore(root), k)}: run the stream again (dstream run or replay, as before) to go on`);
      return 0;
    }
    case 'lineage': {
      const k = intervalArgument();
      const store = new FsObjectStore(path.resolve(required('root')));
      const record = await readLineageRecord(store, k);
      if (!record) throw new Error(`no lineage record for interval ${k} under ${required('root')}`);
      const uploads = flag('uploads') ? await readLineageUploads(store, record) : undefined;
      if (json) term.line(JSON.stringify(uploads ? { ...record, uploads } : record, null, 2));
      else term.line(formatLineage(record, uploads));
      return 0;
    }
    case 'shell':
    case 'query': {
      const { store, where, root } = await streamStore(command, opt('root'), opt('bucket'), opt('prefix'));
      const pipelinePath = opt('pipeline') === undefined ? undefined : path.resolve(opt('pipeline')!);
      // Compiled as the runtime compiles it: the fingerprint that must match the stream's hashes the operators' compiled code.
      const compiled = pipelinePath === undefined ? undefined : await compilePipeline(pipelinePath, root ?? path.join(tmpdir(), 'dstream-shell'));
      const pipeline = pipelinePath === undefined || !compiled ? undefined : await loadCompiledPipeline(pipelinePath, compiled);
      if (pipeline && pipeline.kind !== 'stream') throw new Error(`--pipeline ${opt('pipeline')} defines a batch job; recomputing a stream's state needs the stream's pipeline`);
      const queueUrl = opt('on-lambda');
      if (queueUrl !== undefined && (opt('bucket') === undefined || opt('prefix') !== undefined)) {
        throw new UsageError('--on-lambda goes with --bucket, without --prefix: the query function reads the bucket from its top', command);
      }
      const onLambda = queueUrl === undefined ? undefined : { queue: await (await import('../shell/query-queue.ts')).queryQueue(queueUrl) };
      const session = {
        store,
        ...(root ? { root } : {}),
        ...(onLambda ? { onLambda } : {}),
        workers: parseCount('workers', values.workers),
        partitions: parseCount('partitions', values.partitions),
        ...(pipeline && compiled && pipelinePath ? { pipeline, compiled, pipelinePath } : {}),
      };
      const { startShell, runQueryScript, formatResult } = await import('../shell/repl.ts');
      if (command === 'shell') {
        await startShell(session, where);
        return 0;
      }
      const file = positionals[0];
      if (!file) throw new UsageError('query needs a script, e.g. top.ts', 'query');
      const source = await readFile(file, 'utf8').catch(() => {
        throw new Error(`query script ${file} does not exist or cannot be read`);
      });
      const answer = await runQueryScript(session, source, path.resolve(file));
      term.line(json ? JSON.stringify(answer ?? null) : formatResult(answer));
      return 0;
    }
    case 'upgrade':
    case 'savepoint':
      term.line(await upgradeCommand(command, positionals, opt));
      return 0;
    case 'demo':
      await runDemo(term, opt('root'));
      return 0;
    default:
      throw new Error(`command ${command} is in the table but not handled`);
  }
}

/** `dstream upgrade` and `dstream savepoint export|import`: see core/streaming/upgrade.ts. */
async function upgradeCommand(command: string, positionals: string[], opt: (name: string) => string | undefined): Promise<string> {
  const existing = (name: string) => {
    const dir = path.resolve(opt(name) ?? '');
    if (!opt(name)) throw new UsageError(`${command} needs --${name}`, command);
    if (!existsSync(dir)) throw new Error(`--${name} ${dir} does not exist`);
    return new FsObjectStore(dir);
  };
  const pipeline = async (at: number) => {
    const file = positionals[at];
    if (!file) throw new UsageError(`${command} needs the pipeline module, e.g. examples/wordcount.ts`, command);
    // Compiled as the runtime compiles it, into the root it upgrades: the fingerprint hashes the operators' compiled code.
    const pipelinePath = path.resolve(file);
    const module = await loadCompiledPipeline(pipelinePath, await compilePipeline(pipelinePath, path.resolve(opt('root') ?? '')));
    if (module.kind !== 'stream') throw new Error(`${file} defines a batch job, which has no state to carry`);
    return module;
  };
  const dropState = opt('drop-state')?.split(',').filter(Boolean) ?? [];
  if (command === 'upgrade') {
    const record = await upgradeStream(existing('root'), await pipeline(0), { dropState });
    return record ? describeUpgrade(record) : 'the stream already runs this code: nothing to upgrade';
  }
  if (positionals[0] === 'export') {
    if (positionals.length > 1) throw new UsageError('savepoint export takes no pipeline: it saves the state of the code that runs the stream', command);
    const out = path.resolve(opt('out') ?? '');
    if (!opt('out')) throw new UsageError('savepoint export needs --out', command);
    const state = await exportSavepoint(existing('root'), new FsObjectStore(out));
    return `savepoint of ${state.pipeline} at interval ${state.boundary} (${state.states.map((s) => s.name).join(', ') || 'no state'}) written to ${out}`;
  }
  if (positionals[0] === 'import') {
    const root = path.resolve(opt('root') ?? '');
    if (!opt('root')) throw new UsageError('savepoint import needs --root', command);
    const record = await importSavepoint(new FsObjectStore(root), existing('from'), await pipeline(1), Date.now(), { dropState });
    return describeUpgrade(record);
  }
  throw new UsageError(`savepoint export or savepoint import, not ${JSON.stringify(positionals[0] ?? '')}`, command);
}

async function open(
  pipeline: string | undefined,
  root: string,
  options: { workers?: number; partitions?: number; maxIntervalsInFlight?: number; intervalMs?: number; chaos?: string; maxAttempts?: number },
) {
  if (!pipeline) throw new UsageError('name the pipeline module, e.g. examples/wordcount.ts');
  return EmbeddedRuntime.open({
    pipelinePath: pipeline,
    root: path.resolve(root),
    ...(options.workers ? { workers: options.workers } : {}),
    ...(options.partitions ? { partitions: options.partitions } : {}),
    ...(options.maxIntervalsInFlight ? { maxIntervalsInFlight: options.maxIntervalsInFlight } : {}),
    ...(options.intervalMs ? { intervalMs: options.intervalMs } : {}),
    ...(options.chaos ? { chaos: options.chaos } : {}),
    ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
  });
}

/**
 * The store `status`, `ui`, `shell` and `query` read: a local root, or an S3 bucket through the
 * default AWS credential chain and region. The AWS SDK is loaded only for --bucket.
 */
async function streamStore(
  command: string,
  root: string | undefined,
  bucket: string | undefined,
  prefix: string | undefined,
): Promise<{ store: ObjectStore; where: string; root?: string }> {
  if ((root === undefined) === (bucket === undefined)) throw new UsageError(`${command} reads one stream: give --root <dir> or --bucket <name>`, command);
  if (root !== undefined) {
    if (prefix !== undefined) throw new UsageError('--prefix goes with --bucket; a local stream is the whole of its --root', command);
    let dir = path.resolve(root);
    if (!(await stat(dir).catch(() => undefined))?.isDirectory()) throw new Error(`root ${dir} does not exist or is not a directory`);
    // The demo's folder (what `npm start` made): its stream is in root/ beside the staged uploads.
    if (existsSync(path.join(dir, DEMO_MARKER)) && !existsSync(path.join(dir, keys.driverProgress))) dir = demoStreamRoot(dir);
    return { store: new FsObjectStore(dir), where: dir, root: dir };
  }
  const [{ S3ObjectStore }, { makeS3Client }] = await Promise.all([import('../../functions/aws/s3-object-store.ts'), import('../../functions/aws/clients.ts')]);
  // The region from the environment, else the SDK's own chain (the profile's), not a fixed default:
  // and a bucket in another region is followed there.
  const region = process.env.AWS_REGION || process.env.AWS_DEFAULT_REGION || undefined;
  const client = makeS3Client(process.env, { region, followRegionRedirects: true });
  return { store: new S3ObjectStore({ client, bucket: bucket!, ...(prefix ? { prefix } : {}) }), where: `s3://${bucket}/${prefix ?? ''}` };
}

/** The version of the package this command belongs to. */
async function packageVersion(): Promise<string> {
  return (JSON.parse(await readFile(path.join(packageRoot(), 'package.json'), 'utf8')) as { version: string }).version;
}

export async function runCli(argv: string[]): Promise<void> {
  // A reader that stopped reading (`dstream demo | head -2`) is no error of ours: stop quietly.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
      process.exit(process.exitCode ?? 0);
    });
  }
  const term = new Terminal(processIo());
  const fail = (text: string) => term.error(`${term.errStyle.red('dstream:')} ${text}`);
  try {
    process.exitCode = await main(argv, term);
  } catch (error) {
    if (error instanceof UsageError) {
      fail(error.message);
      // The usage of the command the error is about, else of the command given, else the general one.
      const command = error.command ?? (argv[0] !== undefined && Object.hasOwn(COMMANDS, argv[0]) ? argv[0] : undefined);
      term.error(`\n${command ? commandUsage(command) : generalUsage()}`);
      process.exitCode = 2;
    } else {
      fail(error instanceof Error ? error.message : String(error));
      // Where the user's code threw (a pipeline module at import, say): the message alone would not say.
      const message = error instanceof Error ? error.message : '';
      for (const frame of userFrames(error, USER_FRAMES_SHOWN)) if (!message.includes(`(at ${frame.location})`)) term.error(`  at ${formatFrame(frame)}`);
      // Kept out of error messages, which logs carry; this terminal is the data owner's own.
      if (error instanceof TaskFailedError && error.record !== undefined) fail(`the record: ${error.record}`);
      // Errors meant for users name what is wrong; these are dstream's own bugs, worth a stack.
      const stack = error instanceof Error ? error.stack : undefined;
      if (error instanceof TypeError || error instanceof ReferenceError) fail(`this is a bug in dstream; please report it with this stack:\n${stack}`);
      else if (process.env.DSTREAM_DEBUG && stack) term.error(stack);
      process.exitCode = 1;
    }
  }
}

/** Stack frames shown of an error from the user's code. */
const USER_FRAMES_SHOWN = 5;
