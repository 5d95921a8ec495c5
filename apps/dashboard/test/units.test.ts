import { configSchema, type Config, type PublishedLink } from '@prompt-queue/shared';
import { describe, expect, it } from 'vitest';
import { formatUsd, jobListName, withoutExternalLinks } from '../src/board.js';
import { limitScopes } from '../src/overview/limits.js';
import { metricsSeries, minuteBuckets } from '../src/overview/throughput.js';
import { resultOf } from './fixtures.js';

const MINUTE = 60_000;

describe('metricsSeries', () => {
  const now = 1_000 * MINUTE + 30_000; // half-way through minute 1000

  it('places the open minute and the list behind it, aligned to now', () => {
    // Last boundary seen in minute 998; 4 jobs since; data[0] = minute 997, data[1] = minute 996.
    const series = metricsSeries({ meta: { count: 20, prevTS: 998 * MINUTE + 5, prevCount: 16 }, data: [3, 7], count: 2 }, now, 5);
    expect(series).toEqual([7, 3, 4, 0, 0]); // minutes 996..1000
  });

  it('drops points older than the window, and is all zeros without metrics', () => {
    const series = metricsSeries({ meta: { count: 5, prevTS: 1_000 * MINUTE, prevCount: 4 }, data: [1, 1, 1, 1, 1], count: 5 }, now, 3);
    expect(series).toEqual([1, 1, 1]);
    expect(metricsSeries({ meta: { count: 0, prevTS: 0, prevCount: 0 }, data: [], count: 0 }, now, 3)).toEqual([0, 0, 0]);
  });

  it('minuteBuckets ends with the current minute', () => {
    expect(minuteBuckets(now, 2)).toEqual([
      { startMs: 999 * MINUTE, endMs: 1_000 * MINUTE },
      { startMs: 1_000 * MINUTE, endMs: 1_001 * MINUTE },
    ]);
  });
});

describe('limitScopes', () => {
  const base = configSchema.parse({ env: 'test' });
  const withLimits = (limits: unknown) => ({ ...base, limits }) as unknown as Config;

  it('falls back to every known model without limits', () => {
    const scopes = limitScopes(base);
    expect(scopes.length).toBe(Object.keys(base.models).length);
    expect(scopes.every((s) => !s.configured && s.limits.rpm === 0 && s.limits.tpm === 0 && s.key.provider === 'gemini')).toBe(true);
  });

  it('reads the record keyed by model or provider:model, or a list of scopes', () => {
    expect(limitScopes(withLimits({ 'gemini-3.6-flash': { rpm: 10, tpm: 1_000 } }))).toEqual([
      { key: { provider: 'gemini', model: 'gemini-3.6-flash' }, limits: { rpm: 10, tpm: 1_000 }, configured: true },
    ]);
    // `openai:` is a provider prefix because a chain link uses that provider; `ollama:` is not.
    const openaiChain = { default: [{ provider: 'openai', model: 'llama3:8b', baseUrl: 'http://x/v1' }] };
    expect(limitScopes({ ...withLimits({ 'openai:llama3:8b': { rpm: 2, tpm: 0, project: 'lab' }, 'ollama:x': { rpm: 1 } }), chains: openaiChain })).toEqual([
      { key: { provider: 'openai', model: 'llama3:8b', project: 'lab' }, limits: { rpm: 2, tpm: 0 }, configured: true },
      { key: { provider: 'gemini', model: 'ollama:x' }, limits: { rpm: 1, tpm: 0 }, configured: true },
    ]);
    expect(limitScopes(withLimits([{ provider: 'openai', model: 'gpt', project: 'p2', rpm: 3, tpm: -1 }, { nope: true }]))).toEqual([
      { key: { provider: 'openai', model: 'gpt', project: 'p2' }, limits: { rpm: 3, tpm: 0 }, configured: true },
    ]);
  });

  it('adds the scope of every link the workers publish, whatever its provider (none is known to the dashboard)', () => {
    const toy: PublishedLink = {
      id: 'toy:m1:default',
      provider: 'toy',
      name: 'toy',
      model: 'm1',
      limitKey: { provider: 'toy-pool', model: 'm1', project: 'default' },
      limits: { rpm: 5, tpm: 0 },
      credentials: [],
      updatedAt: 0,
      workerId: 'w',
    };
    expect(limitScopes(withLimits({ 'toy-pool:m2': { rpm: 1 } }), [toy])).toEqual([
      { key: { provider: 'toy-pool', model: 'm2' }, limits: { rpm: 1, tpm: 0 }, configured: true },
      { key: { provider: 'toy-pool', model: 'm1', project: 'default' }, limits: { rpm: 5, tpm: 0 }, configured: true },
    ]);
  });
});

