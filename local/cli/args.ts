/**
 * The commands, their options and their help, in one table; parsing is `node:util` parseArgs
 * (strict), with errors reworded to name the command and suggest what was probably meant.
 */
import { parseArgs } from 'node:util';

export class UsageError extends Error {
  /** The command whose usage to show with the error, if one was named. */
  constructor(message: string, readonly command?: string) {
    super(message);
    this.name = 'UsageError';
  }
}

interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** The value's placeholder in help, for string options. */
  value?: string;
  help: string;
}

export interface CommandSpec {
  /** What stands before the options, as help shows it; its length is how many positionals the command takes. */
  args: string[];
  summary: string;
  /** More lines of help, below the usage line. */
  details?: string;
  options: Record<string, OptionSpec>;
}

const root: OptionSpec = { type: 'string', value: '<dir>', help: 'the stream\'s root directory: its object store, laid out as the S3 bucket is' };
const workers: OptionSpec = { type: 'string', value: '<W>', help: 'worker processes running tasks (default: one per core)' };
const partitions: OptionSpec = {
  type: 'string',
  value: '<P>',
  help: 'input splits: how many tasks read an interval\'s uploads (default: twice the workers). Not the pipeline\'s `partitions` option, which is the number of shuffle partitions of keyed operators',
};
const intervalsInFlight: OptionSpec = {
  type: 'string',
  value: '<N>',
  help: 'intervals run at once: interval k+1\'s stages over its own uploads start while k finishes; state, windows and outputs stay in interval order (1 to 16; default 1, one after another)',
};
const json: OptionSpec = { type: 'boolean', help: 'one JSON object per interval report, one per line, for scripts (other messages go to stderr)' };
const maxAttempts: OptionSpec = { type: 'string', value: '<N>', help: 'deliveries of a task before it is dead-lettered and the interval fails (default 4)' };

const queryPipeline: OptionSpec = {
  type: 'string',
  value: '<file>',
  help: 'the stream\'s pipeline module, to recompute from lineage the state sc.state asks for that the cache no longer holds (the code that ran those intervals)',
};

const onLambda: OptionSpec = {
  type: 'string',
  value: '<queue-url>',
  help:
    "with --bucket: run the query's tasks on the deployment's query function (DStreamPipeline's interactiveQueries), through its query queue " +
    '(queryQueue.queueUrl); a --pipeline is bundled with esbuild and sent to it',
};

/** A stream's store: a local root, or a deployed stream's bucket, as status reads it. */
function storeOptions(bucketNote = ''): Record<string, OptionSpec> {
  return {
    root: { ...root, help: 'a local stream\'s root directory' },
    bucket: { type: 'string', value: '<name>', help: `a deployed stream's bucket (AWS credentials and region as the AWS CLI finds them)${bucketNote}` },
    prefix: { type: 'string', value: '<folder>', help: 'with --bucket: the folder of the bucket that holds the stream, if not its top' },
  };
}

