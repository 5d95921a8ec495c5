import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import {
  BudgetGuard,
  budgetReservedKey,
  budgetSpentKey,
  loadConfig,
  type BudgetDecision,
  type BudgetReservation,
} from '../src/index.js';
import { startServiceProcess, startTestRedis, uniquePrefix, type TestRedis } from '../src/testing/index.js';
import { usePrivateRedis } from './private-redis.js';

const CENT = 10_000_000; // $0.01 in nano-USD
const WORST = 400_000; // $0.0004
const NOW = new Date('2026-03-10T12:00:00Z');
const TENANTS = {
  acme: { dailyUsd: 0.01 },
  monthly: { dailyUsd: 1, monthlyUsd: 0.001 },
};

const granted = (decisions: BudgetDecision[]): BudgetReservation[] =>
  decisions.flatMap((d) => (d.ok ? [d.reservation] : []));

describe('BudgetGuard (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  usePrivateRedis((started) => ({ server, redis } = started));

  it('never grants more than the budget to many concurrent clients', async () => {
    const prefix = uniquePrefix();
    const clients = Array.from({ length: 10 }, () => new Redis(server.url));
    try {
      const guards = clients.map((client) => new BudgetGuard(client, prefix, TENANTS));
      // 200 requests of $0.0004 against $0.01: 15 calls per client in parallel, 5 batches of 2 and 10 of 1.
      const calls = guards.flatMap((guard) =>
        Array.from({ length: 15 }, (_, i) =>
          guard.reserve(Array.from({ length: i % 3 === 0 ? 2 : 1 }, () => ({ tenant: 'acme', amountNanoUsd: WORST })), NOW),
        ),
      );
      const decisions = (await Promise.all(calls)).flat();
      expect(decisions).toHaveLength(200);
      const ok = granted(decisions);
      expect(ok.length * WORST).toBeLessThanOrEqual(CENT);
      expect(ok.length).toBe(25); // the budget is filled exactly, never exceeded
      expect(Number(await redis.get(budgetReservedKey(prefix, 'acme')))).toBe(25 * WORST);
      // Nothing is spent yet: the refusals are "busy" (in-flight reservations hold the room), and say so.
      const denied = decisions.find((d) => !d.ok);
      expect(denied).toEqual({
        ok: false,
        scope: 'daily',
        reason: 'busy',
        retryAtMs: Date.UTC(2026, 2, 11),
        limitNanoUsd: CENT,
        spentNanoUsd: 0,
        reservedNanoUsd: 25 * WORST,
        wantNanoUsd: WORST,
        exceedsLimit: false,
      });
    } finally {
      for (const client of clients) client.disconnect();
    }
  });

  it('settles actual costs, which frees the difference; release frees everything', async () => {
    const prefix = uniquePrefix();
    const guard = new BudgetGuard(redis, prefix, TENANTS);
    const first = granted(await guard.reserve(Array.from({ length: 30 }, () => ({ tenant: 'acme', amountNanoUsd: WORST })), NOW));
    expect(first).toHaveLength(25);

    // 5 requests cost $0.0001 each instead of $0.0004 (one a cache hit: 0): 4 × 300,000 + 400,000 freed.
    await guard.settle([
      ...first.slice(0, 4).map((reservation) => ({ reservation, actualNanoUsd: 100_000 })),
      { reservation: first[4]!, actualNanoUsd: 0 },
    ]);
    expect(await guard.remaining('acme', NOW)).toEqual({
      daily: {
        limitNanoUsd: CENT,
        spentNanoUsd: 400_000,
        reservedNanoUsd: 20 * WORST,
        remainingNanoUsd: CENT - 400_000 - 20 * WORST,
        resetsAtMs: Date.UTC(2026, 2, 11),
      },
    });
    // 1,600,000 free → exactly 4 more requests of 400,000.
    const second = granted(await guard.reserve(Array.from({ length: 6 }, () => ({ tenant: 'acme', amountNanoUsd: WORST })), NOW));
    expect(second).toHaveLength(4);

    await guard.release([...first.slice(5), ...second]);
    expect(Number(await redis.get(budgetReservedKey(prefix, 'acme')))).toBe(0);
    expect((await guard.remaining('acme', NOW)).daily).toMatchObject({ spentNanoUsd: 400_000, reservedNanoUsd: 0 });
    // Room again for (10,000,000 − 400,000) / 400,000 = 24.
    expect(granted(await guard.reserve(Array.from({ length: 30 }, () => ({ tenant: 'acme', amountNanoUsd: WORST })), NOW))).toHaveLength(24);
  });

  it('enforces the monthly scope and says when to retry', async () => {
    const guard = new BudgetGuard(redis, uniquePrefix(), TENANTS);
    const decisions = await guard.reserve(Array.from({ length: 3 }, () => ({ tenant: 'monthly', amountNanoUsd: WORST })), NOW);
    expect(decisions.map((d) => d.ok)).toEqual([true, true, false]);
    expect(decisions[2]).toMatchObject({ ok: false, scope: 'monthly', reason: 'busy', retryAtMs: Date.UTC(2026, 3, 1), limitNanoUsd: 1_000_000 });

    await guard.settle(granted(decisions).map((reservation) => ({ reservation, actualNanoUsd: WORST })));
    // Next day: the daily spend is back to 0, the month is not.
    const tomorrow = new Date('2026-03-11T00:00:01Z');
    expect((await guard.reserve([{ tenant: 'monthly', amountNanoUsd: WORST }], tomorrow))[0]).toMatchObject({
      ok: false,
      scope: 'monthly',
      reason: 'spent',
      spentNanoUsd: 800_000,
      reservedNanoUsd: 0,
    });
    expect(await guard.remaining('monthly', tomorrow)).toMatchObject({
      daily: { spentNanoUsd: 0, limitNanoUsd: 1_000_000_000 },
      monthly: { spentNanoUsd: 800_000, limitNanoUsd: 1_000_000, remainingNanoUsd: 200_000 },
    });
    // Next month: allowed again.
    expect((await guard.reserve([{ tenant: 'monthly', amountNanoUsd: WORST }], new Date('2026-04-01T00:00:00Z')))[0]?.ok).toBe(true);
  });

  it('marks a request larger than the whole budget', async () => {
    const guard = new BudgetGuard(redis, uniquePrefix(), TENANTS);
    const [decision] = await guard.reserve([{ tenant: 'acme', amountNanoUsd: 2 * CENT }], NOW);
    expect(decision).toMatchObject({ ok: false, scope: 'daily', exceedsLimit: true });
  });

  it("charges a dead holder's reservation at its amount after its TTL, unless renewed", async () => {
    const prefix = uniquePrefix();
    const guard = new BudgetGuard(redis, prefix, TENANTS, { reservationTtlMs: 30_000 });
    const [alive] = granted(await guard.reserve([{ tenant: 'acme', amountNanoUsd: WORST }], NOW));
    expect(granted(await guard.reserve([{ tenant: 'acme', amountNanoUsd: 4 * WORST }], NOW))).toHaveLength(1);
    // 20 s later the live holder renews its reservation; the other holder was killed.
    expect(await guard.renew([alive!], new Date(NOW.getTime() + 20_000))).toBe(1);
    const busy = await guard.reserve([{ tenant: 'acme', amountNanoUsd: CENT - WORST }], new Date(NOW.getTime() + 25_000));
    expect(busy[0]).toMatchObject({ ok: false, reason: 'busy', spentNanoUsd: 0, reservedNanoUsd: 5 * WORST });
    // After the TTL the dead one's call may have reached the provider: charged at its estimate, freed.
    const afterTtl = new Date(NOW.getTime() + 30_001);
    expect((await guard.remaining('acme', afterTtl)).daily).toMatchObject({ spentNanoUsd: 4 * WORST, reservedNanoUsd: WORST });
    expect(Number(await redis.get(budgetReservedKey(prefix, 'acme')))).toBe(WORST);
    // The renewed one is still open, and settles normally.
    await guard.settle([{ reservation: alive!, actualNanoUsd: 100_000 }]);
    expect((await guard.remaining('acme', afterTtl)).daily).toMatchObject({ spentNanoUsd: 4 * WORST + 100_000, reservedNanoUsd: 0 });
    const ttl = await redis.pttl(budgetReservedKey(prefix, 'acme'));
    expect(ttl).toBeGreaterThan(60_000);
  });

  it('holds a reservation made with its own hold time (a Batch API job) past the usual TTL, until it ends', async () => {
    const prefix = uniquePrefix();
    const guard = new BudgetGuard(redis, prefix, TENANTS, { reservationTtlMs: 30_000 });
    const hour = 3_600_000;
    const [held] = granted(await guard.reserve([{ tenant: 'acme', amountNanoUsd: WORST }], NOW, hour));
    expect(held!.expiresAtMs).toBe(NOW.getTime() + hour);
    // Ten minutes on (no renewal): still reserved, not charged.
    expect((await guard.remaining('acme', new Date(NOW.getTime() + 600_000))).daily).toMatchObject({ spentNanoUsd: 0, reservedNanoUsd: WORST });
    expect(await redis.pttl(budgetReservedKey(prefix, 'acme'))).toBeGreaterThan(hour);
    // Past its hold: charged at its amount like any lapsed reservation.
    expect((await guard.remaining('acme', new Date(NOW.getTime() + hour + 1))).daily).toMatchObject({ spentNanoUsd: WORST, reservedNanoUsd: 0 });
  });

  it('a slow holder settling an already charged reservation adds only the excess over its amount', async () => {
    const prefix = uniquePrefix();
    const guard = new BudgetGuard(redis, prefix, TENANTS, { reservationTtlMs: 1_000 });
    const [cheap, dear] = granted(await guard.reserve([{ tenant: 'acme', amountNanoUsd: WORST }, { tenant: 'acme', amountNanoUsd: WORST }], NOW));
    await guard.reserve([{ tenant: 'acme', amountNanoUsd: 1 }], new Date(NOW.getTime() + 2_000)); // sweeps: 2 × WORST charged
    expect(Number(await redis.get(budgetSpentKey(prefix, 'acme', '2026-03-10')))).toBe(2 * WORST);
    await guard.settle([
      { reservation: cheap!, actualNanoUsd: 300_000 },
      { reservation: dear!, actualNanoUsd: 500_000 },
    ]);
    expect(Number(await redis.get(budgetSpentKey(prefix, 'acme', '2026-03-10')))).toBe(2 * WORST + 100_000);
    expect(Number(await redis.get(budgetReservedKey(prefix, 'acme')))).toBe(1); // only the third one
  });

  it('saturates odd amounts instead of throwing for the batch', async () => {
    const guard = new BudgetGuard(redis, uniquePrefix(), TENANTS);
    const decisions = await guard.reserve(
      [
        { tenant: 'acme', amountNanoUsd: Number.POSITIVE_INFINITY },
        { tenant: 'free', amountNanoUsd: 1e30 },
        { tenant: 'acme', amountNanoUsd: Number.NaN },
        { tenant: 'acme', amountNanoUsd: WORST },
      ],
      NOW,
    );
    expect(decisions.map((d) => (d.ok ? 'ok' : d.exceedsLimit ? 'exceeds' : d.reason))).toEqual(['exceeds', 'ok', 'exceeds', 'ok']);
    await guard.settle(granted(decisions).map((reservation) => ({ reservation, actualNanoUsd: Number.NaN })));
    expect((await guard.remaining('acme', NOW)).daily).toMatchObject({ spentNanoUsd: 0, reservedNanoUsd: 0 });
  });

  it('reports isOverBudget from settled spend', async () => {
    const guard = new BudgetGuard(redis, uniquePrefix(), TENANTS);
    expect(await guard.isOverBudget('acme', NOW)).toEqual({ over: false, scope: 'daily', spentNanoUsd: 0, limitNanoUsd: CENT });
    const held = granted(await guard.reserve([{ tenant: 'acme', amountNanoUsd: CENT }], NOW));
    expect((await guard.isOverBudget('acme', NOW)).over).toBe(false); // reservations are not spend
    await guard.settle([{ reservation: held[0]!, actualNanoUsd: CENT }]);
    expect(await guard.isOverBudget('acme', NOW)).toEqual({ over: true, scope: 'daily', spentNanoUsd: CENT, limitNanoUsd: CENT });
    expect((await guard.isOverBudget('acme', new Date('2026-03-11T00:00:00Z'))).over).toBe(false);

    const monthly = new BudgetGuard(redis, uniquePrefix(), TENANTS);
    const [r] = granted(await monthly.reserve([{ tenant: 'monthly', amountNanoUsd: 1_000_000 }], NOW));
    await monthly.settle([{ reservation: r!, actualNanoUsd: 1_000_000 }]);
    expect(await monthly.isOverBudget('monthly', NOW)).toEqual({ over: true, scope: 'monthly', spentNanoUsd: 1_000_000, limitNanoUsd: 1_000_000 });
  });

  it('lets tenants without a budget through without touching Redis', async () => {
    const untouchable = new Proxy({}, {
      get(_target, property) {
        throw new Error(`Redis was touched: ${String(property)}`);
      },
    }) as Redis;
    const guard = new BudgetGuard(untouchable, uniquePrefix(), TENANTS);
    const decisions = await guard.reserve([{ tenant: 'free', amountNanoUsd: 100 * CENT }, { tenant: 'free', amountNanoUsd: 1 }], NOW);
    expect(decisions.every((d) => d.ok && !d.reservation.tracked)).toBe(true);
    await guard.settle(granted(decisions).map((reservation) => ({ reservation, actualNanoUsd: 5 })));
    await guard.release(granted(decisions));
    expect(await guard.isOverBudget('free', NOW)).toEqual({ over: false, spentNanoUsd: 0, limitNanoUsd: null });
    expect(await guard.remaining('free', NOW)).toEqual({});
    expect(guard.policy('free')).toEqual({ budgeted: false, onExceeded: 'fail' });
  });

  it('reserves a mixed batch in one call: budgeted and unbudgeted tenants, in order', async () => {
    const guard = new BudgetGuard(redis, uniquePrefix(), TENANTS);
    const decisions = await guard.reserve(
      [
        { tenant: 'free', amountNanoUsd: CENT },
        { tenant: 'acme', amountNanoUsd: 6_000_000 },
        { tenant: 'monthly', amountNanoUsd: 2_000_000 },
        { tenant: 'acme', amountNanoUsd: 6_000_000 },
        { tenant: 'acme', amountNanoUsd: 4_000_000 },
      ],
      NOW,
    );
    expect(decisions.map((d) => (d.ok ? d.reservation.tenant : `${d.scope}`))).toEqual(['free', 'acme', 'monthly', 'daily', 'acme']);
  });

  it('reads budgets from the CONFIG_FILE tenants section', () => {
    const dir = mkdtempSync(join(tmpdir(), 'pq-config-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'tenants:\n  acme:\n    dailyUsd: 5\n    monthlyUsd: 100\n    onExceeded: wait\n  globex:\n    monthlyUsd: 0.5\n');
    const config = loadConfig({ CONFIG_FILE: file });
    expect(config.tenants).toEqual({
      acme: { dailyUsd: 5, monthlyUsd: 100, onExceeded: 'wait' },
      globex: { monthlyUsd: 0.5, onExceeded: 'fail' },
    });
    expect(loadConfig({}).tenants).toEqual({});
    const guard = new BudgetGuard(redis, uniquePrefix(), config.tenants);
    expect(guard.policy('acme')).toEqual({ budgeted: true, onExceeded: 'wait' });
    writeFileSync(file, 'tenants:\n  acme:\n    dailyUsd: -1\n');
    expect(() => loadConfig({ CONFIG_FILE: file })).toThrow(/tenants\.acme\.dailyUsd/);
    rmSync(dir, { recursive: true, force: true });
  });
});

// Real processes against the built package: the atomicity holds across separate Node processes.
describe('BudgetGuard across processes', () => {
  const here = dirname(fileURLToPath(import.meta.url));
  const dist = join(here, '..', 'dist', 'index.js');
  let server: TestRedis;
  let redis: Redis;
  beforeAll(async () => {
    for (const file of ['budgets', 'budget-scripts']) {
      const built = statSync(join(here, '..', 'dist', 'accounting', `${file}.js`), { throwIfNoEntry: false });
      const source = statSync(join(here, '..', 'src', 'accounting', `${file}.ts`));
      if (!built || built.mtimeMs < source.mtimeMs) {
        throw new Error('packages/shared/dist is missing or stale: run `npx tsc -p packages/shared/tsconfig.json` first');
      }
    }
    server = await startTestRedis();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis.disconnect();
    await server?.stop();
  });

  // Each process reserves batches of 3 × $0.0004 and settles them at a random actual ≤ the worst case,
  // until 40 rounds in a row were denied. It prints its total spend.
  const FIXTURE = `
    const { BudgetGuard, createRedis } = await import(process.env.PQ_DIST);
    const redis = createRedis(process.env.REDIS_URL, 'worker');
    const guard = new BudgetGuard(redis, process.env.PREFIX, { acme: { dailyUsd: 0.02 } });
    // A barrier, not a start time: all three begin together however slowly the machine starts them.
    await redis.incr(process.env.PREFIX + ':started');
    while (Number(await redis.get(process.env.PREFIX + ':started')) < 3) await new Promise((r) => setTimeout(r, 2));
    let spent = 0, grants = 0, denied = 0;
    while (denied < 40) {
      const decisions = await guard.reserve([0, 1, 2].map(() => ({ tenant: 'acme', amountNanoUsd: 400000 })));
      const ok = decisions.filter((d) => d.ok).map((d) => d.reservation);
      if (ok.length === 0) { denied += 1; await new Promise((r) => setTimeout(r, 2)); continue; }
      denied = 0;
      grants += ok.length;
      await new Promise((r) => setTimeout(r, Math.random() * 5));
      const items = ok.map((reservation) => ({ reservation, actualNanoUsd: 100000 + Math.floor(Math.random() * 300001) }));
      spent += items.reduce((sum, item) => sum + item.actualNanoUsd, 0);
      await guard.settle(items);
    }
    console.log('done ' + JSON.stringify({ spent, grants }));
    redis.disconnect();
  `;

  it('keeps the total spend of 3 worker processes within the budget', async () => {
    const prefix = uniquePrefix();
    const env = { PQ_DIST: pathToFileURL(dist).href, REDIS_URL: server.url, PREFIX: prefix };
    const processes = await Promise.all(
      [0, 1, 2].map(() =>
        startServiceProcess({ args: ['--input-type=module', '-e', FIXTURE], env, readyLine: /^done (\{.*\})$/m, timeoutMs: 30_000 }),
      ),
    );
    const reports = processes.map((p) => JSON.parse(p.ready[1]!) as { spent: number; grants: number });
    for (const p of processes) expect((await p.exited).code).toBe(0);

    const today = new Date().toISOString().slice(0, 10);
    const spent = Number(await redis.get(budgetSpentKey(prefix, 'acme', today)));
    expect(spent).toBe(reports.reduce((sum, r) => sum + r.spent, 0));
    expect(spent).toBeLessThanOrEqual(20_000_000);
    // Denials stop only when less than one worst case is left: the budget was really used up.
    expect(spent).toBeGreaterThan(20_000_000 - 400_000);
    expect(Number(await redis.get(budgetReservedKey(prefix, 'acme')))).toBe(0);
    expect(reports.every((r) => r.grants > 0)).toBe(true);
  });
});
