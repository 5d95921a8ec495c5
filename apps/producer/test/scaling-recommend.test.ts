// The scaler's arithmetic (scaling/recommend.ts, scaling/scopes.ts), without Redis.
import { loadConfig } from '@prompt-queue/shared';
import { describe, expect, it } from 'vitest';
import { recommendWorkers, scopeCapacity, type Backlog, type ScopeReading } from '../src/scaling/recommend.js';
import { quotaScopes } from '../src/scaling/scopes.js';

const ASSUME = { concurrency: 64, latencyMs: 5_000, tokensPerRequest: 1_000 };
const NO_JOBS: Backlog = { waiting: 0, prioritized: 0, delayedDue: 0, delayedLater: 0, active: 0 };

function reading(overrides: Partial<ScopeReading> = {}): ScopeReading {
  return {
    scope: 'gemini:gemini-3.6-flash:default',
    rpmLimit: 0,
    tpmLimit: 0,
    requests: 0,
    tokens: 0,
    windowMs: 60_000,
    pausedUntil: null,
    observedLatencyMs: null,
    observedP50Ms: null,
    ...overrides,
  };
}

describe('recommendWorkers', () => {
  it('counts waiting, prioritized and due jobs as backlog, not delayed ones still in the future', () => {
    const jobs = { waiting: 1, prioritized: 100, delayedDue: 27, delayedLater: 500, active: 0 };
    const result = recommendWorkers(jobs, [], ASSUME);
    expect(result.backlog).toBe(128);
    expect(result.backlogWorkers).toBe(2);
    expect(result.quotaWorkers).toBeNull(); // no limit configured: the quota caps nothing
    expect(result.recommendedWorkers).toBe(2);
    expect(result.capped).toBe(false);
  });

  it('holds active jobs too: a fleet that is busy but has no backlog keeps its workers', () => {
    expect(recommendWorkers({ ...NO_JOBS, active: 130 }, [], ASSUME).recommendedWorkers).toBe(3);
    expect(recommendWorkers(NO_JOBS, [], ASSUME).recommendedWorkers).toBe(0);
  });

  it('caps at the workers the quota can feed: ceil(min(RPM, TPM / tokens) × latency / 60 s / concurrency)', () => {
    // 4,000 RPM at 5 s keeps 333.3 calls in flight: 6 workers of 64. The backlog alone asks for 157.
    const result = recommendWorkers({ ...NO_JOBS, prioritized: 10_000 }, [reading({ rpmLimit: 4_000 })], ASSUME);
    expect(result.scopes[0]!.callsInFlight).toBeCloseTo(333.33, 2);
    expect(result.backlogWorkers).toBe(157);
    expect(result.quotaWorkers).toBe(6);
    expect(result.recommendedWorkers).toBe(6);
    expect(result.capped).toBe(true);
  });

  it('turns TPM into requests with the window’s average tokens per request, else the assumed one', () => {
    // 1,000,000 TPM at 2,000 tokens per request = 500 requests per minute, below the 4,000 RPM.
    const busy = scopeCapacity(reading({ rpmLimit: 4_000, tpmLimit: 1_000_000, requests: 100, tokens: 200_000 }), ASSUME);
    expect(busy.tokensPerRequest).toBe(2_000);
    expect(busy.requestsPerMinute).toBe(500);
    const idle = scopeCapacity(reading({ tpmLimit: 1_000_000 }), ASSUME);
    expect(idle.tokensPerRequest).toBe(1_000);
    expect(idle.requestsPerMinute).toBe(1_000);
  });

  it('prefers the observed latency to the configured one', () => {
    const observed = scopeCapacity(reading({ rpmLimit: 600, observedLatencyMs: 12_000, observedP50Ms: 9_000 }), ASSUME);
    expect(observed).toMatchObject({ latencyMs: 12_000, latencySource: 'observed', callsInFlight: 120, observedP50Ms: 9_000 });
    expect(scopeCapacity(reading({ rpmLimit: 600 }), ASSUME)).toMatchObject({ latencyMs: 5_000, latencySource: 'configured', callsInFlight: 50 });
  });

  it('adds up the scopes the fleet draws from; one unlimited scope lifts the cap', () => {
    const two = [reading({ scope: 'a', rpmLimit: 3_000 }), reading({ scope: 'b', rpmLimit: 3_000 })];
    expect(recommendWorkers({ ...NO_JOBS, prioritized: 10_000 }, two, ASSUME).quotaWorkers).toBe(8); // 500 in flight
    const open = [...two, reading({ scope: 'c' })];
    expect(recommendWorkers({ ...NO_JOBS, prioritized: 10_000 }, open, ASSUME)).toMatchObject({ quotaWorkers: null, recommendedWorkers: 157 });
  });

  it('says the quota is saturated when the window is full or the scope is paused', () => {
    expect(scopeCapacity(reading({ rpmLimit: 100, requests: 100 }), ASSUME).saturated).toBe(true);
    expect(scopeCapacity(reading({ rpmLimit: 100, requests: 99 }), ASSUME).saturated).toBe(false);
    expect(scopeCapacity(reading({ tpmLimit: 10_000, requests: 9, tokens: 9_500 }), ASSUME).saturated).toBe(true);
    expect(scopeCapacity(reading({ rpmLimit: 100, pausedUntil: Date.now() + 5_000, pauseReason: 'rate-limited' }), ASSUME).saturated).toBe(true);
  });

  it('a spent daily quota feeds no worker until its reset', () => {
    const spent = reading({ rpmLimit: 4_000, pausedUntil: Date.now() + 3_600_000, pauseReason: 'daily-quota' });
    const result = recommendWorkers({ ...NO_JOBS, prioritized: 1_000 }, [spent], ASSUME);
    expect(result.scopes[0]!.requestsPerMinute).toBe(0);
    expect(result.recommendedWorkers).toBe(0);
  });

  it('scales the per-window rate to a minute for a limiter window that is not 60 s', () => {
    expect(scopeCapacity(reading({ rpmLimit: 100, windowMs: 10_000 }), ASSUME).requestsPerMinute).toBe(600);
  });
});

describe('quotaScopes', () => {
  it('is empty without limits, and names the default model once GEMINI_RPM sets it', () => {
    expect(quotaScopes(loadConfig({}))).toEqual([]);
    expect(quotaScopes(loadConfig({ GEMINI_RPM: '1000', GEMINI_MODEL: 'gemini-3.6-flash' }))).toEqual([
      {
        id: 'gemini:gemini-3.6-flash:default',
        key: { provider: 'gemini', model: 'gemini-3.6-flash', project: 'default' },
        limits: { rpm: 1000, tpm: 0 },
        latencyLink: 'gemini:gemini-3.6-flash',
      },
    ]);
  });

  it('resolves chain links as the worker does, once per scope', () => {
    const config = loadConfig({});
    config.limits = { 'gemini-3.6-flash': { rpm: 100, tpm: 0, project: 'p1' }, 'local:llama': { rpm: 50, tpm: 0 } };
    config.chains = {
      default: [
        { provider: 'gemini', model: '$job' },
        { provider: 'openai', name: 'local', model: 'llama', baseUrl: 'http://127.0.0.1:1/v1' },
      ],
      'gemini-3.6-flash': [{ provider: 'gemini', model: 'gemini-3.6-flash' }],
    } as typeof config.chains;
    expect(quotaScopes(config).map((scope) => [scope.id, scope.limits.rpm])).toEqual([
      ['gemini:gemini-3.6-flash:p1', 100],
      ['local:llama:default', 50],
    ]);
  });
});
