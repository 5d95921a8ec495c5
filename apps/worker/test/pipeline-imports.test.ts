import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import ts from 'typescript';

/**
 * The worker's module graph: no import cycle anywhere under src (type-only imports included: a
 * cycle of types is still two files that cannot be read or changed apart), and the pipeline stages
 * never reach up into the processor or the worker that drive them.
 */

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../src');

type Graph = Map<string, string[]>;

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.isFile() && entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Static `import … from`, `import '…'` and `export … from` specifiers, `import type` included. */
function importSpecifiers(file: string): string[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const specifiers: string[] = [];
  for (const statement of source.statements) {
    if ((ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)) && statement.moduleSpecifier && ts.isStringLiteral(statement.moduleSpecifier)) {
      specifiers.push(statement.moduleSpecifier.text);
    }
  }
  return specifiers;
}

/** A relative specifier (`./x.js`, `../dir/index.js`, `./dir`) as the .ts file it names. */
function resolveRelative(from: string, specifier: string): string {
  const base = resolve(dirname(from), specifier);
  const candidates = [base.replace(/\.js$/, '.ts'), `${base}.ts`, join(base, 'index.ts')];
  const found = candidates.find((candidate) => existsSync(candidate) && candidate.endsWith('.ts'));
  if (!found) throw new Error(`${relative(SRC, from)} imports '${specifier}', which resolves to no .ts file`);
  return found;
}

function importGraph(root: string): Graph {
  const graph: Graph = new Map();
  for (const file of sourceFiles(root)) {
    graph.set(
      file,
      importSpecifiers(file)
        .filter((specifier) => specifier.startsWith('.'))
        .map((specifier) => resolveRelative(file, specifier)),
    );
  }
  return graph;
}

/** The first cycle found (its files in import order, the first repeated at the end), or undefined. */
function findCycle(graph: Graph): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): string[] | undefined => {
    if (state.get(node) === 'done') return undefined;
    if (state.get(node) === 'visiting') return [...stack.slice(stack.indexOf(node)), node];
    state.set(node, 'visiting');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
    stack.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of [...graph.keys()].sort()) {
    const cycle = visit(node);
    if (cycle) return cycle;
  }
  return undefined;
}

/** Every file reachable from `start` (itself excluded), with the path that reaches it. */
function reachable(graph: Graph, start: string): Map<string, string[]> {
  const paths = new Map<string, string[]>();
  const queue: string[][] = [[start]];
  while (queue.length > 0) {
    const path = queue.shift()!;
    for (const next of graph.get(path.at(-1)!) ?? []) {
      if (next === start || paths.has(next)) continue;
      paths.set(next, [...path, next]);
      queue.push([...path, next]);
    }
  }
  return paths;
}

const show = (files: readonly string[]): string => files.map((file) => relative(SRC, file)).join(' → ');

describe('worker import graph', () => {
  const graph = importGraph(SRC);

  it('reads the whole of src, pipeline stages included', () => {
    const files = [...graph.keys()].map((file) => relative(SRC, file));
    for (const stage of ['prepare', 'cache-stage', 'budget-admit', 'call-chain', 'settle', 'serve-batch', 'fate']) {
      expect(files).toContain(join('pipeline', `${stage}.ts`));
    }
    // Type-only imports are edges too: batch.ts imports only types.
    expect(graph.get(join(SRC, 'pipeline/batch.ts'))!.map((file) => relative(SRC, file))).toEqual(expect.arrayContaining([join('pipeline', 'fate.ts')]));
  });

  it('has no import cycle (type-only imports included)', () => {
    const cycle = findCycle(graph);
    expect(cycle && show(cycle), `import cycle: ${cycle && show(cycle)}`).toBeUndefined();
  });

  it('the pipeline never imports the processor or the worker, directly or through another module', () => {
    const drivers = ['processor.ts', 'worker.ts', 'main.ts'].map((name) => join(SRC, name));
    const offending: string[] = [];
    for (const file of graph.keys()) {
      if (!relative(SRC, file).startsWith('pipeline/')) continue;
      const direct = graph.get(file)!.filter((target) => drivers.includes(target));
      for (const target of direct) offending.push(`${show([file, target])} (direct)`);
      for (const [target, path] of reachable(graph, file)) if (drivers.includes(target) && !direct.includes(target)) offending.push(show(path));
    }
    expect(offending).toEqual([]);
  });
});

describe('findCycle (the checker itself)', () => {
  it('finds a cycle and names its path; finds none in a DAG', () => {
    const cyclic: Graph = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['d', 'b']],
      ['d', []],
    ]);
    expect(findCycle(cyclic)).toEqual(['b', 'c', 'b']);
    expect(findCycle(new Map([['self', ['self']]]))).toEqual(['self', 'self']);
    const dag: Graph = new Map([
      ['a', ['b', 'c']],
      ['b', ['c']],
      ['c', []],
    ]);
    expect(findCycle(dag)).toBeUndefined();
  });
});
