import { existsSync } from 'node:fs';
import path from 'node:path';
import { FsObjectStore } from '../store/fs-object-store.ts';
import { quarantineInterval, readLineageRecord, readLineageUploads } from '../../core/streaming/lineage.ts';
import { EmbeddedRuntime } from '../runtime/embedded-runtime.ts';
import { TaskFailedError } from '../../core/scheduler/dag-scheduler.ts';
import { parseArgs, parseCount, parseDuration, UsageError } from './args.ts';
import { formatChaos, formatInterval, formatLineage } from './format.ts';
import { runDemo } from './demo.ts';

const USAGE = `dstream: Discretized Streams on one machine

  dstream run <pipeline.ts> --root <dir> [--interval 2s] [--workers W] [--partitions P]
      live: files moved into <root>/incoming/ are uploads; each lands in the interval it arrived in
  dstream replay <pipeline.ts> --staged <dir> --root <dir> [--partitions P] [--workers W] [--chaos spec] [--max-attempts N]
      deterministic: <dir>/<k>/ holds the uploads of interval k; runs them all in order
  dstream batch <job.ts> --root <dir> [--workers W] [--partitions P] [--resume <run>]
      a new run of a batch job (defineBatch) over objects under <root> as they are now;
      --resume finishes a run that stopped
  dstream lineage <k> --root <dir> [--json] [--uploads]
      the lineage record of interval k, as a readable graph; --uploads lists every upload it read
  dstream quarantine <k> --root <dir>
      carry on from interval k, failed on a bad record: run the stream again (run or replay) and
      the interval quarantines its bad records under errors/ instead, without a change of code
  dstream demo [--root <dir>]
      WordCount on generated sample data (what npm start runs)

  --max-attempts N: deliveries of a task before it is dead-lettered and the interval fails (default 4)
  --chaos "seed=1,task-error=0.1,task-crash=0.05,duplicate=0.1,straggler=0.05,slowdown=10,lose-cache=0.1,driver-crash=0.05"`;

