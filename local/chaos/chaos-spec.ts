/**
 * A fault schedule for the embedded runtime, from `--chaos "seed=7,task-crash=0.1,..."`:
 * probabilities per task (or per driver step), drawn from a seeded generator.
 */
export interface ChaosSpec {
  seed: number;
  taskError: number;
  taskCrash: number;
  duplicate: number;
  straggler: number;
  slowdown: number;
  loseCache: number;
  driverCrash: number;
  /** Slow exactly this task (`<stage>/<partition>`) instead of random ones: for measuring. */
  slowTask?: string;
}

export type FaultKind = 'task-error' | 'task-crash' | 'duplicate' | 'straggler' | 'lose-cache' | 'driver-crash';

const FIELDS: Record<string, keyof ChaosSpec> = {
  seed: 'seed',
  'task-error': 'taskError',
  'task-crash': 'taskCrash',
  duplicate: 'duplicate',
  straggler: 'straggler',
  slowdown: 'slowdown',
  'lose-cache': 'loseCache',
  'driver-crash': 'driverCrash',
  'slow-task': 'slowTask',
};

export const noChaos: ChaosSpec = { seed: 0, taskError: 0, taskCrash: 0, duplicate: 0, straggler: 0, slowdown: 10, loseCache: 0, driverCrash: 0 };

export function parseChaos(text: string): ChaosSpec {
  const spec = { ...noChaos };
  for (const part of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    const name = eq < 0 ? part : part.slice(0, eq);
    const field = FIELDS[name];
    if (!field) throw new Error(`--chaos: unknown fault ${JSON.stringify(name)}; known: ${Object.keys(FIELDS).join(', ')}`);
    if (field === 'slowTask') {
      if (!/^[\w.-]+\/\d+$/.test(part.slice(eq + 1))) throw new Error(`--chaos: slow-task is <stage>/<partition>, as in slow-task=map-r3/0`);
      spec.slowTask = part.slice(eq + 1);
      continue;
    }
    const value = Number(part.slice(eq + 1));
    if (eq < 0 || part.slice(eq + 1).trim() === '' || !Number.isFinite(value)) throw new Error(`--chaos: ${name} needs a number, as in ${name}=0.1`);
    if (field === 'seed') {
      if (!Number.isInteger(value)) throw new Error(`--chaos: seed must be a whole number, got ${value}`);
    } else if (field === 'slowdown') {
      if (value < 1) throw new Error(`--chaos: slowdown is a factor >= 1, got ${value}`);
    } else if (value < 0 || value > 1) {
      throw new Error(`--chaos: ${name} is a probability from 0 to 1, got ${value}`);
    }
    (spec as unknown as Record<string, number>)[field] = value;
  }
  return spec;
}

export class InjectedFault extends Error {
  constructor(readonly kind: FaultKind) {
    super(`injected fault: ${kind}`);
    this.name = 'InjectedFault';
  }
}
