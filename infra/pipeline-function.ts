/**
 * A Lambda function of a pipeline: one of the three handler factories in `functions/`, bound to
 * the user's pipeline module by a small entry module generated at synth time, bundled by the local
 * esbuild (never Docker) into one ESM file, within the user's project: its lock file, its
 * node_modules, its `cdk.out`.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { Construct } from 'constructs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { REQUIRE_IN_ESM } from './esm-banner.ts';

export type HandlerKind = 'ingest' | 'driver' | 'task';

/** The factory each kind's `functions/<kind>/handler` exports, and whether it takes the pipeline. */
const FACTORIES: Record<HandlerKind, { factory: string; takesPipeline: boolean }> = {
  ingest: { factory: 'createIngestHandler', takesPipeline: false },
  driver: { factory: 'createDriverHandler', takesPipeline: true },
  task: { factory: 'createTaskHandler', takesPipeline: true },
};

/** dstream's own `functions/`, beside this file's folder, whether it runs from sources or built. */
const FUNCTIONS_DIR = join(import.meta.dirname, '..', 'functions');

/** The lock files NodejsFunction knows, in the order it looks for them. */
const LOCK_FILES = ['pnpm-lock.yaml', 'yarn.lock', 'bun.lockb', 'bun.lock', 'package-lock.json'];

/**
 * The bundled SDK, not the runtime's: the S3 adapter relies on conditional writes (If-None-Match),
 * which the SDK preinstalled in a Lambda runtime (or LocalStack's) may predate.
 */
const BUNDLE_EVERYTHING: string[] = [];


/** The user's project: where esbuild runs and where generated entries are written. */
export interface UserProject {
  readonly lockFile: string;
  readonly root: string;
}

/**
 * The project of the CDK app being synthesized: `depsLockFilePath` if given, else the nearest lock
 * file above the working directory (where `cdk` runs the app), as NodejsFunction looks for it.
 */
export function userProject(depsLockFilePath?: string, from = process.cwd()): UserProject {
  if (depsLockFilePath !== undefined) {
    const lockFile = resolve(depsLockFilePath);
    if (!existsSync(lockFile)) throw new Error(`depsLockFilePath ${lockFile} does not exist`);
    return { lockFile, root: dirname(lockFile) };
  }
  for (let dir = resolve(from); ; dir = dirname(dir)) {
    const lockFile = LOCK_FILES.map((name) => join(dir, name)).find(existsSync);
    if (lockFile) return { lockFile, root: dir };
    if (dirname(dir) === dir) {
      throw new Error(
        `found no lock file (${LOCK_FILES.join(', ')}) in ${resolve(from)} or above it: run cdk from your project, or give depsLockFilePath`,
      );
    }
  }
}

export interface PipelineFunctionProps extends lambda.FunctionOptions {
  readonly kind: HandlerKind;
  /** Absolute path of the module whose default export is the pipeline. */
  readonly pipelineModule: string;
  readonly project: UserProject;
}

export class PipelineFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: PipelineFunctionProps) {
    const { kind, pipelineModule, project, ...options } = props;
    super(scope, id, {
      ...options,
      entry: writeHandlerEntry(kind, pipelineModule, project.root),
      handler: 'handler',
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      projectRoot: project.root,
      depsLockFilePath: project.lockFile,
      bundling: {
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        mainFields: ['module', 'main'],
        banner: REQUIRE_IN_ESM,
        minify: true,
        sourceMap: true,
        externalModules: BUNDLE_EVERYTHING,
      },
    });
  }
}

/** A kind's handler module: `functions/<kind>/handler.ts` in sources, `.js` once built. */
function handlerModule(kind: HandlerKind): string {
  const candidates = ['handler.ts', 'handler.js'].map((name) => join(FUNCTIONS_DIR, kind, name));
  const found = candidates.find(existsSync);
  if (!found) throw new Error(`dstream is incomplete: the ${kind} handler module is missing (looked for ${candidates.join(' and ')})`);
  return found;
}

/**
 * Writes the entry module that binds a kind's handler factory to the pipeline and returns its path:
 * under the project's `cdk.out` (NodejsFunction bundles only entries inside its project root, and
 * nothing is ever written into an installed package). Named by its content, so concurrent synths
 * never write one file with different contents.
 */
export function writeHandlerEntry(kind: HandlerKind, pipelineModule: string, projectRoot: string): string {
  const { factory, takesPipeline } = FACTORIES[kind];
  const source = [
    `// Generated at synth time by dstream's infra/pipeline-function: the ${kind} handler of ${pipelineModule}.`,
    ...(takesPipeline ? [`import pipeline from ${JSON.stringify(pipelineModule)};`] : []),
    `import { ${factory} } from ${JSON.stringify(handlerModule(kind))};`,
    `export const handler = ${factory}(${takesPipeline ? 'pipeline' : ''});`,
    '',
  ].join('\n');
  const dir = join(projectRoot, 'cdk.out', '.dstream-entries', createHash('sha256').update(source).digest('hex').slice(0, 16));
  const entry = join(dir, `${kind}.ts`);
  if (!existsSync(entry)) {
    mkdirSync(dir, { recursive: true });
    const partial = `${entry}.${process.pid}.tmp`;
    writeFileSync(partial, source);
    renameSync(partial, entry);
  }
  return entry;
}
