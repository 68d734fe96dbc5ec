import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { STRICT_OPTIONS } from '../support/compiler.ts';

/**
 * What the types say about pipelines, checked by the TypeScript compiler in strict mode: the typed
 * example and the README's pipeline compile with no type arguments, and programs storing what the
 * codec cannot store fail to compile where the mistake is. The wrong programs are virtual files
 * here (the repository's own typecheck would otherwise fail on them).
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const virtualDir = path.join(root, 'test/types/virtual');

const header = `import { definePipeline, type State } from 'dstream';\n`;

/** Each wrong program: its source (the line marked `// <-` is where the error must be) and what the error says. */
const wrong: Record<string, { source: string; message: RegExp }> = {
  'map-in-output.ts': {
    source: `${header}export default definePipeline({ name: 'p' }, (ctx) => {
  ctx.jsonStream<Map<string, number>>().saveAsJsonFiles('maps'); // <-
});\n`,
    message: /NotStorable<"a Map/,
  },
  'map-from-map.ts': {
    source: `${header}export default definePipeline({ name: 'p' }, (ctx) => {
  ctx.textStream().map((w) => new Map([[w, 1]])) // <-
    .saveAsJsonFiles('maps');
});\n`,
    message: /NotStorable<"a Map/,
  },
  'date-into-shuffle.ts': {
    source: `${header}export default definePipeline({ name: 'p' }, (ctx) => {
  ctx.textStream().map((w) => [w, new Date()]) // <-
    .groupByKey().saveAsJsonFiles('dates');
});\n`,
    message: /NotStorable<"a Date/,
  },
  'state-of-wrong-type.ts': {
    source: `${header}export default definePipeline({ name: 'p' }, (ctx) => {
  ctx.textStream().map((w) => [w, 1])
    .updateStateByKey((values, total: number | undefined) => \`\${total}\${values.length}\`) // <-
    .saveAsJsonFiles('totals');
});\n`,
    message: /'string' is not assignable to type 'number'/,
  },
  'set-as-state.ts': {
    source: `${header}export default definePipeline({ name: 'p' }, (ctx) => {
  ctx.textStream().map((w) => [w, w.length])
    .mapWithState({ update: (w, n, seen: State<Set<number>>) => { seen.update(new Set([n!])); return w; }, initial: [['a', new Set([1])]] }) // <-
    .saveAsJsonFiles('sets');
});\n`,
    message: /NotStorable<"a Set/,
  },
  'undefined-in-record.ts': {
    source: `${header}export default definePipeline({ name: 'p' }, (ctx) => {
  ctx.textStream().map((w) => ({ word: w, next: w.length > 3 ? w : undefined })) // <-
    .saveAsJsonFiles('words');
});\n`,
    message: /undefined/,
  },
};

/** The README's pipeline: every ```ts block of "Writing a pipeline" that imports dstream. */
function readmePipelines(): string[] {
  const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
  const section = readme.split('\n## Writing a pipeline\n')[1]!.split('\n## ')[0]!;
  return [...section.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((code) => code.includes(`from 'dstream'`));
}

function compile(files: Record<string, string>): ts.Diagnostic[] {
  const options: ts.CompilerOptions = {
    ...STRICT_OPTIONS,
    // Pipelines import the package by its name, whatever it is built to.
    paths: { dstream: [path.join(root, 'core/index.ts')] },
  };
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.fileExists = (name) => name in files || ts.sys.fileExists(name);
  host.readFile = (name) => files[name] ?? readFile(name);
  host.getSourceFile = (name, language, onError) =>
    name in files ? ts.createSourceFile(name, files[name]!, language) : getSourceFile(name, language, onError);
  const program = ts.createProgram(Object.keys(files), options, host);
  return [...program.getSemanticDiagnostics(), ...program.getSyntacticDiagnostics()];
}

function describeDiagnostic(d: ts.Diagnostic): { file: string; line: number; message: string } {
  const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
  return { file: d.file ? path.relative(root, d.file.fileName) : '', line, message: ts.flattenDiagnosticMessageText(d.messageText, '\n') };
}

describe('the types of a pipeline (tsc, strict)', () => {
  const example = path.join(root, 'examples/typed-sessions.ts');
  const readme = readmePipelines();
  const files: Record<string, string> = { [example]: readFileSync(example, 'utf8') };
  readme.forEach((code, i) => (files[path.join(virtualDir, `readme-${i}.ts`)] = code));
  for (const [name, { source }] of Object.entries(wrong)) files[path.join(virtualDir, name)] = source;
  const diagnostics = compile(files).map(describeDiagnostic);

  it('compiles the typed example and the README pipeline, which use no type arguments', () => {
    expect(readme.length).toBeGreaterThan(0);
    for (const code of [files[example]!, ...readme]) expect(code).not.toMatch(/(updateStateByKey|mapWithState|map|reduceByKey)</);
    const ours = diagnostics.filter((d) => d.file === 'examples/typed-sessions.ts' || d.file.startsWith('test/types/virtual/readme-'));
    expect(ours).toEqual([]);
  });

  it.each(Object.entries(wrong))('refuses %s at the marked line', (name, { source, message }) => {
    const marked = source.split('\n').findIndex((line) => line.includes('// <-')) + 1;
    const errors = diagnostics.filter((d) => d.file === `test/types/virtual/${name}`);
    expect(errors).toContainEqual(expect.objectContaining({ line: marked, message: expect.stringMatching(message) }));
  });
});
