/**
 * A pipeline module compiled once for every process that loads it (the driver and each worker):
 * the user's own files, TypeScript or JavaScript, bundled into one JavaScript module kept under
 * the root by the hash of its content. A worker then loads plain JavaScript, without TypeScript
 * support of its own (a third of a second per worker), and a JavaScript pipeline importing a
 * TypeScript file of the user's loads as well as a TypeScript one.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { mkdir, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Plugin } from 'esbuild';
import { packageRoot } from '../package-files.ts';
import { pipelineFromModule, type PipelineModule } from '../../core/runtime/task-handler.ts';
import { userFrames } from './user-frames.ts';

type Esbuild = typeof import('esbuild');
/** esbuild as tsx, a dependency, has it. */
const esbuild = createRequire(import.meta.resolve('tsx'))('esbuild') as Esbuild;

const TYPESCRIPT = /\.(ts|mts|cts|tsx)$/;

/** Where compiled pipelines are kept under a root: beside the queue, outside the store's keys. */
export function pipelineCacheDir(root: string): string {
  return path.join(root, '.dstream', 'pipelines');
}

/** A compiled pipeline: its file, and whether it imports TypeScript that stays apart (dstream's own sources, when it runs from them). */
export interface CompiledPipeline {
  file: string;
  typescript: boolean;
}

/**
 * Bundles `pipelinePath` into `<root>/.dstream/pipelines/<hash>.mjs` (kept when it is there) and
 * answers that file. Installed packages and dstream itself stay imports, by absolute URL, so every
 * process holds one copy of dstream whoever imports it; a TypeScript file among them is bundled.
 * The bundle maps back to the user's files (an inline source map), so the frames of an error name
 * their file and line once source maps are on (`loadCompiledPipeline` turns them on).
 */
export async function compilePipeline(pipelinePath: string, root: string): Promise<CompiledPipeline> {
  try {
    await stat(pipelinePath);
  } catch {
    throw new Error(`pipeline module ${pipelinePath} does not exist`);
  }
  const dir = pipelineCacheDir(root);
  let text: string;
  const imports = { typescript: false };
  try {
    const result = await esbuild.build({
      entryPoints: [pipelinePath],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      // The map's paths are relative to the output: the file lands in this folder under another name.
      outfile: path.join(dir, 'pipeline.mjs'),
      sourcemap: 'inline',
      sourcesContent: false,
      logLevel: 'silent',
      plugins: [sharedImports(imports)],
    });
    text = result.outputFiles[0]!.text;
  } catch (error) {
    const first = (error as { errors?: { text: string; location?: { file: string; line: number; column: number } | null }[] }).errors?.[0];
    const where = first?.location ? ` (at ${path.resolve(first.location.file)}:${first.location.line}:${first.location.column + 1})` : '';
    throw new Error(`pipeline module ${pipelinePath} failed to load: ${first?.text ?? String(error)}${where}`);
  }
  const file = path.join(dir, `${createHash('sha256').update(text).digest('hex').slice(0, 16)}.mjs`);
  if (!(await stat(file).catch(() => undefined))) {
    await mkdir(dir, { recursive: true });
    // Renamed into place: a process loading the same content never sees half of it.
    const temp = `${file}.${process.pid}.tmp`;
    await writeFile(temp, text);
    await rename(temp, file);
  }
  return { file, typescript: imports.typescript };
}

let typescriptRegistered = false;

/**
 * Imports a compiled pipeline's module, `pipelinePath` naming it in errors; source maps on, so the
 * frames of an error thrown while it loads are the user's. TypeScript support is registered only
 * when the bundle imports TypeScript and this process runs built JavaScript (from sources it has it).
 */
export async function importCompiled(pipelinePath: string, compiled: CompiledPipeline): Promise<unknown> {
  process.setSourceMapsEnabled(true);
  try {
    if (compiled.typescript && !TYPESCRIPT.test(import.meta.url) && !typescriptRegistered) {
      (await import('tsx/esm/api')).register();
      typescriptRegistered = true;
    }
    return await import(pathToFileURL(compiled.file).href);
  } catch (error) {
    throw new Error(`pipeline module ${pipelinePath} failed to load: ${describeLoadError(error)}`, { cause: error });
  }
}

/** Loads a compiled pipeline (see importCompiled) and checks that it exports one. */
export async function loadCompiledPipeline(pipelinePath: string, compiled: CompiledPipeline): Promise<PipelineModule> {
  return pipelineFromModule(await importCompiled(pipelinePath, compiled), pipelinePath);
}

/** `message (at file:line:column)` for an error thrown while a module loaded: its first frame in a file of the user's. */
export function describeLoadError(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const [first] = userFrames(error, 1);
  return first ? `${error.message} (at ${first.location})` : error.message;
}

/** Installed packages and dstream's own modules as imports by absolute URL; the user's files, and any TypeScript, bundled. */
function sharedImports(imports: { typescript: boolean }): Plugin {
  const own = ['core', 'local', 'infra', 'functions', 'dist'].map((d) => path.join(packageRoot(), d) + path.sep);
  return {
    name: 'dstream-shared-imports',
    setup(build) {
      build.onResolve({ filter: /.*/ }, async (args) => {
        if (args.kind === 'entry-point' || args.pluginData?.resolving) return undefined;
        const resolved = await build.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: { resolving: true } });
        if (resolved.errors.length > 0 || resolved.external || resolved.path === '') return resolved.errors.length > 0 ? { errors: resolved.errors } : undefined;
        const isOwn = own.some((d) => resolved.path.startsWith(d));
        const installed = resolved.path.includes(`${path.sep}node_modules${path.sep}`);
        // dstream's own sources are TypeScript when it runs from them (a repository's examples): the loader needs tsx then.
        if (isOwn || (installed && !TYPESCRIPT.test(resolved.path))) {
          if (TYPESCRIPT.test(resolved.path)) imports.typescript = true;
          return { path: pathToFileURL(resolved.path).href, external: true };
        }
        return { path: resolved.path };
      });
    },
  };
}