/** What each command takes: how many positionals, and which options. */
const COMMANDS: Record<string, { positionals: number; options: string[] }> = {
  run: { positionals: 1, options: ['root', 'interval', 'workers', 'partitions'] },
  replay: { positionals: 1, options: ['root', 'staged', 'partitions', 'workers', 'chaos', 'max-attempts'] },
  batch: { positionals: 1, options: ['root', 'workers', 'partitions', 'resume'] },
  lineage: { positionals: 1, options: ['root', 'json', 'uploads'] },
  quarantine: { positionals: 1, options: ['root'] },
  demo: { positionals: 0, options: ['root'] },
};

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const args = parseArgs(rest, ['json', 'uploads', 'help']);
  const accepted = command === undefined ? undefined : COMMANDS[command];
  if (accepted) {
    // A mistyped option must not run with defaults as if it were not there.
    for (const name of args.options.keys()) {
      if (!accepted.options.includes(name)) throw new UsageError(`${command} has no option --${name} (it takes ${accepted.options.map((o) => `--${o}`).join(', ')})`);
    }
    const extra = args.positionals.slice(accepted.positionals);
    if (extra.length > 0) throw new UsageError(`${command} takes ${accepted.positionals} argument${accepted.positionals === 1 ? '' : 's'} before its options; unexpected ${extra.map((e) => JSON.stringify(e)).join(', ')}`);
  }
  const opt = (name: string) => {
    const v = args.options.get(name);
    return v === true ? undefined : v;
  };
  const required = (name: string) => {
    const v = opt(name);
    if (!v) throw new UsageError(`${command} needs --${name}`);
    return v;
  };
  /** The runtime the command names: its pipeline, root, workers and partitions. */
  const openRuntime = (extra: { intervalMs?: number; chaos?: string; maxAttempts?: number } = {}) =>
    open(args.positionals[0], required('root'), {
      workers: parseCount('workers', args.options.get('workers')),
      partitions: parseCount('partitions', args.options.get('partitions')),
      ...extra,
    });
  const intervalArgument = () => {
    const k = Number(args.positionals[0]);
    if (!/^\d+$/.test(args.positionals[0] ?? '') || !Number.isSafeInteger(k)) throw new UsageError(`${command} needs an interval number, got ${JSON.stringify(args.positionals[0])}`);
    return k;
  };
  switch (command) {
    case 'run': {
      const runtime = await openRuntime({ intervalMs: parseDuration(opt('interval') ?? '2s') });
      const controller = new AbortController();
      process.once('SIGINT', () => controller.abort());
      process.once('SIGTERM', () => controller.abort());
      console.log(`watching ${path.join(runtime.options.root, 'incoming')} every ${runtime.config.intervalMs} ms (Ctrl-C to stop)`);
      try {
        await runtime.live({ signal: controller.signal, onInterval: (r) => console.log(formatInterval(r)) });
      } finally {
        await runtime.close();
      }
      return 0;
    }
    case 'replay': {
      const staged = required('staged');
      const runtime = await openRuntime({
        maxAttempts: parseCount('max-attempts', args.options.get('max-attempts')),
        ...(opt('chaos') ? { chaos: opt('chaos')! } : {}),
      });
      try {
        const reports = await runtime.replay(staged, (r) => console.log(formatInterval(r)));
        console.log(`${reports.length} intervals committed under ${path.join(runtime.options.root, 'output')}`);
        if (runtime.chaos) console.log(formatChaos(runtime.chaosReport()));
      } finally {
        await runtime.close();
      }
      return 0;
    }
    case 'batch': {
      const runtime = await openRuntime();
      try {
        const result = await runtime.batch(opt('resume'));
        console.log(`batch run ${result.run}`);
        for (const [name, folder] of Object.entries(result.outputs)) console.log(`output ${name}: ${path.join(runtime.options.root, folder)}`);
        for (const [name, records] of Object.entries(result.collected)) {
          console.log(`${name} (${records.length} records):`);
          for (const r of records.slice(0, 20)) console.log(`  ${typeof r === 'string' ? r : JSON.stringify(r)}`);
        }
      } finally {
        await runtime.close();
      }
      return 0;
    }
    case 'quarantine': {
      const k = intervalArgument();
      const root = path.resolve(required('root'));
      if (!existsSync(root)) throw new Error(`root ${root} does not exist`);
      console.log(`${await quarantineInterval(new FsObjectStore(root), k)}: run the stream again (dstream run or replay, as before) to go on`);
      return 0;
    }
    case 'lineage': {
      const k = intervalArgument();
      const store = new FsObjectStore(path.resolve(required('root')));
      const record = await readLineageRecord(store, k);
      if (!record) {
        console.error(`no lineage record for interval ${k} under ${required('root')}`);
        return 1;
      }
      const uploads = args.options.get('uploads') ? await readLineageUploads(store, record) : undefined;
      if (args.options.get('json')) console.log(JSON.stringify(uploads ? { ...record, uploads } : record, null, 2));
      else console.log(formatLineage(record, uploads));
      return 0;
    }
    case 'demo':
      await runDemo(opt('root'));
      return 0;
    case undefined:
    case 'help':
    case '--help':
      console.log(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
}

async function open(
  pipeline: string | undefined,
  root: string,
  options: { workers?: number; partitions?: number; intervalMs?: number; chaos?: string; maxAttempts?: number },
) {
  if (!pipeline) throw new UsageError('name the pipeline module, e.g. examples/wordcount.ts');
  return EmbeddedRuntime.open({
    pipelinePath: pipeline,
    root: path.resolve(root),
    ...(options.workers ? { workers: options.workers } : {}),
    ...(options.partitions ? { partitions: options.partitions } : {}),
    ...(options.intervalMs ? { intervalMs: options.intervalMs } : {}),
    ...(options.chaos ? { chaos: options.chaos } : {}),
    ...(options.maxAttempts ? { maxAttempts: options.maxAttempts } : {}),
  });
}

export async function runCli(argv: string[]): Promise<void> {
  try {
    process.exitCode = await main(argv);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`dstream: ${error.message}\n\n${USAGE}`);
      process.exitCode = 2;
    } else {
      console.error(`dstream: ${error instanceof Error ? error.message : String(error)}`);
      // Kept out of error messages, which logs carry; this terminal is the data owner's own.
      if (error instanceof TaskFailedError && error.record !== undefined) console.error(`the record: ${error.record}`);
      // Errors meant for users name what is wrong; these are dstream's own bugs, worth a stack.
      const stack = error instanceof Error ? error.stack : undefined;
      if (error instanceof TypeError || error instanceof ReferenceError) console.error(`this is a bug in dstream; please report it with this stack:\n${stack}`);
      else if (process.env.DSTREAM_DEBUG && stack) console.error(stack);
      process.exitCode = 1;
    }
  }
}
