import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { createLogger, loadConfig } from '@prompt-queue/shared';
import { loadWorkerConfig } from '../src/providers/link-config.js';
import { ProviderChains, resolveLinkSpec } from '../src/providers/chain.js';

function configWith(file: Record<string, unknown>, env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'pq-chain-'));
  try {
    const path = join(dir, 'config.json');
    writeFileSync(path, JSON.stringify(file));
    return loadWorkerConfig({ CONFIG_FILE: path, GEMINI_API_KEY: 'k', ...env });
  } finally {
    // Read once, at load: nothing needs the file afterwards.
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('chain configuration', () => {
  it('defaults: batches of 16 within 20 ms, 64 jobs held, breaker 50% / 5 calls / 10 s, no limits, no chains', () => {
    const config = loadConfig({});
    expect(config.batching).toEqual({ size: 16, maxWaitMs: 20 });
    expect(config.worker.concurrency).toBe(64);
    expect(config.breaker).toEqual({ errorThresholdPercentage: 50, volumeThreshold: 5, resetTimeoutMs: 10_000, rollingCountTimeoutMs: 10_000 });
    expect(config.limiter).toEqual({ windowMs: 60_000, guardMs: 500, slowStartRequests: 8, reportedTtlMs: 3_600_000 });
    expect(config.limits).toEqual({});
    expect(config.chains).toEqual({});
  });

  it('environment overrides: batching, breaker, GEMINI_RPM / GEMINI_TPM for the default model', () => {
    const config = configWith(
      { limits: { 'gemini-3.6-flash': { rpm: 10, tpm: 1000, project: 'p1' } } },
      { BATCH_SIZE: '8', BATCH_MAX_WAIT_MS: '0', BREAKER_RESET_TIMEOUT_MS: '2000', GEMINI_RPM: '120' },
    );
    expect(config.batching).toEqual({ size: 8, maxWaitMs: 0 });
    expect(config.breaker.resetTimeoutMs).toBe(2_000);
    expect(config.limits['gemini-3.6-flash']).toEqual({ rpm: 120, tpm: 1000, project: 'p1' });
    expect(() => loadConfig({ GEMINI_TPM: 'lots' })).toThrow(/GEMINI_TPM \(limits\.gemini-3\.6-flash\.tpm\)/);
  });

  it('links: apiKeyEnv is read at load time; an openai link needs a baseUrl and a model', () => {
    const chains = {
      default: [
        { provider: 'gemini' },
        { provider: 'gemini', model: 'gemini-3.5-flash-lite', apiKeyEnv: 'SECOND_PROJECT_KEY', project: 'backup' },
        { provider: 'openai', baseUrl: 'http://127.0.0.1:11434/v1', model: 'llama3', name: 'ollama' },
      ],
    };
    const config = configWith({ chains }, { SECOND_PROJECT_KEY: 'b1,b2' });
    expect(config.chains.default![1]!.apiKeys).toEqual(['b1', 'b2']);
    expect(() => configWith({ chains })).toThrow(/chains\.default\.1\.apiKeyEnv: SECOND_PROJECT_KEY is not set/);
    expect(() => configWith({ chains: { default: [{ provider: 'openai', model: 'x' }] } })).toThrow(/baseUrl/);
    expect(() => configWith({ chains: { default: [{ provider: 'openai', baseUrl: 'http://x/v1' }] } })).toThrow(/explicit model/);
  });

  it('resolves $job, limits (provider:model over model, link over table) and the quota project', () => {
    const config = configWith({
      limits: { 'gemini-2.5-flash': { rpm: 100, tpm: 0 }, 'gemini:gemini-2.5-flash': { rpm: 50, tpm: 5000, project: 'main' } },
    });
    const link = resolveLinkSpec(config, { provider: 'gemini', model: '$job' }, 'gemini-2.5-flash');
    expect(link).toMatchObject({ id: 'gemini:gemini-2.5-flash:main', model: 'gemini-2.5-flash', project: 'main', limits: { rpm: 50, tpm: 5000 } });
    const own = resolveLinkSpec(config, { provider: 'gemini', model: 'gemini-2.5-flash', project: 'b', limits: { rpm: 7, tpm: 0 } }, 'other');
    expect(own).toMatchObject({ id: 'gemini:gemini-2.5-flash:b', limits: { rpm: 7, tpm: 0 } });
  });

  it('chains per model, else default, else Gemini for the job model; embed jobs only get embedding links', () => {
    const config = configWith({
      chains: {
        default: [{ provider: 'gemini' }, { provider: 'gemini', model: 'gemini-3.5-flash-lite' }],
        'gemini-2.5-pro': [{ provider: 'gemini' }],
      },
    });
    const redis = new Redis({ lazyConnect: true });
    const chains = new ProviderChains({ config, logger: createLogger({ service: 't', level: 'error' }), redis });
    try {
      expect(chains.linksFor('generate', 'gemini-2.5-flash').map((l) => l.id)).toEqual(['gemini:gemini-2.5-flash:default', 'gemini:gemini-3.5-flash-lite:default']);
      // The job's own model equal to the fallback: one link, not two.
      expect(chains.linksFor('generate', 'gemini-3.5-flash-lite').map((l) => l.id)).toEqual(['gemini:gemini-3.5-flash-lite:default']);
      expect(chains.linksFor('generate', 'gemini-2.5-pro').map((l) => l.id)).toEqual(['gemini:gemini-2.5-pro:default']);
      expect(chains.linksFor('embed', 'gemini-embedding-001').map((l) => l.id)).toEqual(['gemini:gemini-embedding-001:default']);
      // Links are shared: one breaker per link whichever chain reaches it.
      expect(chains.linksFor('generate', 'gemini-2.5-flash')[1]).toBe(chains.linksFor('generate', 'gemini-3.5-flash-lite')[0]);
    } finally {
      chains.shutdown();
      redis.disconnect();
    }
  });
});
