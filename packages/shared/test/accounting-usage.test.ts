import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { usageDayKey, usageHourKey, usageMonthKey, UsageLedger, type TokenUsage, type UsageEntry } from '../src/index.js';
import { uniquePrefix } from '../src/testing/index.js';
import { usePrivateRedis } from './private-redis.js';

const usage = (inputTokens: number, outputTokens: number, thoughtsTokens = 0, cachedTokens = 0): TokenUsage => ({
  inputTokens,
  outputTokens,
  thoughtsTokens,
  cachedTokens,
  totalTokens: inputTokens + outputTokens + thoughtsTokens,
});

const entry = (e: Partial<UsageEntry> & Pick<UsageEntry, 'tenant' | 'model'>): UsageEntry => ({
  provider: 'gemini',
  outcome: 'completed',
  costNanoUsd: 0,
  cached: false,
  ...e,
});

// Costs by hand on gemini-3.6-flash (1,500 / 7,500 / 150 nano per input / output / cached token):
// 1,000 in + 500 out = 1,500,000 + 3,750,000 = 5,250,000
// 2,000 in (1,000 cached) + 100 out + 50 thoughts = 1,500,000 + 150,000 + 1,125,000 = 2,775,000
const BATCH_1: UsageEntry[] = [
  entry({ tenant: 'acme', model: 'gemini-3.6-flash', usage: usage(1_000, 500), costNanoUsd: 5_250_000 }),
  entry({ tenant: 'acme', model: 'gemini-3.6-flash', usage: usage(2_000, 100, 50, 1_000), costNanoUsd: 2_775_000 }),
  entry({ tenant: 'acme', model: 'gemini-2.5-flash-lite', outcome: 'failed', costNanoUsd: 0 }),
  // A response-cache hit: tokens and cost are ignored (nothing billed), the avoided cost counts.
  entry({ tenant: 'globex', model: 'gemini-3.6-flash', cached: true, usage: usage(1_000, 500), costNanoUsd: 0, savedNanoUsd: 5_250_000 }),
];
const BATCH_2: UsageEntry[] = [
  entry({ tenant: 'acme', model: 'gemini-3.6-flash', usage: usage(1_000, 500), costNanoUsd: 5_250_000 }),
  entry({ tenant: 'globex', model: 'mystery-model', usage: usage(10, 10), costNanoUsd: null }),
];

const T1 = new Date('2026-03-10T10:15:00Z');
const T2 = new Date('2026-03-10T11:05:00Z');

