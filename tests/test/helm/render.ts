// A renderer for the subset of Helm's template language that deploy/helm/prompt-queue uses, so the
// chart is rendered and validated in tests without a helm binary (none on npm, none here). The
// k8s test also runs `helm template` when helm is on PATH and requires the same objects.
//
// The subset (anything else throws, so the chart cannot drift out of it unnoticed):
//   {{ pipeline }}, {{- … -}} trimming, {{/* comments */}}
//   if / else if / else / end, with / else / end, range (over a list: dot = element) / end,
//   define "name" / end, include "name" arg
//   terms: .a.b (dot), $.a.b and $ (the template's argument), "strings", integers, true/false/nil,
//          ( pipeline ), function calls, `|` pipes (the piped value is the last argument)
//   functions: include, toYaml, nindent, indent, quote, default, required, fail, printf (%s %d
//          only), trunc, trimSuffix, sha256sum, dict, eq, ne, gt, not, and, or, int, add, div, mul
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, parseAllDocuments, stringify } from 'yaml';

type Value = unknown;

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'action'; pipeline: string }
  | { kind: 'if'; branches: { cond: string; body: Node[] }[]; otherwise: Node[] }
  | { kind: 'with'; pipeline: string; body: Node[]; otherwise: Node[] }
  | { kind: 'range'; pipeline: string; body: Node[] };

interface Chart {
  defines: Map<string, Node[]>;
}

const ACTION = /\{\{(-\s)?\s*([\s\S]*?)\s*(\s-)?\}\}/g;

/** Splits a template into text and actions, applying `{{-` and `-}}` trimming. */
function tokenize(source: string): { text?: string; action?: string }[] {
  const tokens: { text?: string; action?: string }[] = [];
  let last = 0;
  let trimNext = false;
  for (const match of source.matchAll(ACTION)) {
    let text = source.slice(last, match.index);
    if (trimNext) text = text.replace(/^\s+/, '');
    if (match[1]) text = text.replace(/\s+$/, '');
    if (text) tokens.push({ text });
    const action = match[2]!;
    if (!/^\/\*[\s\S]*\*\/$/.test(action)) tokens.push({ action });
    trimNext = Boolean(match[3]);
    last = match.index + match[0].length;
  }
  let rest = source.slice(last);
  if (trimNext) rest = rest.replace(/^\s+/, '');
  if (rest) tokens.push({ text: rest });
  return tokens;
}

/** Builds the tree; `define` blocks go to `defines`. */
function parse(source: string, defines: Map<string, Node[]>): Node[] {
  const tokens = tokenize(source);
  let i = 0;
  const block = (): { body: Node[]; end: string } => {
    const body: Node[] = [];
    while (i < tokens.length) {
      const token = tokens[i++]!;
      if (token.text !== undefined) {
        body.push({ kind: 'text', text: token.text });
        continue;
      }
      const action = token.action!;
      const [keyword = '', rest = ''] = splitKeyword(action);
      if (keyword === 'end' || keyword === 'else') return { body, end: action };
      if (keyword === 'if') {
        const branches = [{ cond: rest, body: [] as Node[] }];
        let otherwise: Node[] = [];
        for (;;) {
          const inner = block();
          const [endKeyword, endRest = ''] = splitKeyword(inner.end);
          if (endKeyword === 'end') {
            branches.at(-1)!.body = inner.body;
            break;
          }
          if (endKeyword === 'else' && endRest.startsWith('if ')) {
            branches.at(-1)!.body = inner.body;
            branches.push({ cond: endRest.slice(3), body: [] });
            continue;
          }
          branches.at(-1)!.body = inner.body;
          const tail = block();
          if (splitKeyword(tail.end)[0] !== 'end') throw new Error(`if: expected end, got {{${tail.end}}}`);
          otherwise = tail.body;
          break;
        }
        body.push({ kind: 'if', branches, otherwise });
      } else if (keyword === 'with') {
        const inner = block();
        let otherwise: Node[] = [];
        if (splitKeyword(inner.end)[0] === 'else') otherwise = block().body;
        body.push({ kind: 'with', pipeline: rest, body: inner.body, otherwise });
      } else if (keyword === 'range') {
        if (/\$\w*\s*(,|:=)/.test(rest)) throw new Error(`range with variables is outside the subset: {{${action}}}`);
        const inner = block();
        if (splitKeyword(inner.end)[0] !== 'end') throw new Error('range … else is outside the subset');
        body.push({ kind: 'range', pipeline: rest, body: inner.body });
      } else if (keyword === 'define') {
        const name = JSON.parse(rest) as string;
        defines.set(name, block().body);
      } else if (['template', 'block', 'break', 'continue'].includes(keyword) || /:=|(^|\s)\$\w/.test(action)) {
        throw new Error(`outside the supported subset: {{${action}}}`);
      } else {
        body.push({ kind: 'action', pipeline: action });
      }
    }
    return { body, end: '' };
  };
  const { body, end } = block();
  if (end) throw new Error(`unexpected {{${end}}}`);
  return body;
}

