import ts from 'typescript';

/** What the type tests compile with: a user's strict NodeNext project, importing sources by their `.ts` names. */
export const STRICT_OPTIONS: ts.CompilerOptions = {
  strict: true,
  noEmit: true,
  target: ts.ScriptTarget.ES2022,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  allowImportingTsExtensions: true,
  skipLibCheck: true,
  types: ['node'],
  lib: ['lib.es2023.d.ts'],
};
