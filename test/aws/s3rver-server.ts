/**
 * s3rver, an S3-compatible server written in Node, run as a child process on a free port over a
 * temporary directory: the S3 adapter talks real HTTP to it through the real SDK client.
 *
 * A child process because s3rver's ListObjectsV2 continuation tokens are DES-encrypted, and
 * OpenSSL 3 (Node >= 17) offers DES only with --openssl-legacy-provider; without it every listing
 * longer than one page fails with a 500.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export interface RunningS3rver {
  endpoint: string;
  /** The fixed credentials s3rver checks signatures against. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  stop(): Promise<void>;
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

// Prints the port once listening; exits when its stdin closes, so it never outlives the tests.
const SERVER_SCRIPT = `
const S3rver = require('s3rver');
const [directory, buckets] = [process.argv[1], JSON.parse(process.argv[2])];
const server = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true, configureBuckets: buckets.map((name) => ({ name })) });
server.run().then(({ port }) => console.log(JSON.stringify({ port })));
process.stdin.on('end', () => process.exit(0)).resume();
`;

export async function startS3rver(buckets: string[]): Promise<RunningS3rver> {
  const directory = await mkdtemp(join(tmpdir(), 'dstream-s3rver-'));
  const child = spawn(process.execPath, ['--openssl-legacy-provider', '-e', SERVER_SCRIPT, directory, JSON.stringify(buckets)], {
    cwd: REPO_ROOT,
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`s3rver exited with code ${code} before it was listening`);
  });
  const firstLine = once(createInterface({ input: child.stdout! }), 'line').then(([line]) => line as string);
  const { port } = JSON.parse(await Promise.race([firstLine, exited])) as { port: number };
  exited.catch(() => undefined);
  return {
    endpoint: `http://127.0.0.1:${port}`,
    credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
    async stop() {
      child.stdin!.end();
      if (child.exitCode === null) await once(child, 'exit');
      await rm(directory, { recursive: true, force: true });
    },
  };
}
