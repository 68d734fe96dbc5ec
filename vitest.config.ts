import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const source = (file: string) => fileURLToPath(new URL(file, import.meta.url));

export default defineConfig({
  // Tests run the package's sources; processes they start (the CLI, workers) run the build in dist/.
  resolve: {
    alias: [
      { find: /^dstream$/, replacement: source('./core/index.ts') },
      { find: /^dstream\/cdk$/, replacement: source('./infra/index.ts') },
      { find: /^dstream\/testing$/, replacement: source('./local/testing/index.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Two cores: the runtime tests start worker processes of their own.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
