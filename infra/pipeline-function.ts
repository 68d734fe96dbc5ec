/**
 * A Lambda function of a pipeline: one of the three handler factories in `functions/`, bound to
 * the user's pipeline module by a small entry module generated at synth time, bundled by the local
 * esbuild (never Docker) into one ESM file.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Construct } from 'constructs';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';

export type HandlerKind = 'ingest' | 'driver' | 'task';

/** The factory each kind's `functions/<kind>/handler.ts` exports, and whether it takes the pipeline. */
const FACTORIES: Record<HandlerKind, { factory: string; takesPipeline: boolean }> = {
  ingest: { factory: 'createIngestHandler', takesPipeline: false },
  driver: { factory: 'createDriverHandler', takesPipeline: true },
  task: { factory: 'createTaskHandler', takesPipeline: true },
};

/** The repository root: esbuild runs here and finds node_modules and the lock file. */
export const PROJECT_ROOT = join(import.meta.dirname, '..');

/**
 * Generated entries live under the project root because NodejsFunction bundles only entries inside
 * its project root; cdk.out is ignored by git and by the typecheck.
 */
const ENTRIES_DIR = join(PROJECT_ROOT, 'cdk.out', '.dstream-entries');

/**
 * The bundled SDK, not the runtime's: the S3 adapter relies on conditional writes (If-None-Match),
 * which the SDK preinstalled in a Lambda runtime (or LocalStack's) may predate.
 */
const BUNDLE_EVERYTHING: string[] = [];

/** Bundled ESM still meets CommonJS code that calls `require` for Node built-ins. */
const REQUIRE_IN_ESM = "import { createRequire as __dstreamCreateRequire } from 'node:module'; const require = __dstreamCreateRequire(import.meta.url);";

export interface PipelineFunctionProps extends lambda.FunctionOptions {
  kind: HandlerKind;
  /** Absolute path of the module whose default export is the pipeline. */
  pipelineModule: string;
  /** Absolute path of the directory holding `<kind>/handler.ts`. */
  functionsDir: string;
}

export class PipelineFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: PipelineFunctionProps) {
    const { kind, pipelineModule, functionsDir, ...options } = props;
    super(scope, id, {
      ...options,
      entry: writeHandlerEntry(kind, pipelineModule, functionsDir),
      handler: 'handler',
      runtime: lambda.Runtime.NODEJS_22_X,
      architecture: lambda.Architecture.ARM_64,
      projectRoot: PROJECT_ROOT,
      depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
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

/**
 * Writes the entry module that binds a kind's handler factory to the pipeline and returns its path.
 * Named by its content, so concurrent synths never write one file with different contents.
 */
export function writeHandlerEntry(kind: HandlerKind, pipelineModule: string, functionsDir: string): string {
  const { factory, takesPipeline } = FACTORIES[kind];
  const handlerModule = join(functionsDir, kind, 'handler.ts');
  if (!existsSync(handlerModule)) {
    throw new Error(`the ${kind} handler module is missing: expected ${handlerModule} exporting ${factory}()`);
  }
  const source = [
    `// Generated at synth time by infra/pipeline-function.ts: the ${kind} handler of ${pipelineModule}.`,
    ...(takesPipeline ? [`import pipeline from ${JSON.stringify(pipelineModule)};`] : []),
    `import { ${factory} } from ${JSON.stringify(handlerModule)};`,
    `export const handler = ${factory}(${takesPipeline ? 'pipeline' : ''});`,
    '',
  ].join('\n');
  const dir = join(ENTRIES_DIR, createHash('sha256').update(source).digest('hex').slice(0, 16));
  const entry = join(dir, `${kind}.ts`);
  if (!existsSync(entry)) {
    mkdirSync(dir, { recursive: true });
    const partial = `${entry}.${process.pid}.tmp`;
    writeFileSync(partial, source);
    renameSync(partial, entry);
  }
  return entry;
}