export const COMMANDS: Record<string, CommandSpec> = {
  run: {
    args: ['<pipeline>'],
    summary: 'run a stream live: files moved into <root>/incoming/ are its uploads',
    details:
      'Every --interval the files that arrived in <root>/incoming/ become an interval\'s input; write a file\n' +
      'elsewhere (or as .name) and rename it in, for an atomic upload. Runs until Ctrl-C.',
    options: { root, interval: { type: 'string', value: '<duration>', help: 'the interval length: 500ms, 2s, 1m (a unit is required; 100ms to 15m; default 2s)' }, workers, partitions, 'intervals-in-flight': intervalsInFlight, json },
  },
  replay: {
    args: ['<pipeline>'],
    summary: 'run staged intervals in order, deterministically',
    details: '<staged>/<k>/ holds the uploads of interval k. Intervals already committed under the root are kept,\nso a replay that stopped can be run again to finish.',
    options: {
      staged: { type: 'string', value: '<dir>', help: 'the staged uploads, one folder per interval: 0/, 1/, ...' },
      root,
      workers,
      partitions,
      'intervals-in-flight': intervalsInFlight,
      'max-attempts': maxAttempts,
      chaos: {
        type: 'string',
        value: '<spec>',
        help: 'inject faults from a seed, e.g. "seed=1,task-error=0.1,task-crash=0.05,duplicate=0.1,straggler=0.05,slowdown=10,lose-cache=0.1,driver-crash=0.05"',
      },
      json,
    },
  },
  batch: {
    args: ['<job>'],
    summary: 'a new run of a batch job (defineBatch) over the objects under the root as they are now',
    options: { root, workers, partitions, resume: { type: 'string', value: '<run>', help: 'finish run <run>, which stopped' } },
  },
  status: {
    args: [],
    summary: 'where a stream is, how its last intervals went, and what failed',
    details: 'Reads a local root (--root) or the S3 bucket of a deployed pipeline (--bucket, with the default AWS\ncredentials and region), never writing to it.',
    options: {
      ...storeOptions(),
      intervals: { type: 'string', value: '<N>', help: 'how many of the last committed intervals to show (default 10)' },
      json: { type: 'boolean', help: 'the status as one JSON object (with --watch, one per line)' },
      watch: { type: 'boolean', help: 'read it again every interval length, until Ctrl-C' },
    },
  },
  shell: {
    args: [],
    summary: 'an interactive shell over a stream\'s committed outputs, uploads and state, as RDDs',
    details:
      'A Node REPL (TypeScript accepted) with `sc` bound: sc.output(name, { from, to }), sc.textFile(prefix),\n' +
      'sc.jsonFile(prefix), await sc.state(name, k), await sc.intervals(). Actions (collect, take, count,\n' +
      'countByKey, top) run as a query on worker processes and print a table; Ctrl-C cancels one. Queries\n' +
      'read committed data only and write nothing but their scratch, under queries/, removed when they end.\n' +
      'The workers start with the shell and serve every query until it exits.\n' +
      'History is kept in DSTREAM_HISTORY (default ~/.dstream_history).',
    options: { ...storeOptions('; tasks run in this process, or on Lambda with --on-lambda'), workers, partitions, pipeline: queryPipeline, 'on-lambda': onLambda },
  },
  query: {
    args: ['<file>'],
    summary: 'run a query script with the shell\'s `sc`, printing its answer as a table',
    details: 'The script runs as if typed at the shell\'s prompt (TypeScript, top-level await); its last expression\nis the answer, an RDD being collected.',
    options: { ...storeOptions('; tasks run in this process, or on Lambda with --on-lambda'), workers, partitions, pipeline: queryPipeline, 'on-lambda': onLambda, json: { type: 'boolean', help: 'the answer as JSON' } },
  },
  ui: {
    args: [],
    summary: 'a web page of a stream: its intervals, charts, each interval\'s DAG and tasks, updated as it runs',
    details: 'Serves http://127.0.0.1:<port>/ from a local root (--root) or the S3 bucket of a deployed pipeline (--bucket),\nreading only; nothing leaves this machine but the store\'s own reads. Runs until Ctrl-C.',
    options: {
      ...storeOptions(),
      port: { type: 'string', value: '<port>', help: 'the port on 127.0.0.1 to serve on (default 4040; 0 picks a free one)' },
    },
  },
  lineage: {
    args: ['<k>'],
    summary: 'the lineage record of interval k, as a readable graph',
    options: { root, json: { type: 'boolean', help: 'the raw record' }, uploads: { type: 'boolean', help: 'list every upload it read' } },
  },
  quarantine: {
    args: ['<k>'],
    summary: 'carry on from interval k, failed on a bad record',
    details: 'Run the stream again afterwards (run or replay, as before): the interval quarantines its bad records\nunder errors/ instead, without a change of code.',
    options: { root },
  },
  upgrade: {
    args: ['<pipeline>'],
    summary: 'carry a stopped stream on with changed code, keeping its state',
    details:
      'At the interval after the last committed one, the state and window buffers of the running code are\n' +
      'checkpointed and handed to the operators of the same name in <pipeline>; then run the stream with it.',
    options: { root, 'drop-state': { type: 'string', value: '<name>[,<name>...]', help: 'named state the new code may lose (it is set aside, not deleted)' } },
  },
  savepoint: {
    args: ['<export|import>', '[<pipeline>]'],
    summary: 'move a stopped stream\'s state to a fresh root: export it, then import it with a pipeline',
    details: 'dstream savepoint export --root <dir> --out <savepoint>\ndstream savepoint import <pipeline> --from <savepoint> --root <fresh dir>',
    options: {
      root,
      out: { type: 'string', value: '<dir>', help: 'export: the folder to write the savepoint to' },
      from: { type: 'string', value: '<dir>', help: 'import: the savepoint folder' },
      'drop-state': { type: 'string', value: '<name>[,<name>...]', help: 'import: named state the pipeline may lose, as for upgrade' },
    },
  },
  demo: {
    args: [],
    summary: 'WordCount over generated sample text (what npm start runs)',
    options: { root: { type: 'string', value: '<dir>', help: 'where the demo writes (default .dstream/demo); an existing directory must be empty or an earlier demo\'s' } },
  },
};

const help: OptionSpec = { type: 'boolean', short: 'h', help: 'show this help' };

export function generalUsage(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length));
  return [
    'dstream: Discretized Streams on one machine',
    '',
    'Usage: dstream <command> [options]',
    '',
    'Commands:',
    ...Object.entries(COMMANDS).map(([name, spec]) => `  ${name.padEnd(width)}  ${spec.summary}`),
    '',
    'Options:',
    '  -h, --help     help for dstream, or for a command (dstream run --help)',
    '  --version      the version of dstream',
    '',
    'Exit status: 0 done, 1 failed, 2 a usage error. DSTREAM_DEBUG=1 adds the stack to an error.',
  ].join('\n');
}

