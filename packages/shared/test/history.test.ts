import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  DEPTH_HISTORY_MS,
  DEPTH_SAMPLE_MS,
  LATENCY_MAX_SAMPLES,
  LATENCY_WINDOW_MS,
  percentile,
  readDepthHistory,
  readProviderLatencies,
  recordDepthSample,
  recordProviderLatencies,
} from '../src/index.js';
import { startTestRedis, uniquePrefix, type TestRedis } from '../src/testing/index.js';

let server: TestRedis;
let redis: Redis;
beforeAll(async () => {
  server = await startTestRedis();
  redis = new Redis(server.url);
});
afterAll(async () => {
  redis?.disconnect();
  await server?.stop();
});

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
const counts = (waiting: number) => ({ waiting, prioritized: 2 * waiting, delayed: 1, active: 3 });

describe('queue-depth history (real Redis, explicit clock)', () => {
  it('keeps one sample per 10 s bucket fleet-wide (the first writer wins) and an hour of them', async () => {
    const prefix = uniquePrefix('hist');
    // Two workers report the same bucket: one sample.
    await recordDepthSample(redis, prefix, counts(5), T0 + 1_000);
    await recordDepthSample(redis, prefix, counts(7), T0 + 4_000);
    await recordDepthSample(redis, prefix, counts(9), T0 + DEPTH_SAMPLE_MS);
    expect(await readDepthHistory(redis, prefix, T0 + DEPTH_SAMPLE_MS)).toEqual([
      { at: T0, waiting: 5, prioritized: 10, delayed: 1, active: 3 },
      { at: T0 + DEPTH_SAMPLE_MS, waiting: 9, prioritized: 18, delayed: 1, active: 3 },
    ]);
    // An hour later the first two are gone from the key itself, not only from the reading.
    const later = T0 + DEPTH_HISTORY_MS + DEPTH_SAMPLE_MS;
    await recordDepthSample(redis, prefix, counts(1), later);
    expect((await readDepthHistory(redis, prefix, later)).map((s) => s.at)).toEqual([T0 + DEPTH_SAMPLE_MS, later]);
    expect(await redis.zcard(`${prefix}:history:depth`)).toBe(2);
  });
});

describe('provider latency samples', () => {
  it('groups by link over the window, drops older ones and keeps at most the newest LATENCY_MAX_SAMPLES', async () => {
    const prefix = uniquePrefix('lat');
    await recordProviderLatencies(redis, prefix, [{ link: 'gemini:old', latencyMs: 9_999, at: T0 - LATENCY_WINDOW_MS - 1 }], T0 - LATENCY_WINDOW_MS);
    await recordProviderLatencies(
      redis,
      prefix,
      [100, 200, 300, 400, 1_000].map((latencyMs, i) => ({ link: 'gemini:gemini-2.5-flash', latencyMs, at: T0 + i })),
      T0,
    );
    // Identical values of one flush are distinct samples.
    await recordProviderLatencies(redis, prefix, [{ link: 'openai:gpt', latencyMs: 50, at: T0 }, { link: 'openai:gpt', latencyMs: 50, at: T0 }], T0);
    expect(await readProviderLatencies(redis, prefix, T0 + 10)).toEqual({ 'gemini:gemini-2.5-flash': [100, 200, 300, 400, 1_000], 'openai:gpt': [50, 50] });

    const many = Array.from({ length: LATENCY_MAX_SAMPLES + 10 }, (_, i) => ({ link: 'gemini:busy', latencyMs: i, at: T0 + 100 + i }));
    await recordProviderLatencies(redis, prefix, many, T0 + 100);
    expect(await redis.zcard(`${prefix}:history:latency`)).toBe(LATENCY_MAX_SAMPLES);
  });

  it('percentile: nearest rank', () => {
    const values = [1_000, 100, 400, 200, 300];
    expect(percentile(values, 50)).toBe(300);
    expect(percentile(values, 95)).toBe(1_000);
    expect(percentile([7], 95)).toBe(7);
    expect(percentile([], 50)).toBeNull();
  });
});
