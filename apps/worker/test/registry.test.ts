import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { chainLinkBaseShape, loadConfig } from '@prompt-queue/shared';
import { validateChainLinks } from '../src/providers/link-config.js';
import { BUILTIN_PROVIDERS, createRegistry, defaultRegistry } from '../src/providers/registry.js';

const DOC = readFileSync(new URL('../../../docs/configuration.md', import.meta.url), 'utf8');

/** Field names of the docs table whose first column is `<provider> link field`. */
function documentedFields(provider: string): string[] {
  const lines = DOC.split('\n');
  const start = lines.findIndex((line) => line.startsWith(`| ${provider} link field`));
  expect(start, `a "${provider} link field" table in docs/configuration.md`).toBeGreaterThanOrEqual(0);
  const fields: string[] = [];
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith('|')) break;
    fields.push(/`([^`]+)`/.exec(line)![1]!);
  }
  return fields;
}

/** The keys of a plugin's link schema (through a refine). */
function schemaKeys(schema: z.ZodType): string[] {
  const def = (schema as unknown as { _zod: { def: { shape?: Record<string, unknown>; in?: z.ZodType; schema?: z.ZodType } } })._zod.def;
  if (def.shape) return Object.keys(def.shape);
  return schemaKeys((def.in ?? def.schema) as z.ZodType);
}

describe('provider registry', () => {
  it('every built-in provider documents exactly its own link fields (besides the common ones)', () => {
    for (const plugin of BUILTIN_PROVIDERS) {
      const own = schemaKeys(plugin.linkSchema).filter((key) => !(key in chainLinkBaseShape));
      expect(documentedFields(plugin.name).sort(), plugin.name).toEqual(own.sort());
    }
  });

  it('a link is checked by its plugin: unknown key with the closest one, wrong value, missing field, all in one message', () => {
    const config = loadConfig({});
    config.chains = {
      default: [
        { provider: 'gemini', model: '$job', baseURL: 'http://x' },
        { provider: 'openai', model: '$job', baseUrl: 'not a url' },
        { provider: 'openai', model: 'llama3' },
      ],
    };
    let message = '';
    try {
      validateChainLinks(config, defaultRegistry);
    } catch (error) {
      message = (error as Error).message;
    }
    expect(message).toMatch(/^Invalid configuration: /);
    expect(message).toContain('chains.default.0.baseURL: unknown key, did you mean baseUrl?');
    expect(message).toMatch(/chains\.default\.1\.baseUrl: /);
    expect(message).toContain('chains.default.1.model: an openai link needs an explicit model');
    expect(message).toMatch(/chains\.default\.2\.baseUrl: /);
  });

  it('refuses two plugins of one name', () => {
    expect(() => createRegistry([...BUILTIN_PROVIDERS, BUILTIN_PROVIDERS[0]!])).toThrow(/two provider plugins are named gemini/);
  });
});
