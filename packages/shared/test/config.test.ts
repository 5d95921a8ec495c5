import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { closestKey } from '../src/config/suggest.js';
import {
  assertProducerApiKeys,
  ConfigError,
  dashboardRedactsText,
  loadConfig,
  MIN_PRODUCTION_API_KEY_LENGTH,
  MIN_PRODUCTION_PASSWORD_LENGTH,
  usesDevelopmentApiKey,
} from '../src/index.js';

const tempDir = mkdtempSync(join(tmpdir(), 'pq-config-'));
afterAll(() => rmSync(tempDir, { recursive: true, force: true }));
let files = 0;

/** A CONFIG_FILE with this YAML text, in a directory removed after the file's tests. */
function configFile(yaml: string, extension = 'yaml'): string {
  files += 1;
  const file = join(tempDir, `config-${files}.${extension}`);
  writeFileSync(file, yaml);
  return file;
}

/** The message loadConfig throws for this environment (fails the test if it does not throw). */
function configErrorOf(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error(`loadConfig(${JSON.stringify(env)}) did not throw`);
}

const LONG_KEY = 'k'.repeat(MIN_PRODUCTION_API_KEY_LENGTH);

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
    expect(() => assertProducerApiKeys(loadConfig({ NODE_ENV: 'production', API_KEYS: `a:${LONG_KEY}` }))).not.toThrow();
  });

  it('reads CONFIG_FILE (YAML) and lets the environment override it; file models extend the defaults', () => {
    const file = configFile('worker:\n  concurrency: 4\n  attempts: 7\nmodels:\n  my-model:\n    inputTokenLimit: 1000\n    outputTokenLimit: 100\n');
    const config = loadConfig({ CONFIG_FILE: file, WORKER_CONCURRENCY: '9' });
    expect(config.worker.concurrency).toBe(9);
    expect(config.worker.attempts).toBe(7);
    expect(config.models['my-model']).toEqual({ kind: 'generate', inputTokenLimit: 1000, outputTokenLimit: 100 });
    expect(config.models['gemini-3.6-flash']).toBeDefined();
  });

  it('reports an unreadable or invalid CONFIG_FILE', () => {
    expect(() => loadConfig({ CONFIG_FILE: '/nonexistent/config.yaml' })).toThrow(/CONFIG_FILE: cannot read/);
    const file = configFile('{ not json', 'json');
    expect(() => loadConfig({ CONFIG_FILE: file })).toThrow(/CONFIG_FILE/);
  });
});

describe('loadConfig refuses unknown keys (defect 6: typos were silently ignored)', () => {
  it('names the full path of a typo and the closest valid key, on one line', () => {
    const budget = configErrorOf({ CONFIG_FILE: configFile('tenants:\n  acme:\n    dailyUSD: 5\n') });
    expect(budget).toBe('Invalid configuration: CONFIG_FILE tenants.acme.dailyUSD: unknown key, did you mean dailyUsd?');
    expect(configErrorOf({ CONFIG_FILE: configFile('worker:\n  concurency: 4\n') })).toMatch(
      /CONFIG_FILE worker\.concurency: unknown key, did you mean concurrency\?/,
    );
    expect(configErrorOf({ CONFIG_FILE: configFile('workers:\n  concurrency: 4\n') })).toMatch(/CONFIG_FILE workers: unknown key, did you mean worker\?/);
  });

  it('checks every object: table entries, chain links, nested prices, JSON files', () => {
    const cases: [string, RegExp][] = [
      ['limits:\n  gemini-3.6-flash: { rpm: 1, tmp: 2 }\n', /limits\.gemini-3\.6-flash\.tmp: unknown key, did you mean tpm\?/],
      // Chain links' fields are their provider's: the worker checks them (apps/worker/test/registry.test.ts).
      ['models:\n  m:\n    inputTokenLimit: 1\n    outputTokenLimit: 1\n    kinds: embed\n', /models\.m\.kinds: unknown key, did you mean kind\?/],
      [
        'prices:\n  m:\n    input: 1\n    output: 1\n    cachedInput: 0\n    longPrompt: { input: 2, output: 2, cachedInput: 0, aboveInputToken: 200000 }\n',
        /prices\.m\.longPrompt\.aboveInputToken: unknown key, did you mean aboveInputTokens\?/,
      ],
      ['producer:\n  apiKeys:\n    - { tenant: acme, key: abc, tenat: x }\n', /producer\.apiKeys\.0\.tenat: unknown key, did you mean tenant\?/],
      ['dashboard:\n  readonly: true\n', /dashboard\.readonly: unknown key, did you mean readOnly\?/],
    ];
    for (const [yaml, expected] of cases) expect(configErrorOf({ CONFIG_FILE: configFile(yaml) })).toMatch(expected);
    expect(configErrorOf({ CONFIG_FILE: configFile('{"redis": {"URL": "redis://x"}}', 'json') })).toMatch(/redis\.URL: unknown key, did you mean url\?/);
  });

  it('lists the valid keys when nothing is close, and every unknown key of an object', () => {
    const message = configErrorOf({ CONFIG_FILE: configFile('breaker:\n  colour: red\n  volumeTreshold: 3\n') });
    expect(message).toContain(
      'CONFIG_FILE breaker.colour: unknown key, expected one of errorThresholdPercentage, volumeThreshold, resetTimeoutMs, rollingCountTimeoutMs',
    );
    expect(message).toContain('CONFIG_FILE breaker.volumeTreshold: unknown key, did you mean volumeThreshold?');
    expect(message).not.toContain('\n');
  });

  it('lists the accepted values of an environment variable with a bad value', () => {
    expect(configErrorOf({ RESPONSE_CACHE: 'maybe' })).toBe(
      'Invalid configuration: RESPONSE_CACHE (responseCache.enabled): expected one of true, false, 1, 0, yes, no',
    );
    expect(configErrorOf({ LOG_LEVEL: 'loud' })).toMatch(/LOG_LEVEL \(logLevel\): .*"error"\|"warn"\|"info"/);
    expect(configErrorOf({ NODE_ENV: 'prod' })).toMatch(/NODE_ENV \(env\): .*"development"\|"production"\|"test"/);
    expect(configErrorOf({ DASHBOARD_READ_ONLY: 'on' })).toMatch(/DASHBOARD_READ_ONLY \(dashboard\.readOnly\): expected one of true, false/);
  });

  it('suggests by edit distance, ignoring case, and only when the key is plausibly a typo', () => {
    expect(closestKey('dailyUSD', ['dailyUsd', 'monthlyUsd', 'onExceeded'])).toBe('dailyUsd');
    expect(closestKey('MONTHLYUSD', ['dailyUsd', 'monthlyUsd'])).toBe('monthlyUsd');
    expect(closestKey('colour', ['size', 'maxWaitMs'])).toBeUndefined();
  });
});

