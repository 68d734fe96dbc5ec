import { fileURLToPath } from 'node:url';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { STRICT_OPTIONS } from '../support/compiler.ts';

/**
 * Every public member of what users import has a doc comment: each export of the entry points
 * (`dstream`, `dstream/testing`), and each public property, accessor, method and constructor of
 * its classes and interfaces, constructor parameter properties included. A member the docs leave
 * out must still say why, with `@internal` and a sentence. Read from the sources with the
 * TypeScript compiler API (typedoc, which `npm run docs` runs with the same rule, is too slow here).
 */
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const options = STRICT_OPTIONS;

/** Text of the doc comments on `node` (its own `/** *\/` comments and the text of their tags); '' when none. */
function docText(node: ts.Node): string {
  const parts: string[] = [];
  for (const doc of ts.getJSDocCommentsAndTags(node)) {
    const comments = ts.isJSDoc(doc) ? [doc.comment, ...(doc.tags ?? []).map((t) => t.comment)] : [doc.comment];
    for (const c of comments) parts.push(typeof c === 'string' ? c : ts.getTextOfJSDocComment(c) ?? '');
  }
  return parts.join(' ').trim();
}

function isPublic(member: ts.ClassElement | ts.ParameterDeclaration): boolean {
  if (member.name && ts.isPrivateIdentifier(member.name)) return false;
  const flags = ts.getCombinedModifierFlags(member as ts.Declaration);
  return (flags & (ts.ModifierFlags.Private | ts.ModifierFlags.Protected)) === 0;
}

/** An export, or a public member of an exported class or interface, with its doc comment. */
interface Documented {
  /** `Export` or `Export.member`. */
  name: string;
  doc: string;
  internal: boolean;
  /** For a method: its return type, as the compiler writes it. */
  returns?: string;
}

/** The exports of `entryFiles` and the public members of their classes and interfaces. */
function publicApi(entryFiles: string[], virtual: Record<string, string> = {}): Documented[] {
  const host = ts.createCompilerHost(options);
  const readFile = host.readFile.bind(host);
  const getSourceFile = host.getSourceFile.bind(host);
  host.fileExists = (name) => name in virtual || ts.sys.fileExists(name);
  host.readFile = (name) => virtual[name] ?? readFile(name);
  host.getSourceFile = (name, language, onError) =>
    name in virtual ? ts.createSourceFile(name, virtual[name]!, language) : getSourceFile(name, language, onError);
  const program = ts.createProgram(entryFiles, options, host);
  const checker = program.getTypeChecker();
  const found: Documented[] = [];
  const add = (node: ts.Node, name: string) =>
    found.push({
      name,
      doc: docText(node),
      internal: ts.getJSDocTags(node).some((t) => t.tagName.text === 'internal'),
      ...(ts.isMethodDeclaration(node) ? { returns: checker.typeToString(checker.getSignatureFromDeclaration(node)!.getReturnType()) } : {}),
    });
  for (const file of entryFiles) {
    const source = program.getSourceFile(file);
    const module = source && checker.getSymbolAtLocation(source);
    if (!module) throw new Error(`${file}: not a module the compiler could read`);
    for (const exported of checker.getExportsOfModule(module)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      const name = exported.getName();
      for (const declaration of symbol.getDeclarations() ?? []) {
        add(declaration, name);
        if (ts.isClassDeclaration(declaration)) {
          for (const member of declaration.members) {
            if (ts.isConstructorDeclaration(member)) {
              add(member, `${name}.constructor`);
              for (const parameter of member.parameters) {
                const property = ts.getCombinedModifierFlags(parameter) & ts.ModifierFlags.ParameterPropertyModifier;
                if (property && isPublic(parameter)) add(parameter, `${name}.${parameter.name.getText()}`);
              }
            } else if (member.name && isPublic(member)) {
              add(member, `${name}.${member.name.getText()}`);
            }
          }
        } else if (ts.isInterfaceDeclaration(declaration)) {
          for (const member of declaration.members) add(member, `${name}.${member.name?.getText() ?? '(signature)'}`);
        }
      }
    }
  }
  return found;
}