function splitKeyword(action: string): [string, string] {
  const match = /^(\w+)\b\s*([\s\S]*)$/.exec(action);
  return match ? [match[1]!, match[2]!] : ['', action];
}

// ---- expressions ----

type Term = { kind: 'field'; root: 'dot' | 'dollar'; path: string[] } | { kind: 'literal'; value: Value } | { kind: 'func'; name: string } | { kind: 'group'; pipeline: Term[][] };

function lex(source: string): string[] {
  const tokens: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|\(|\)|\||[^\s()|]+)/gy;
  let read = 0;
  for (let match = re.exec(source); match; match = re.exec(source)) {
    tokens.push(match[1]!);
    read = re.lastIndex;
  }
  if (source.slice(read).trim()) throw new Error(`cannot read ${source}`);
  return tokens;
}

function parsePipeline(tokens: string[], position = { i: 0 }, nested = false): Term[][] {
  const commands: Term[][] = [[]];
  while (position.i < tokens.length) {
    const token = tokens[position.i++]!;
    if (token === ')') {
      if (!nested) throw new Error('unbalanced )');
      return commands;
    }
    if (token === '|') commands.push([]);
    else if (token === '(') commands.at(-1)!.push({ kind: 'group', pipeline: parsePipeline(tokens, position, true) });
    else commands.at(-1)!.push(term(token));
  }
  if (nested) throw new Error('unbalanced (');
  return commands;
}

function term(token: string): Term {
  if (token.startsWith('"')) return { kind: 'literal', value: JSON.parse(token) };
  if (/^-?\d+$/.test(token)) return { kind: 'literal', value: Number(token) };
  if (token === 'true' || token === 'false') return { kind: 'literal', value: token === 'true' };
  if (token === 'nil') return { kind: 'literal', value: null };
  if (token === '.') return { kind: 'field', root: 'dot', path: [] };
  if (token === '$') return { kind: 'field', root: 'dollar', path: [] };
  if (token.startsWith('.')) return { kind: 'field', root: 'dot', path: token.slice(1).split('.') };
  if (token.startsWith('$.')) return { kind: 'field', root: 'dollar', path: token.slice(2).split('.') };
  if (/^[a-zA-Z]\w*$/.test(token)) return { kind: 'func', name: token };
  throw new Error(`outside the supported subset: ${token}`);
}

interface Scope {
  dot: Value;
  dollar: Value;
  chart: Chart;
}

function field(value: Value, path: string[]): Value {
  let current = value;
  for (const key of path) {
    if (current === null || current === undefined) return undefined; // Helm: nil, not an error
    if (typeof current !== 'object') throw new Error(`cannot read .${key} of ${typeof current}`);
    current = (current as Record<string, Value>)[key];
  }
  return current;
}

function evaluate(pipeline: Term[][], scope: Scope): Value {
  let piped: Value;
  pipeline.forEach((command, index) => {
    const [head, ...rest] = command;
    if (!head) throw new Error('empty command');
    const args = rest.map((arg) => value(arg, scope));
    if (index > 0) args.push(piped);
    if (head.kind === 'func') piped = call(head.name, args, scope);
    else if (args.length > 0) throw new Error('only functions take arguments');
    else piped = value(head, scope);
  });
  return piped;
}

function value(term: Term, scope: Scope): Value {
  switch (term.kind) {
    case 'literal':
      return term.value;
    case 'field':
      return field(term.root === 'dot' ? scope.dot : scope.dollar, term.path);
    case 'group':
      return evaluate(term.pipeline, scope);
    case 'func':
      return call(term.name, [], scope);
  }
}

/** Go template truth: false, 0, nil, "" and empty lists and maps are false. */
function truthy(value: Value): boolean {
  if (value === null || value === undefined || value === false || value === 0 || value === '') return false;
  if (Array.isArray(value)) return value.length > 0;
  if (typeof value === 'object') return Object.keys(value).length > 0;
  return true;
}

function text(value: Value): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') throw new Error('printing a map or list needs toYaml');
  return String(value);
}

function indent(spaces: number, value: string): string {
  const pad = ' '.repeat(spaces);
  return value
    .split('\n')
    .map((line) => pad + line)
    .join('\n');
}

