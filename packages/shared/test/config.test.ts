import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertProducerApiKeys, ConfigError, loadConfig, usesDevelopmentApiKey } from '../src/index.js';

describe('loadConfig', () => {
  it('applies the documented defaults', () => {
    const config = loadConfig({});
    expect(config.redis.url).toBe('redis://127.0.0.1:6379');
    expect(config.producer.port).toBe(3000);
    expect(config.dashboard.port).toBe(3001);
    expect(config.worker.port).toBe(3002);
    expect(config.gemini.baseUrl).toBe('https://generativelanguage.googleapis.com');
    expect(config.models['gemini-3.6-flash']?.inputTokenLimit).toBe(1_048_576);
    expect(usesDevelopmentApiKey(config)).toBe(true);
  });

  it('parses lists: API_KEYS as tenant:key pairs (hashed keys keep their colon), GEMINI_API_KEY comma-separated', () => {
    const config = loadConfig({ API_KEYS: 'acme:k1, globex:sha256:abc', GEMINI_API_KEY: 'a,b' });
    expect(config.producer.apiKeys).toEqual([
      { tenant: 'acme', key: 'k1' },
      { tenant: 'globex', key: 'sha256:abc' },
    ]);
    expect(config.gemini.apiKeys).toEqual(['a', 'b']);
  });

  it('names the bad variable', () => {
    expect(() => loadConfig({ WORKER_CONCURRENCY: 'many' })).toThrow(/WORKER_CONCURRENCY \(worker\.concurrency\)/);
    expect(() => loadConfig({ REDIS_URL: 'localhost:6379' })).toThrow(/REDIS_URL/);
    expect(() => loadConfig({ API_KEYS: 'no-colon' })).toThrow(/API_KEYS/);
  });

  it('lets the producer refuse production without API keys; other services do not need them', () => {
    const config = loadConfig({ NODE_ENV: 'production' });
    expect(() => assertProducerApiKeys(config)).toThrow(ConfigError);
    expect(() => assertProducerApiKeys(loadConfig({ NODE_ENV: 'production', API_KEYS: 'a:b' }))).not.toThrow();
  });

  it('reads CONFIG_FILE (YAML) and lets the environment override it; file models extend the defaults', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pq-config-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(
      file,
      'worker:\n  concurrency: 4\n  attempts: 7\nmodels:\n  my-model:\n    inputTokenLimit: 1000\n    outputTokenLimit: 100\n',
    );
    const config = loadConfig({ CONFIG_FILE: file, WORKER_CONCURRENCY: '9' });
    expect(config.worker.concurrency).toBe(9);
    expect(config.worker.attempts).toBe(7);
    expect(config.models['my-model']).toEqual({ kind: 'generate', inputTokenLimit: 1000, outputTokenLimit: 100 });
    expect(config.models['gemini-3.6-flash']).toBeDefined();
  });

  it('reports an unreadable or invalid CONFIG_FILE', () => {
    expect(() => loadConfig({ CONFIG_FILE: '/nonexistent/config.yaml' })).toThrow(/CONFIG_FILE: cannot read/);
    const dir = mkdtempSync(join(tmpdir(), 'pq-config-'));
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{ not json');
    expect(() => loadConfig({ CONFIG_FILE: file })).toThrow(/CONFIG_FILE/);
  });
});

describe('generationConfig.responseSchema', () => {
  it('refuses hostile nesting without overflowing the stack', async () => {
    const { generationConfigSchema, nestingDepth } = await import('../src/index.js');
    let deep: Record<string, unknown> = {};
    const root = deep;
    for (let i = 0; i < 100_000; i += 1) {
      const next: Record<string, unknown> = {};
      deep.items = next;
      deep = next;
    }
    expect(nestingDepth(root)).toBe(33);
    const result = generationConfigSchema.safeParse({ responseSchema: root });
    expect(result.success).toBe(false);
    expect(generationConfigSchema.safeParse({ responseSchema: { type: 'object', properties: { a: { type: 'string' } } } }).success).toBe(true);
  });
});
