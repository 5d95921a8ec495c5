import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { DEFAULT_PRICES, highQuantile, OutputTokenEstimator, outputBoundClass, worstCaseCostNanoUsd } from '../src/index.js';
import { uniquePrefix } from '../src/testing/index.js';
import { usePrivateRedis } from './private-redis.js';

describe('OutputTokenEstimator (real Redis)', () => {
  let redis: Redis;
  usePrivateRedis((started) => ({ redis } = started));

  it('errs high (the bound) until it has samples, then reserves their p95, shared by the fleet', async () => {
    const prefix = uniquePrefix();
    const a = new OutputTokenEstimator(redis, prefix, { minSamples: 20 });
    await a.prepare([{ model: 'm', bound: 64 }]);
    expect(a.estimate('m', 64)).toBe(64);
    // 19 samples: still the bound.
    await a.record(Array.from({ length: 19 }, (_, i) => ({ model: 'm', bound: 64, tokens: 10 + i })));
    expect(a.estimate('m', 64)).toBe(64);
    // 100 samples of 10..109 output + thinking (thinking may exceed maxOutputTokens: not capped).
    await a.record(Array.from({ length: 81 }, (_, i) => ({ model: 'm', bound: 64, tokens: 29 + i })));
    expect(a.estimate('m', 64)).toBe(104);
    // Another worker (a fresh process) starts from what the fleet recorded.
    const b = new OutputTokenEstimator(redis, prefix, { minSamples: 20 });
    await b.prepare([{ model: 'm', bound: 64 }]);
    expect(b.estimate('m', 64)).toBe(104);
    // Other bound classes and models are not priced from these samples.
    await b.prepare([{ model: 'm', bound: 8_192 }, { model: 'other', bound: 64 }]);
    expect(b.estimate('m', 8_192)).toBe(8_192);
    expect(b.estimate('other', 64)).toBe(64);
  });

  it('keeps the last `samples` per class, so the estimate follows a change', async () => {
    const prefix = uniquePrefix();
    const estimator = new OutputTokenEstimator(redis, prefix, { samples: 50, minSamples: 10 });
    await estimator.record(Array.from({ length: 50 }, () => ({ model: 'm', bound: 1_000, tokens: 900 })));
    expect(estimator.estimate('m', 1_000)).toBe(900);
    await estimator.record(Array.from({ length: 50 }, () => ({ model: 'm', bound: 1_000, tokens: 100 })));
    expect(estimator.estimate('m', 1_000)).toBe(100);
    expect(await redis.llen(`${prefix}:outest:m:${outputBoundClass(1_000)}`)).toBe(50);
  });

  it('helpers: bound classes and the nearest-rank quantile', () => {
    expect([1, 64, 65, 65_536].map(outputBoundClass)).toEqual([0, 6, 7, 16]);
    expect(highQuantile([5, 1, 4, 2, 3], 0.95)).toBe(5);
    expect(highQuantile(Array.from({ length: 100 }, (_, i) => i + 1), 0.95)).toBe(95);
  });
});

describe('worstCaseCostNanoUsd saturates', () => {
  it('a count past 2^53 or not a number prices at the maximum instead of throwing', () => {
    const price = DEFAULT_PRICES['gemini-2.5-flash']!;
    expect(worstCaseCostNanoUsd(10, 1e15 + 65_536, price)).toBe(Number.MAX_SAFE_INTEGER);
    expect(worstCaseCostNanoUsd(10, Number.POSITIVE_INFINITY, price)).toBe(Number.MAX_SAFE_INTEGER);
    expect(worstCaseCostNanoUsd(Number.NaN, 10, price)).toBe(Number.MAX_SAFE_INTEGER);
    expect(worstCaseCostNanoUsd(10, 64, price)).toBe(10 * 300 + 64 * 2_500);
  });
});