export function commandUsage(command: string): string {
  const spec = COMMANDS[command]!;
  const options = Object.entries({ ...spec.options, help });
  const label = ([name, o]: [string, OptionSpec]) => `${o.short ? `-${o.short}, ` : ''}--${name}${o.value ? ` ${o.value}` : ''}`;
  const width = Math.max(...options.map((o) => label(o).length));
  return [
    `Usage: dstream ${[command, ...spec.args].join(' ')} [options]`,
    '',
    `${spec.summary[0]!.toUpperCase()}${spec.summary.slice(1)}.`,
    ...(spec.details ? [spec.details] : []),
    '',
    'Options:',
    ...options.map((o) => wrap(`  ${label(o).padEnd(width)}  ${o[1].help}`, width + 4)),
  ].join('\n');
}

const HELP_WIDTH = 100;

/** Lines of at most HELP_WIDTH characters, continued under the option's help. */
function wrap(text: string, indent: number): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/(?<=\S) (?=\S)/)) {
    if (line && line.length + 1 + word.length > HELP_WIDTH) {
      lines.push(line);
      line = ' '.repeat(indent) + word;
    } else line = line ? `${line} ${word}` : word;
  }
  return [...lines, line].join('\n');
}

export interface ParsedCommand {
  command: string;
  positionals: string[];
  values: Record<string, string | boolean | undefined>;
}

/** What argv asks for: a command with its arguments, or help, or the version. */
export type Request = { kind: 'help'; command?: string } | { kind: 'version' } | ({ kind: 'command' } & ParsedCommand);

export function parseCommandLine(argv: string[]): Request {
  const [first, ...rest] = argv;
  if (first === undefined) throw new UsageError('name a command');
  if (first === '-h' || first === '--help') return { kind: 'help' };
  if (first === '--version') return { kind: 'version' };
  if (first === 'help') {
    if (rest[0] !== undefined && !COMMANDS[rest[0]]) throw unknownCommand(rest[0]);
    return { kind: 'help', ...(rest[0] ? { command: rest[0] } : {}) };
  }
  if (first.startsWith('-')) {
    const near = nearest(first, ['--version', '--help']);
    throw new UsageError(`unknown option ${quote(first)}${near ? `; did you mean ${quote(near)}?` : ': options follow the command, as in dstream run --help'}`);
  }
  const spec = COMMANDS[first];
  if (!spec) throw unknownCommand(first);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: { ...spec.options, help }, strict: true, allowPositionals: true });
  } catch (error) {
    throw parseError(first, spec, error);
  }
  if (parsed.values.help) return { kind: 'help', command: first };
  const extra = parsed.positionals.slice(spec.args.length);
  if (extra.length > 0) {
    throw new UsageError(`${first} takes ${spec.args.length || 'no'} argument${spec.args.length === 1 ? '' : 's'} before its options; unexpected ${extra.map(quote).join(', ')}`, first);
  }
  return { kind: 'command', command: first, positionals: parsed.positionals, values: parsed.values };
}

function unknownCommand(name: string): UsageError {
  const near = nearest(name, Object.keys(COMMANDS));
  return new UsageError(`unknown command ${quote(name)}${near ? `; did you mean ${quote(near)}?` : ` (dstream --help lists the commands)`}`);
}

/** parseArgs's errors, reworded to name the command and what it takes. */
function parseError(command: string, spec: CommandSpec, error: unknown): UsageError {
  const code = (error as { code?: string }).code;
  const message = error instanceof Error ? error.message : String(error);
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
    const given = /'(-{1,2}[^'=]*)/.exec(message)?.[1] ?? message;
    const near = nearest(given.replace(/^-+/, ''), Object.keys(spec.options));
    return new UsageError(`${command} has no option ${given}${near ? `; did you mean --${near}?` : ` (it takes ${Object.keys(spec.options).map((o) => `--${o}`).join(', ')})`}`, command);
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    const name = /--([\w-]+)/.exec(message)?.[1];
    const option = name === undefined ? undefined : spec.options[name];
    if (option?.type === 'string') return new UsageError(`${command}: --${name} needs a value (${option.value})`, command);
    if (option?.type === 'boolean') return new UsageError(`${command}: --${name} takes no value`, command);
  }
  return new UsageError(`${command}: ${message}`, command);
}

/** The candidate nearest to a mistyped name, if one is near enough to be what was meant. */
export function nearest(given: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(given.toLowerCase(), c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  // A prefix counts too: --part for --partitions.
  const prefixed = candidates.filter((c) => given.length >= 3 && c.startsWith(given.toLowerCase()));
  if (prefixed.length === 1) return prefixed[0];
  return bestDistance <= Math.max(1, Math.floor(given.length / 3)) ? best : undefined;
}

/** Edits (insert, delete, substitute, swap two neighbours) from a to b: 'repaly' is one from 'replay'. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

const quote = (s: string) => `'${s}'`;

/** `2s`, `500ms`, `1m`: a bare number is refused, since 500 could mean either. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(text.trim());
  if (!m) throw new UsageError(`cannot read ${JSON.stringify(text)} as a duration: give a unit, as in 500ms, 2s or 1m`);
  const value = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  if (value < 100 || value > 15 * 60_000) throw new UsageError(`interval ${text} is outside 100ms to 15m`);
  return Math.round(value);
}

export function parseCount(name: string, text: string | boolean | undefined, min = 1): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (typeof text !== 'string' || text.trim() === '' || !Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be a whole number >= ${min}, got ${String(text)}`);
  return n;
}
