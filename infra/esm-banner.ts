/**
 * Bundled ESM still meets CommonJS code that calls `require` for Node built-ins: every bundle
 * dstream makes (the functions' assets, the code a shell sends the query function) starts with
 * this. Apart from the construct, so that the shell uses it without loading aws-cdk-lib.
 */
export const REQUIRE_IN_ESM = "import { createRequire as __dstreamCreateRequire } from 'node:module'; const require = __dstreamCreateRequire(import.meta.url);";
