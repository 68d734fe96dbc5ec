/**
 * The code a shell session sends the query function (`--on-lambda`): the stream's pipeline given
 * with `--pipeline`, bundled with its imports into one ESM file as the construct bundles the
 * functions (esbuild, the same banner), so that the function loads it without node_modules. A
 * query itself needs no code: its spec is data, its functions travel as source within it.
 */
import { createHash } from 'node:crypto';
import type { ObjectStore } from '../../core/ports/object-store.ts';
import { keys } from '../../core/layout.ts';
import { REQUIRE_IN_ESM } from '../../infra/esm-banner.ts';

/** The pipeline module at `pipelinePath`, bundled. esbuild is dstream's optional peer dependency, as for the construct. */
export async function bundlePipeline(pipelinePath: string): Promise<Uint8Array> {
  const esbuild = await import('esbuild').catch(() => {
    throw new Error('sending --pipeline to the query function bundles it with esbuild, which is not installed: npm install --save-dev esbuild');
  });
  const result = await esbuild.build({
    entryPoints: [pipelinePath],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'node',
    // The functions' runtime (infra/pipeline-function.ts).
    target: 'node22',
    mainFields: ['module', 'main'],
    banner: { js: REQUIRE_IN_ESM },
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.contents;
}

/** Puts the session's code where the query function finds it; answers its SHA-256, which the session's tasks name. */
export async function uploadQueryCode(store: ObjectStore, session: string, code: Uint8Array): Promise<string> {
  const sha256 = createHash('sha256').update(code).digest('hex');
  await store.put(keys.queryCode(session, sha256), code);
  return sha256;
}