describe('loadConfig refuses unsafe settings (defect 8)', () => {
  it('refuses two tenants with one API key, in any environment, naming both and never the key', () => {
    const shared = 'shared-key-0123456789';
    for (const NODE_ENV of ['development', 'production']) {
      const message = configErrorOf({ NODE_ENV, API_KEYS: `acme:${shared},globex:${shared}` });
      expect(message).toMatch(/API_KEYS \(producer\.apiKeys\): tenants "acme" and "globex" have the same API key/);
      expect(message).not.toContain(shared);
    }
    // The producer compares digests, so a hashed entry of the same key is the same key.
    const hashed = `sha256:${createHash('sha256').update(shared).digest('hex').toUpperCase()}`;
    expect(configErrorOf({ API_KEYS: `acme:${shared},globex:${hashed}` })).toMatch(/"acme" and "globex"/);
    // One tenant listing a key twice signs in as itself: harmless.
    expect(() => loadConfig({ API_KEYS: `acme:${shared},acme:${shared},globex:other-key-0123456789` })).not.toThrow();
  });

  it(`refuses API keys shorter than ${MIN_PRODUCTION_API_KEY_LENGTH} characters in production only; a sha256 entry is exempt`, () => {
    const short = 'k'.repeat(MIN_PRODUCTION_API_KEY_LENGTH - 1);
    const message = configErrorOf({ NODE_ENV: 'production', API_KEYS: `acme:${LONG_KEY},globex:${short},initech:x` });
    expect(message).toMatch(/API_KEYS \(producer\.apiKeys\): in production every API key needs at least 16 characters; the key of "globex", "initech" is shorter/);
    expect(message).not.toContain(short);
    expect(() => loadConfig({ NODE_ENV: 'development', API_KEYS: 'acme:x' })).not.toThrow();
    expect(() => loadConfig({ NODE_ENV: 'production', API_KEYS: `acme:sha256:${'a'.repeat(64)}` })).not.toThrow();
    const file = configFile(`producer:\n  apiKeys:\n    - { tenant: acme, key: abc }\n`);
    expect(configErrorOf({ NODE_ENV: 'production', CONFIG_FILE: file })).toMatch(/CONFIG_FILE producer\.apiKeys: in production/);
  });

  it(`refuses a dashboard password shorter than ${MIN_PRODUCTION_PASSWORD_LENGTH} characters in production only`, () => {
    const short = 'p'.repeat(MIN_PRODUCTION_PASSWORD_LENGTH - 1);
    const message = configErrorOf({ NODE_ENV: 'production', DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: short });
    expect(message).toBe('Invalid configuration: DASHBOARD_PASSWORD (dashboard.password): in production the dashboard password needs at least 12 characters');
    expect(() => loadConfig({ NODE_ENV: 'production', DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: `${short}p` })).not.toThrow();
    expect(() => loadConfig({ NODE_ENV: 'development', DASHBOARD_USER: 'ops', DASHBOARD_PASSWORD: 'x' })).not.toThrow();
    // Tokens need 16 characters everywhere.
    expect(configErrorOf({ DASHBOARD_TOKEN: 't'.repeat(15) })).toMatch(/DASHBOARD_TOKEN \(dashboard\.token\): must be at least 16 characters/);
  });
});

describe('dashboard text redaction default (defect 11)', () => {
  it('is on in production and off otherwise, unless DASHBOARD_REDACT_TEXT says', () => {
    expect(dashboardRedactsText(loadConfig({ NODE_ENV: 'production' }))).toBe(true);
    expect(dashboardRedactsText(loadConfig({ NODE_ENV: 'development' }))).toBe(false);
    expect(dashboardRedactsText(loadConfig({ NODE_ENV: 'test' }))).toBe(false);
    expect(dashboardRedactsText(loadConfig({ NODE_ENV: 'production', DASHBOARD_REDACT_TEXT: 'false' }))).toBe(false);
    expect(dashboardRedactsText(loadConfig({ NODE_ENV: 'development', DASHBOARD_REDACT_TEXT: 'yes' }))).toBe(true);
    expect(configErrorOf({ DASHBOARD_REDACT_TEXT: 'on' })).toMatch(/DASHBOARD_REDACT_TEXT \(dashboard\.redactText\): expected one of true, false/);
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
