#!/usr/bin/env node
// The dstream command. Pipelines are TypeScript modules, so TypeScript loading is registered
// first (tsx); worker processes register it the same way.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../local/cli/main.ts');
await runCli(process.argv.slice(2));
