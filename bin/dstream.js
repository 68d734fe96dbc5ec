#!/usr/bin/env node
// The dstream command, run from the JavaScript built in dist/. Pipelines may be TypeScript, so
// TypeScript loading is registered first (tsx); worker processes register it the same way.
import { register } from 'tsx/esm/api';

register();
let cli;
try {
  cli = await import('../dist/local/cli/main.js');
} catch (error) {
  if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !String(error.message).includes('dist/local/cli/main.js')) throw error;
  process.stderr.write('dstream: the package is not built (no dist/): run `npm run build` in it first\n');
  process.exit(1);
}
await cli.runCli(process.argv.slice(2));
