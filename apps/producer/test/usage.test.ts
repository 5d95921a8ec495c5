// GET /v1/usage (issue 4, point 3) and the upfront 402 for spent budgets (point 4), against real
// Redis: usage is written with the shared UsageLedger and spend with the BudgetGuard, as the worker does.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BudgetGuard, UsageLedger, nextUtcDayStartMs, nextUtcMonthStartMs, utcDay, utcMonth, type UsageEntry } from '@prompt-queue/shared';
import { startTestRedis, type TestRedis } from '@prompt-queue/shared/testing';
import { ACME, GLOBEX, totalJobs, startHarness, type Harness } from './harness.js';

let server: TestRedis;
let h: Harness | undefined;

beforeAll(async () => {
  server = await startTestRedis();
});
afterAll(async () => {
  await server?.stop();
});
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const usage = (tokens: [number, number, number, number]) => ({
  inputTokens: tokens[0],
  outputTokens: tokens[1],
  thoughtsTokens: tokens[2],
  cachedTokens: tokens[3],
  totalTokens: tokens[0] + tokens[1] + tokens[2],
});

describe('GET /v1/usage', () => {
  it("returns the caller's own usage, summed exactly from nano-dollars, by model", async () => {
    h = await startHarness(server.url);
    const ledger = new UsageLedger(h.redis, h.config.redis.prefix);
    const entries: UsageEntry[] = [
      // 0.1 + 0.2 as floats is 0.30000000000000004; as nano-dollars it is exactly 0.3.
      { tenant: 'acme', model: 'gemini-3.6-flash', provider: 'gemini', outcome: 'completed', usage: usage([100, 20, 5, 10]), costNanoUsd: 100_000_000, cached: false },
      { tenant: 'acme', model: 'gemini-3.6-flash', provider: 'gemini', outcome: 'completed', usage: usage([200, 40, 0, 0]), costNanoUsd: 200_000_000, cached: false },
      { tenant: 'acme', model: 'gemini-2.5-pro', provider: 'gemini', outcome: 'completed', usage: usage([7, 3, 1, 0]), costNanoUsd: 1, cached: false },
      { tenant: 'acme', model: 'gemini-2.5-pro', provider: 'gemini', outcome: 'failed', costNanoUsd: 0, cached: false },
      { tenant: 'acme', model: 'gemini-3.6-flash', provider: 'gemini', outcome: 'completed', costNanoUsd: 0, cached: true, savedNanoUsd: 123_456_789 },
      { tenant: 'globex', model: 'gemini-3.6-flash', provider: 'gemini', outcome: 'completed', usage: usage([1, 1, 0, 0]), costNanoUsd: 999, cached: false },
    ];
    await ledger.record(entries.slice(0, 3));
    await ledger.record(entries.slice(3));

    const response = await h.http.get('/v1/usage').set(ACME);
    expect(response.status).toBe(200);
    const now = new Date();
    const flash = { jobs: 3, failures: 0, inputTokens: 300, outputTokens: 60, thoughtsTokens: 5, cachedTokens: 10, costUsd: 0.3, costNanoUsd: 300_000_000, cacheHits: 1, savedUsd: 0.123456789, savedNanoUsd: 123_456_789, unpricedJobs: 0 };
    const pro = { jobs: 2, failures: 1, inputTokens: 7, outputTokens: 3, thoughtsTokens: 1, cachedTokens: 0, costUsd: 1e-9, costNanoUsd: 1, cacheHits: 0, savedUsd: 0, savedNanoUsd: 0, unpricedJobs: 0 };
    const period = {
      jobs: 5,
      failures: 1,
      inputTokens: 307,
      outputTokens: 63,
      thoughtsTokens: 6,
      cachedTokens: 10,
      costUsd: 0.300000001,
      costNanoUsd: 300_000_001,
      cacheHits: 1,
      savedUsd: 0.123456789,
      savedNanoUsd: 123_456_789,
      unpricedJobs: 0,
      byModel: { 'gemini-3.6-flash': flash, 'gemini-2.5-pro': pro },
    };
    expect(response.body).toEqual({ tenant: 'acme', day: utcDay(now), month: utcMonth(now), today: period, thisMonth: period, budget: null });

    const other = await h.http.get('/v1/usage').set(GLOBEX);
    expect(other.body.today).toMatchObject({ jobs: 1, costNanoUsd: 999, costUsd: 0.000000999 });
    expect(Object.keys(other.body.today.byModel)).toEqual(['gemini-3.6-flash']);
  });

  it('answers zeros for a tenant without usage, 401 without a key and 405 for other methods', async () => {
    h = await startHarness(server.url);
    const { body } = await h.http.get('/v1/usage').set(ACME);
    expect(body.today).toMatchObject({ jobs: 0, costUsd: 0, costNanoUsd: 0, byModel: {} });
    expect((await h.http.get('/v1/usage')).status).toBe(401);
    const post = await h.http.post('/v1/usage').set(ACME);
    expect(post.status).toBe(405);
    expect(post.body.error.code).toBe('METHOD_NOT_ALLOWED');
  });

  it('shows the budget: limit, spent, reserved, remaining and when it resets', async () => {
    h = await startHarness(server.url, {}, (config) => {
      config.tenants = { acme: { dailyUsd: 0.01, monthlyUsd: 5, onExceeded: 'fail' } };
    });
    const guard = new BudgetGuard(h.redis, h.config.redis.prefix, h.config.tenants);
    const [settled, open] = await guard.reserve([
      { tenant: 'acme', amountNanoUsd: 5_000_000 },
      { tenant: 'acme', amountNanoUsd: 1_000_000 },
    ]);
    if (!settled?.ok || !open?.ok) throw new Error('reservations refused');
    await guard.settle([{ reservation: settled.reservation, actualNanoUsd: 3_333_333 }]);

    const { body } = await h.http.get('/v1/usage').set(ACME);
    const now = new Date();
    expect(body.budget).toEqual({
      daily: { limitUsd: 0.01, spentUsd: 0.003333333, reservedUsd: 0.001, remainingUsd: 0.005666667, resetsAt: new Date(nextUtcDayStartMs(now)).toISOString() },
      monthly: { limitUsd: 5, spentUsd: 0.003333333, reservedUsd: 0.001, remainingUsd: 4.995666667, resetsAt: new Date(nextUtcMonthStartMs(now)).toISOString() },
    });
    expect((await h.http.get('/v1/usage').set(GLOBEX)).body.budget).toBeNull();
  });
});

