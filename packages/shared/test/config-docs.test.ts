// docs/configuration.md must list every key and environment variable the schema accepts, and
// nothing it refuses: the schema is strict, so a documented key that does not exist fails to start.
// The example CONFIG_FILE must load for the same reason.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { configSchema, ENV_PATHS, loadConfig } from '../src/index.js';

const DOC = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');

/** Variables read outside ENV_PATHS (load.ts): the file itself and the default model's limits. */
const OTHER_VARIABLES = ['CONFIG_FILE', 'GEMINI_RPM', 'GEMINI_TPM'];

interface Row {
  variables: string[];
  paths: string[];
  text: string;
}

/** The rows of the table that follows `heading` (its first column starting with `firstColumn`). */
function tableRows(firstColumn: string): string[][] {
  const lines = DOC.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`| ${firstColumn}`));
  expect(start, `a table whose first column is "${firstColumn}"`).toBeGreaterThanOrEqual(0);
  const rows: string[][] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    rows.push(line.split(/(?<!\\)\|/).slice(1, -1).map((cell) => cell.trim()));
  }
  return rows;
}

/** Backticked names in a cell: `` `A`, `B` `` → [A, B]. */
function names(cell: string): string[] {
  return [...cell.matchAll(/`([^`]+)`/g)].map((match) => match[1]!);
}

/** A cell's paths; `` `a.b.rpm` / `.tpm` `` is shorthand for a.b.rpm and a.b.tpm. */
function paths(cell: string): string[] {
  const found: string[] = [];
  for (const name of names(cell)) {
    const previous = found.at(-1);
    found.push(name.startsWith('.') && previous ? previous.slice(0, previous.lastIndexOf('.')) + name : name);
  }
  return found;
}

const mainRows: Row[] = tableRows('Environment variable').map(([variables = '', pathCell = '', ...rest]) => ({
  variables: names(variables),
  paths: paths(pathCell),
  text: rest.join(' | '),
}));
const linkFields = tableRows('link field').map(([field = '']) => names(field)[0]);

function unwrap(schema: z.core.$ZodType): z.core.$ZodType {
  let current = schema;
  for (let inner = innerOf(current); inner; inner = innerOf(current)) current = inner;
  return current;
}

function innerOf(schema: z.core.$ZodType): z.core.$ZodType | undefined {
  return (schema._zod.def as { innerType?: z.core.$ZodType }).innerType;
}

/** Every key the schema accepts, as dotted paths; a table's entries as `name.<>` with their fields. */
function schemaPaths(schema: z.core.$ZodType, prefix = ''): { leaves: string[]; tables: Map<string, z.ZodObject | undefined> } {
  const leaves: string[] = [];
  const tables = new Map<string, z.ZodObject | undefined>();
  const node = unwrap(schema);
  if (node instanceof z.ZodObject) {
    for (const [key, child] of Object.entries(node.shape)) {
      const inner = schemaPaths(child, prefix ? `${prefix}.${key}` : key);
      leaves.push(...inner.leaves);
      for (const [table, fields] of inner.tables) tables.set(table, fields);
    }
  } else if (node instanceof z.ZodRecord) {
    let value = unwrap(node._zod.def.valueType);
    if (value instanceof z.ZodArray) value = unwrap(value.element);
    tables.set(prefix, value instanceof z.ZodObject ? value : undefined);
  } else {
    leaves.push(prefix);
  }
  return { leaves, tables };
}

/** Field names of an object, nested objects' included (`longPrompt`, `aboveInputTokens`). */
function fieldNames(object: z.ZodObject): string[] {
  return Object.entries(object.shape).flatMap(([key, child]) => {
    const inner = unwrap(child);
    return [key, ...(inner instanceof z.ZodObject ? fieldNames(inner) : [])];
  });
}

const { leaves, tables } = schemaPaths(configSchema);

describe('docs/configuration.md', () => {
  it('lists every environment variable with the config path it sets', () => {
    for (const [variable, path] of Object.entries(ENV_PATHS)) {
      const row = mainRows.find((candidate) => candidate.variables.includes(variable));
      expect(row, `a row for ${variable}`).toBeDefined();
      expect(row!.paths, `${variable}'s row names ${path}`).toContain(path);
    }
    for (const variable of OTHER_VARIABLES) expect(mainRows.some((row) => row.variables.includes(variable)), variable).toBe(true);
  });

  it('documents no variable the loader does not read', () => {
    const known = new Set([...Object.keys(ENV_PATHS), ...OTHER_VARIABLES]);
    for (const row of mainRows) for (const variable of row.variables) expect(known, `documented variable ${variable}`).toContain(variable);
  });

  it('lists every key of the schema, and no key the schema would refuse', () => {
    const documented = new Set(mainRows.flatMap((row) => row.paths));
    for (const path of leaves) expect(documented, `a row for ${path}`).toContain(path);
    for (const table of tables.keys()) {
      expect([...documented].some((path) => path.startsWith(`${table}.<`)), `a row for ${table}.<…>`).toBe(true);
    }
    for (const path of documented) {
      const table = [...tables.keys()].find((name) => path.startsWith(`${name}.`));
      if (!table) expect(leaves, `documented path ${path} exists in the schema`).toContain(path);
    }
  });

  it("describes the fields of every table's entries", () => {
    for (const [table, entry] of tables) {
      if (!entry) continue;
      if (table === 'chains') {
        expect(linkFields.sort()).toEqual(Object.keys(entry.shape).sort());
        continue;
      }
      const fields = fieldNames(entry);
      const text = mainRows
        .filter((row) => row.paths.some((path) => path.startsWith(`${table}.<`)))
        .map((row) => `${row.paths.join(' ')} ${row.text}`)
        .join(' ');
      for (const field of fields) expect(text, `${table} entries' field ${field}`).toMatch(new RegExp(`\\b${field}\\b`));
    }
  });

  it('config/example.yaml, which it points to, loads (every key in it exists)', () => {
    const example = fileURLToPath(new URL('../../../config/example.yaml', import.meta.url));
    expect(() => loadConfig({ CONFIG_FILE: example })).not.toThrow();
  });
});