describe('jobListName (bull-board job list)', () => {
  const data = { v: 1, tenant: 'acme', model: 'gemini-3.6-flash' };

  it('shows tenant, model, cost and tokens of a completed job', () => {
    const returnvalue = resultOf({ tenant: 'acme', model: 'gemini-3.6-flash', costUsd: 0.00052, tokens: 79 });
    expect(jobListName({ name: 'generate', data, returnvalue })).toBe('generate · acme · gemini-3.6-flash · $0.00052 · 79 tok');
  });

  it('shows the model that served it, cache hits and unpriced models', () => {
    const returnvalue = { ...resultOf({ tenant: 'acme', model: 'gemini-3.5-flash-lite' }), costUsd: null, cached: true };
    expect(jobListName({ name: 'generate', data, returnvalue })).toBe('generate · acme · gemini-3.5-flash-lite · unpriced · 79 tok · cache hit');
  });

  it('shows the error code of a failed job and survives odd shapes', () => {
    expect(jobListName({ name: 'generate', data, failedReason: '[PROVIDER_UNAVAILABLE] down', finishedOn: 1 })).toBe(
      'generate · acme · gemini-3.6-flash · [PROVIDER_UNAVAILABLE]',
    );
    expect(jobListName({ name: 'generate', data, returnvalue: null })).toBe('generate · acme · gemini-3.6-flash');
    expect(jobListName({ data: 'weird', returnvalue: 42 })).toBe('job');
  });

  it('starts with the job\'s kind from its data: embed jobs enqueued as "generate" show as embed', () => {
    const embed = { ...data, kind: 'embed', model: 'gemini-embedding-001' };
    expect(jobListName({ name: 'generate', data: embed })).toBe('embed · acme · gemini-embedding-001');
    expect(jobListName({ name: 'embed', data: embed })).toBe('embed · acme · gemini-embedding-001');
  });

  it('formats sub-cent costs readably', () => {
    expect(formatUsd(0)).toBe('$0');
    expect(formatUsd(0.000520001)).toBe('$0.00052');
    expect(formatUsd(0.0123456)).toBe('$0.0123');
    expect(formatUsd(12.3456)).toBe('$12.35');
    expect(formatUsd(1.2e-7)).toBe('$0.00000012');
  });
});

describe('withoutExternalLinks (bull-board page, offline)', () => {
  it('drops <link>s to other origins and keeps the page\'s own', () => {
    const head = [
      '<link rel="icon" type="image/svg+xml" id="fav-logo" href="static/images/logo.svg">',
      '<link href="https://fonts.googleapis.com/css2?family=IBM+Plex+Sans:wght@400&display=swap" rel="stylesheet">',
      '<link href="//cdn.example/x.css" rel="stylesheet">',
      '<link href="static/css/main.css" rel="stylesheet"></head>',
    ].join('\n');
    expect(withoutExternalLinks(head)).toBe(
      '<link rel="icon" type="image/svg+xml" id="fav-logo" href="static/images/logo.svg">\n<link href="static/css/main.css" rel="stylesheet"></head>',
    );
  });
});