describe('budgets upfront', () => {
  /** Spends `nanoUsd` for `tenant` the way the worker does: reserve, then settle. */
  async function spend(guard: BudgetGuard, tenant: string, nanoUsd: number): Promise<void> {
    const [decision] = await guard.reserve([{ tenant, amountNanoUsd: nanoUsd }]);
    if (!decision?.ok) throw new Error('reservation refused');
    await guard.settle([{ reservation: decision.reservation, actualNanoUsd: nanoUsd }]);
  }

  it('answers 402 BUDGET_EXCEEDED to single and bulk POSTs once the daily budget is spent', async () => {
    h = await startHarness(server.url, {}, (config) => {
      config.tenants = { acme: { dailyUsd: 0.01, onExceeded: 'fail' } };
    });
    const guard = new BudgetGuard(h.redis, h.config.redis.prefix, h.config.tenants);
    const accepted = await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'while there is money', idempotencyKey: 'paid' });
    expect(accepted.status).toBe(202);
    await spend(guard, 'acme', 9_999_999);
    expect((await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'one nano-dollar left' })).status).toBe(202);
    await spend(guard, 'acme', 1);

    const single = await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'over' });
    expect(single.status).toBe(402);
    expect(single.body.error.code).toBe('BUDGET_EXCEEDED');
    expect(single.body.error.message).toMatch(/daily budget is spent \(\$0\.01 of \$0\.01 this UTC day\); it resets at \d{4}-\d\d-\d\dT00:00:00\.000Z/);
    const bulk = await h.http.post('/v1/jobs/bulk').set(ACME).send({ jobs: [{ prompt: 'a' }, { prompt: 'b' }] });
    expect(bulk.status).toBe(402);
    expect(bulk.body.error.code).toBe('BUDGET_EXCEEDED');
    expect(await totalJobs(h.queue)).toBe(2);

    // A replay of a job that is already queued costs nothing new: answered as usual.
    const replay = await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'while there is money', idempotencyKey: 'paid' });
    expect(replay.status).toBe(202);
    expect(replay.body.id).toBe(accepted.body.id);
    // Validation still comes first, and other tenants are not affected.
    expect((await h.http.post('/v1/jobs').set(ACME).send({})).status).toBe(400);
    expect((await h.http.post('/v1/jobs').set(GLOBEX).send({ prompt: 'globex pays its own way' })).status).toBe(202);
  });

  it('applies the monthly budget too, and accepts jobs of `wait` tenants (they wait in the worker)', async () => {
    h = await startHarness(server.url, {}, (config) => {
      config.tenants = { acme: { monthlyUsd: 0.000001, onExceeded: 'fail' }, globex: { dailyUsd: 0.000001, onExceeded: 'wait' } };
    });
    const guard = new BudgetGuard(h.redis, h.config.redis.prefix, h.config.tenants);
    await spend(guard, 'acme', 1_000);
    await spend(guard, 'globex', 1_000);
    const monthly = await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'over for the month' });
    expect(monthly.status).toBe(402);
    expect(monthly.body.error.message).toContain('monthly budget is spent');
    expect((await h.http.post('/v1/jobs').set(GLOBEX).send({ prompt: 'I can wait' })).status).toBe(202);
  });
});
