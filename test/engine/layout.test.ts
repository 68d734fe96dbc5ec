/**
 * core/layout.ts builds every key and is the only place that parses one: each parser reads back
 * what its builder wrote, and no other source file holds a pattern for a key.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';
import { expect, it } from 'vitest';
import { batchScope, intervalOf, intervalScope, keys, parsePersisted, parseShuffleMap, parseTaskFailed, partitionOfTaskDone, stageOfTaskKey } from '../../core/layout.ts';

it('each parser reads back the parts its builder put in a key', () => {
  const scope = intervalScope(12);
  expect(intervalOf(scope)).toBe(12);
  expect(intervalOf(batchScope('job1', 'abc'))).toBeUndefined();
  expect(parseShuffleMap(keys.shuffleMap(scope, 'rdd-3', 7))).toEqual({ scope, rdd: 'rdd-3', map: 7 });
  expect(parseShuffleMap(keys.output('counts', scope, 7))).toBeUndefined();
  const location = keys.persistLocation('checkpoint', scope, 'totals');
  expect(parsePersisted(keys.persisted(location, 3))).toEqual({ location, partition: 3 });
  expect(parsePersisted(keys.lineageRecord(scope))).toBeUndefined();
  const done = keys.taskDone(scope, 'out-counts', 4);
  expect([stageOfTaskKey(done), partitionOfTaskDone(done), parseTaskFailed(done)]).toEqual(['out-counts', 4, undefined]);
  expect(parseTaskFailed(keys.taskFailed(scope, 'out-counts', 4, 'ab12'))).toEqual({ stage: 'out-counts', partition: 4, run: 'ab12' });
});

/** Words that only a key's pattern would hold: the store's top folders and the parts of their keys. */
const KEY_WORDS = /interval=|batch=|part-|map-|lineage|cache|checkpoints|output\\\/|errors\\\/|intake|tasks\\\//;

it('no source file outside core/layout.ts holds a regular expression for a key', async () => {
  const root = path.resolve(import.meta.dirname, '../..');
  const sources: string[] = [];
  for (const folder of ['core', 'local', 'functions', 'infra']) {
    for (const entry of await readdir(path.join(root, folder), { recursive: true, withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith('.ts')) sources.push(path.relative(root, path.join(entry.parentPath, entry.name)));
    }
  }
  const found: string[] = [];
  for (const file of sources.filter((f) => f !== path.join('core', 'layout.ts'))) {
    const source = ts.createSourceFile(file, await readFile(path.join(root, file), 'utf8'), ts.ScriptTarget.Latest);
    const visit = (node: ts.Node): void => {
      if (ts.isRegularExpressionLiteral(node) && KEY_WORDS.test(node.text)) found.push(`${file}: ${node.text}`);
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  expect(found).toEqual([]);
});
