/** A small argument parser: positionals, and `--name value` / `--flag` options. */
export interface ParsedArgs {
  positionals: string[];
  options: Map<string, string | true>;
}

export function parseArgs(argv: string[], flags: string[] = []): ParsedArgs {
  const positionals: string[] = [];
  const options = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('--')) {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    if (eq > 0) options.set(name, arg.slice(eq + 1));
    else if (flags.includes(name)) options.set(name, true);
    else {
      const value = argv[i + 1];
      if (value === undefined || value.startsWith('--')) throw new UsageError(`--${name} needs a value`);
      options.set(name, value);
      i++;
    }
  }
  return { positionals, options };
}

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** `2s`, `500ms`, `1m`: a bare number is refused, since 500 could mean either. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(text.trim());
  if (!m) throw new UsageError(`cannot read ${JSON.stringify(text)} as a duration: give a unit, as in 500ms, 2s or 1m`);
  const value = Number(m[1]) * (m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000);
  if (value < 100 || value > 15 * 60_000) throw new UsageError(`interval ${text} is outside 100ms to 15m`);
  return Math.round(value);
}

export function parseCount(name: string, text: string | true | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (text === true || !Number.isInteger(n) || n < 1) throw new UsageError(`--${name} must be a whole number >= 1, got ${String(text)}`);
  return n;
}