describe('UsageLedger (real Redis)', () => {
  let redis: Redis;
  usePrivateRedis((started) => ({ redis } = started));

  it('sums two batches per tenant and model to the nano-dollar', async () => {
    const ledger = new UsageLedger(redis, uniquePrefix());
    await ledger.record(BATCH_1, T1);
    await ledger.record(BATCH_2, T2);

    const acme = await ledger.tenantUsage('acme', T2);
    expect(acme.day).toBe('2026-03-10');
    expect(acme.monthKey).toBe('2026-03');
    expect(acme.today).toMatchObject({
      jobs: 4,
      failures: 1,
      inputTokens: 4_000,
      outputTokens: 1_100,
      thoughtsTokens: 50,
      cachedTokens: 1_000,
      costNanoUsd: 13_275_000,
      costUsd: 0.013275,
      cacheHits: 0,
      savedNanoUsd: 0,
      unpricedJobs: 0,
    });
    expect(acme.today.byModel['gemini-3.6-flash']).toMatchObject({ jobs: 3, failures: 0, costNanoUsd: 13_275_000 });
    expect(acme.today.byModel['gemini-2.5-flash-lite']).toMatchObject({ jobs: 1, failures: 1, costNanoUsd: 0 });
    const { day: _d, monthKey: _m, ...periods } = acme;
    expect(periods.month).toEqual(periods.today);

    const globex = await ledger.tenantUsage('globex', T2);
    expect(globex.today).toMatchObject({ jobs: 2, cacheHits: 1, savedNanoUsd: 5_250_000, savedUsd: 0.00525, inputTokens: 10, costNanoUsd: 0, unpricedJobs: 1 });
    expect((await ledger.tenantUsage('nobody', T2)).today).toMatchObject({ jobs: 0, costNanoUsd: 0, byModel: {} });
  });

  it('pre-aggregates a batch in memory and sets TTLs on every key', async () => {
    const prefix = uniquePrefix();
    const ledger = new UsageLedger(redis, prefix);
    await ledger.record(BATCH_1, T1);
    const hash = await redis.hgetall(usageDayKey(prefix, '2026-03-10', 'acme'));
    expect(hash['gemini-3.6-flash|jobs']).toBe('2');
    expect(hash['gemini-3.6-flash|costNanoUsd']).toBe('8025000');
    expect(hash['gemini-3.6-flash|cacheHits']).toBeUndefined(); // zero counters are not written
    const dayTtl = await redis.ttl(usageDayKey(prefix, '2026-03-10', 'acme'));
    expect(dayTtl).toBeGreaterThan(34 * 86_400);
    expect(dayTtl).toBeLessThanOrEqual(35 * 86_400);
    expect(await redis.ttl(usageMonthKey(prefix, '2026-03', 'acme'))).toBeGreaterThan(399 * 86_400);
    expect(await redis.ttl(usageHourKey(prefix, '2026-03-10T10'))).toBeGreaterThan(47 * 3_600);
    const keys = await redis.keys(`${prefix}:*`);
    for (const key of keys) expect(await redis.ttl(key), key).toBeGreaterThan(0);
  });

  it('refuses a non-integer cost before writing anything', async () => {
    const prefix = uniquePrefix();
    const ledger = new UsageLedger(redis, prefix);
    await expect(
      ledger.record([BATCH_1[0]!, entry({ tenant: 'acme', model: 'm', costNanoUsd: 1.5 })], T1),
    ).rejects.toThrow(/costNanoUsd/);
    expect(await redis.keys(`${prefix}:*`)).toEqual([]);
  });

  it('gives the dashboard totals by tenant and model, a daily and an hourly series', async () => {
    const ledger = new UsageLedger(redis, uniquePrefix());
    await ledger.record(BATCH_1, T1);
    await ledger.record(BATCH_2, T2);
    const overview = await ledger.overview({ now: T2 });
    expect(overview.day).toBe('2026-03-10');
    expect(overview.today.totals).toMatchObject({ jobs: 6, failures: 1, costNanoUsd: 13_275_000, cacheHits: 1, savedNanoUsd: 5_250_000 });
    expect(overview.today.byTenant.acme).toMatchObject({ jobs: 4, costNanoUsd: 13_275_000 });
    expect(overview.today.byTenant.globex).toMatchObject({ jobs: 2, costNanoUsd: 0 });
    expect(overview.today.byModel['gemini-3.6-flash']).toMatchObject({ jobs: 4, costNanoUsd: 13_275_000 });
    expect(Object.keys(overview.today.byModel).sort()).toEqual(['gemini-2.5-flash-lite', 'gemini-3.6-flash', 'mystery-model']);
    expect(overview.month.totals.costNanoUsd).toBe(13_275_000);
    expect(overview.daily.map((d) => d.day)).toEqual(['2026-03-10']);

    expect(overview.hourly).toHaveLength(24);
    expect(overview.hourly.at(-1)).toMatchObject({
      hour: '2026-03-10T11',
      startMs: Date.UTC(2026, 2, 10, 11),
      jobs: 2,
      costNanoUsd: 5_250_000,
      costByTenant: { acme: 5_250_000 },
    });
    expect(overview.hourly.at(-2)).toMatchObject({
      hour: '2026-03-10T10',
      jobs: 4,
      failures: 1,
      costNanoUsd: 8_025_000,
      costByTenant: { acme: 8_025_000 },
      costByModel: { 'gemini-3.6-flash': 8_025_000 },
    });
    expect(overview.hourly.slice(0, 22).every((h) => h.jobs === 0)).toBe(true);
  });

  it('rolls over at UTC midnight and at the month start', async () => {
    const ledger = new UsageLedger(redis, uniquePrefix());
    await ledger.record(BATCH_1, T1);
    const nextDay = new Date('2026-03-11T00:30:00Z');
    await ledger.record([entry({ tenant: 'acme', model: 'gemini-3.6-flash', usage: usage(1_000, 500), costNanoUsd: 5_250_000 })], nextDay);

    const acme = await ledger.tenantUsage('acme', nextDay);
    expect(acme.day).toBe('2026-03-11');
    expect(acme.today).toMatchObject({ jobs: 1, costNanoUsd: 5_250_000 });
    expect(acme.month).toMatchObject({ jobs: 4, costNanoUsd: 13_275_000 });

    const overview = await ledger.overview({ days: 2, now: nextDay });
    expect(overview.daily.map((d) => [d.day, d.totals.jobs, d.totals.costNanoUsd])).toEqual([
      ['2026-03-10', 4, 8_025_000],
      ['2026-03-11', 1, 5_250_000],
    ]);
    expect(overview.today.totals.jobs).toBe(1);
    expect(overview.month.byTenant.acme?.jobs).toBe(4);
    expect(overview.month.byTenant.globex?.jobs).toBe(1);
    // The hourly series crosses midnight: 10:00 yesterday is still in the last 24 hours.
    expect(overview.hourly.find((h) => h.hour === '2026-03-10T10')?.costNanoUsd).toBe(8_025_000);

    const april = new Date('2026-04-01T00:00:00Z');
    const next = await ledger.tenantUsage('acme', april);
    expect(next.monthKey).toBe('2026-04');
    expect(next.month.jobs).toBe(0);
    expect((await ledger.overview({ now: april })).month.totals.jobs).toBe(0);
  });
});