/** Names of the undocumented exports and public members, sorted, each once. */
const undocumented = (api: Documented[]) => [...new Set(api.filter((d) => d.doc === '').map((d) => d.name))].sort();

/**
 * The public methods of `classes` whose doc names no Spark counterpart (nor says there is none:
 * "No Spark counterpart"), and those returning a stream or RDD (transformations) whose doc does
 * not say whether they are narrow or a shuffle.
 */
function operatorGaps(api: Documented[], classes: string[]): { operators: number; withoutSpark: string[]; withoutCost: string[] } {
  const operators = api.filter((d) => d.returns !== undefined && !d.internal && classes.includes(d.name.split('.')[0]!));
  const stream = new RegExp(`^(${classes.join('|')})(<|$)`);
  const transformations = operators.filter((d) => stream.test(d.returns!));
  return {
    operators: operators.length,
    withoutSpark: operators.filter((d) => !d.doc.includes('Spark')).map((d) => d.name),
    withoutCost: transformations.filter((d) => !/narrow|shuffle/i.test(d.doc)).map((d) => d.name),
  };
}

const fixture = path.join(root, 'test/types/virtual/undocumented.ts');
/** A module with each kind of member documented and not: what the checks must find, and only that. */
const fixtureSource = `
/** Documented. */
export class Stream {
  /** Documented. */
  readonly slide = 1;
  readonly id = 'd0';
  private readonly hidden = 0;
  #alsoHidden = 0;
  /** @internal Made by operators. */
  constructor(
    /** @internal The graph. */
    readonly graph: object,
    readonly kind: string,
    private readonly secret: string,
    plain: number,
  ) {}
  /** Keeps some records. Narrow. */
  filter(): Stream { return this; }
  /** Per key, values combined. Spark: \`reduceByKey\`. */
  reduceByKey(): Stream { return this; }
  groupByKey(): Stream { return this; }
  /** Writes them. Spark: \`saveAsTextFiles\`. */
  save(): void {}
  /** @internal */
  bare(): void {}
  protected helper(): void {}
}
export interface Options {
  /** Documented. */
  name: string;
  partitions?: number;
}
export function definePipeline(): void {}
`;

describe('doc comments on the public API', () => {
  const api = publicApi(['core/index.ts', 'local/testing/index.ts'].map((file) => path.join(root, file)));
  const fixtureApi = publicApi([fixture], { [fixture]: fixtureSource });

  it('documents every export of dstream and dstream/testing, and every public member of their classes and interfaces', () => {
    const missing = undocumented(api);

    expect(missing, 'these need a doc comment (or `@internal` and why)').toEqual([]);
  });

  it('says of every operator of DStream and Rdd its Spark counterpart, and of each transformation whether it is narrow or a shuffle', () => {
    const gaps = operatorGaps(api, ['DStream', 'Rdd', 'MapWithStateStream']);

    expect(gaps.operators).toBeGreaterThan(60);
    expect(gaps.withoutSpark, 'name the Spark counterpart, or say there is none').toEqual([]);
    expect(gaps.withoutCost, 'say whether it is narrow or a shuffle').toEqual([]);
  });

  it('finds each undocumented export and member, and only those', () => {
    const missing = undocumented(fixtureApi);

    expect(missing).toEqual(['Options', 'Options.partitions', 'Stream.bare', 'Stream.groupByKey', 'Stream.id', 'Stream.kind', 'definePipeline']);
  });

  it('finds each operator without its Spark counterpart, and each transformation without its cost', () => {
    const gaps = operatorGaps(fixtureApi, ['Stream']);

    expect(gaps).toEqual({ operators: 4, withoutSpark: ['Stream.filter', 'Stream.groupByKey'], withoutCost: ['Stream.reduceByKey', 'Stream.groupByKey'] });
  });
});