function call(name: string, args: Value[], scope: Scope): Value {
  const number = (v: Value): number => {
    if (typeof v !== 'number') throw new Error(`${name}: expected a number, got ${JSON.stringify(v)}`);
    return v;
  };
  switch (name) {
    case 'include': {
      const body = scope.chart.defines.get(args[0] as string);
      if (!body) throw new Error(`no template "${String(args[0])}"`);
      return run(body, { dot: args[1], dollar: args[1], chart: scope.chart });
    }
    case 'toYaml':
      return args[0] === undefined || args[0] === null ? 'null' : stringify(args[0]).replace(/\n$/, '');
    case 'nindent':
      return `\n${indent(number(args[0]), text(args[1]))}`;
    case 'indent':
      return indent(number(args[0]), text(args[1]));
    case 'quote':
      return JSON.stringify(text(args[0]));
    case 'default':
      return truthy(args[1]) ? args[1] : args[0];
    case 'required':
      if (!truthy(args[1])) throw new Error(String(args[0]));
      return args[1];
    case 'fail':
      throw new Error(`fail: ${String(args[0])}`);
    case 'printf': {
      const rest = args.slice(1);
      return (args[0] as string).replace(/%[sd]/g, () => text(rest.shift()));
    }
    case 'trunc':
      return text(args[1]).slice(0, number(args[0]));
    case 'trimSuffix': {
      const s = text(args[1]);
      return s.endsWith(args[0] as string) ? s.slice(0, s.length - (args[0] as string).length) : s;
    }
    case 'sha256sum':
      return createHash('sha256').update(text(args[0])).digest('hex');
    case 'int':
      return Math.trunc(Number(args[0] ?? 0));
    case 'dict': {
      const out: Record<string, Value> = {};
      for (let i = 0; i < args.length; i += 2) out[args[i] as string] = args[i + 1];
      return out;
    }
    case 'eq':
      return args[0] === args[1];
    case 'ne':
      return args[0] !== args[1];
    case 'gt':
      return number(args[0]) > number(args[1]);
    case 'not':
      return !truthy(args[0]);
    case 'and':
      return args.find((arg) => !truthy(arg)) ?? args.at(-1);
    case 'or':
      return args.find((arg) => truthy(arg)) ?? args.at(-1);
    case 'add':
      return args.reduce((sum: number, arg) => sum + number(arg), 0);
    case 'mul':
      return args.reduce((product: number, arg) => product * number(arg), 1);
    case 'div':
      return Math.trunc(number(args[0]) / number(args[1])); // Helm's div is integer division
    default:
      throw new Error(`function ${name} is outside the supported subset`);
  }
}

function run(nodes: Node[], scope: Scope): string {
  let out = '';
  for (const node of nodes) {
    switch (node.kind) {
      case 'text':
        out += node.text;
        break;
      case 'action':
        out += text(evaluate(parsePipeline(lex(node.pipeline)), scope));
        break;
      case 'if': {
        const branch = node.branches.find((candidate) => truthy(evaluate(parsePipeline(lex(candidate.cond)), scope)));
        out += run(branch ? branch.body : node.otherwise, scope);
        break;
      }
      case 'with': {
        const value = evaluate(parsePipeline(lex(node.pipeline)), scope);
        out += truthy(value) ? run(node.body, { ...scope, dot: value }) : run(node.otherwise, scope);
        break;
      }
      case 'range': {
        const list = evaluate(parsePipeline(lex(node.pipeline)), scope);
        if (list === null || list === undefined) break;
        if (!Array.isArray(list)) throw new Error('range over a map is outside the subset');
        for (const item of list) out += run(node.body, { ...scope, dot: item });
        break;
      }
    }
  }
  return out;
}

// ---- the chart ----

/** Values merged like Helm's `--values`: maps deeply, everything else replaced. */
export function mergeValues(base: Value, override: Value): Value {
  if (!isMap(base) || !isMap(override)) return override === undefined ? base : override;
  const out: Record<string, Value> = { ...base };
  for (const [key, value] of Object.entries(override)) out[key] = value === null ? undefined : mergeValues(base[key], value);
  return out;
}

function isMap(value: Value): value is Record<string, Value> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export interface RenderOptions {
  releaseName?: string;
  namespace?: string;
  values?: Record<string, unknown>;
}

/** Renders every template of the chart: `{ template file name: manifest text }`. */
export function renderChartFiles(chartDir: string, options: RenderOptions = {}): Map<string, string> {
  const chart = parseYaml(readFileSync(join(chartDir, 'Chart.yaml'), 'utf8')) as { name: string; version: string; appVersion: string };
  const values = mergeValues(parseYaml(readFileSync(join(chartDir, 'values.yaml'), 'utf8')), options.values ?? {});
  const root = {
    Values: values,
    Release: { Name: options.releaseName ?? 'pq', Namespace: options.namespace ?? 'default', Service: 'Helm' },
    Chart: { Name: chart.name, Version: chart.version, AppVersion: chart.appVersion },
  };
  const state: Chart = { defines: new Map() };
  const templates = readdirSync(join(chartDir, 'templates')).sort();
  const parsed = templates.map((file) => [file, parse(readFileSync(join(chartDir, 'templates', file), 'utf8'), state.defines)] as const);
  const out = new Map<string, string>();
  for (const [file, nodes] of parsed) {
    if (file.startsWith('_') || !/\.ya?ml$/.test(file)) continue; // partials: defines only
    out.set(file, run(nodes, { dot: root, dollar: root, chart: state }));
  }
  return out;
}

/** Every object the chart renders, parsed from its YAML documents (empty documents dropped). */
export function renderChart(chartDir: string, options: RenderOptions = {}): Record<string, unknown>[] {
  const objects: Record<string, unknown>[] = [];
  for (const [file, manifest] of renderChartFiles(chartDir, options)) {
    for (const document of parseAllDocuments(manifest)) {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]!.message}\n${manifest}`);
      const object = document.toJS() as Record<string, unknown> | null;
      if (object) objects.push(object);
    }
  }
  return objects;
}
