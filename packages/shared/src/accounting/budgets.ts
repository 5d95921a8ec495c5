import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { budgetReservationsKey, budgetReservedKey, budgetSpentKey } from '../redis/keys.js';
import { RESERVE_SCRIPT, SETTLE_SCRIPT, runScript } from './budget-scripts.js';
import { nextUtcDayStartMs, nextUtcMonthStartMs, utcDay, utcMonth } from './periods.js';

/** One tenant's budget as configured (the CONFIG_FILE `tenants` section), USD. */
export interface TenantBudgetConfig {
  dailyUsd?: number;
  monthlyUsd?: number;
  /** @defaultValue 'fail' */
  onExceeded?: 'fail' | 'wait';
}

export type BudgetScope = 'daily' | 'monthly';

/**
 * Money held for one request between `reserve` and `settle`/`release`. Plain data: it may be
 * logged or kept next to the job. `tracked: false` for tenants without a budget (nothing in Redis).
 */
export interface BudgetReservation {
  tenant: string;
  id: string;
  /** Reserved worst case, integer nano-USD. */
  amountNanoUsd: number;
  /** UTC day (`YYYY-MM-DD`) and month (`YYYY-MM`) the actual cost is charged to. */
  day: string;
  month: string;
  /** After this (epoch ms) the reservation is freed even if never settled. */
  expiresAtMs: number;
  tracked: boolean;
}

export type BudgetDecision =
  | { ok: true; reservation: BudgetReservation }
  | {
      ok: false;
      scope: BudgetScope;
      /** Start of the next UTC day (daily) or month (monthly), epoch ms. */
      retryAtMs: number;
      limitNanoUsd: number;
      /** The request alone costs more than the whole budget: waiting will not help. */
      exceedsLimit: boolean;
    };

export interface BudgetStatus {
  over: boolean;
  /** The exhausted scope, or (when not over) the one closest to its limit. Absent without a budget. */
  scope?: BudgetScope;
  spentNanoUsd: number;
  /** `null` when the tenant has no budget. */
  limitNanoUsd: number | null;
}

export interface BudgetPeriodState {
  limitNanoUsd: number;
  spentNanoUsd: number;
  reservedNanoUsd: number;
  /** limit − spent − reserved, never negative. */
  remainingNanoUsd: number;
  /** When the period ends and the spend starts again from 0, epoch ms. */
  resetsAtMs: number;
}

export interface BudgetRemaining {
  daily?: BudgetPeriodState;
  monthly?: BudgetPeriodState;
}

export interface BudgetGuardOptions {
  /**
   * How long a reservation is held before it is freed anyway, ms: it must outlast the longest
   * batch (provider timeout included), or a slow batch's room is handed out twice. A crashed
   * worker's reservations block their room for at most this long. @defaultValue 600_000 (10 min)
   */
  reservationTtlMs?: number;
  /** TTL of day-spend keys, s. @defaultValue 3 days */
  daySpentTtlSeconds?: number;
  /** TTL of month-spend keys, s. @defaultValue 62 days */
  monthSpentTtlSeconds?: number;
}

interface Limits {
  dailyNanoUsd?: number;
  monthlyNanoUsd?: number;
  onExceeded: 'fail' | 'wait';
}

/**
 * Per-tenant budgets enforced across the whole fleet.
 *
 * Before a batch calls the provider, the worker reserves each request's worst-case cost
 * (`worstCaseCostNanoUsd`). One Lua script checks spent + reserved + want ≤ limit, for the day and
 * for the month, and holds the amount in the tenant's reserved counter, atomically for every
 * worker. After the call, `settle` swaps the reservation for the actual cost (≤ the worst case).
 *
 * Why overspend is bounded: every in-flight request already counts at its worst case, so the sum
 * of settled costs never exceeds the limit as long as actual ≤ reserved for each request. The only
 * way past the limit is a request that costs more than it reserved (an input estimate that was too
 * low, or `maxOutputTokens` not bounding thinking): overspend is then at most that excess, for the
 * requests in flight — one batch per worker — never an unbounded run. A reservation that outlives
 * `reservationTtlMs` (a crashed worker) is freed; if its worker was only slow and settles later,
 * the cost is still charged, so that case can overspend by that batch too.
 *
 * Keys of several tenants are touched by one script: on Redis Cluster the prefix needs a hash tag.
 * Times come from the caller's clock (`now`): fine for day boundaries and minute-long TTLs.
 */
export class BudgetGuard {
  private readonly limits = new Map<string, Limits>();
  private readonly reservationTtlMs: number;
  private readonly daySpentTtlSeconds: number;
  private readonly monthSpentTtlSeconds: number;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    tenants: Record<string, TenantBudgetConfig>,
    options: BudgetGuardOptions = {},
  ) {
    for (const [tenant, budget] of Object.entries(tenants)) {
      const limits: Limits = { onExceeded: budget.onExceeded ?? 'fail' };
      if (budget.dailyUsd !== undefined) limits.dailyNanoUsd = usdToNanoUsd(budget.dailyUsd);
      if (budget.monthlyUsd !== undefined) limits.monthlyNanoUsd = usdToNanoUsd(budget.monthlyUsd);
      if (limits.dailyNanoUsd !== undefined || limits.monthlyNanoUsd !== undefined) this.limits.set(tenant, limits);
    }
    this.reservationTtlMs = options.reservationTtlMs ?? 600_000;
    this.daySpentTtlSeconds = options.daySpentTtlSeconds ?? 3 * 86_400;
    this.monthSpentTtlSeconds = options.monthSpentTtlSeconds ?? 62 * 86_400;
  }

  /** Whether the tenant has a budget, and what to do when it is exhausted. */
  policy(tenant: string): { budgeted: boolean; onExceeded: 'fail' | 'wait' } {
    const limits = this.limits.get(tenant);
    return { budgeted: limits !== undefined, onExceeded: limits?.onExceeded ?? 'fail' };
  }

  /**
   * Reserves each request's worst-case cost (integer nano-USD), in order, in one script call for
   * the whole batch. Tenants without a budget are granted without touching Redis.
   */
  async reserve(requests: { tenant: string; worstCaseNanoUsd: number }[], now: Date = new Date()): Promise<BudgetDecision[]> {
    const day = utcDay(now);
    const month = utcMonth(now);
    const expiresAtMs = now.getTime() + this.reservationTtlMs;
    const decisions: BudgetDecision[] = new Array<BudgetDecision>(requests.length);
    const groups = new Map<string, number>();
    const keys: string[] = [];
    const args: (string | number)[] = [now.getTime(), expiresAtMs, this.reservationTtlMs + 60_000];
    const pending: { index: number; reservation: BudgetReservation; limits: Limits }[] = [];

    requests.forEach(({ tenant, worstCaseNanoUsd }, index) => {
      const amountNanoUsd = nonNegativeInteger('worstCaseNanoUsd', worstCaseNanoUsd);
      const limits = this.limits.get(tenant);
      const reservation: BudgetReservation = {
        tenant,
        id: randomUUID(),
        amountNanoUsd,
        day,
        month,
        expiresAtMs,
        tracked: limits !== undefined,
      };
      if (!limits) {
        decisions[index] = { ok: true, reservation };
        return;
      }
      let group = groups.get(tenant);
      if (group === undefined) {
        group = groups.size + 1;
        groups.set(tenant, group);
        keys.push(...this.tenantKeys(tenant, day, month));
      }
      args.push(group, amountNanoUsd, limits.dailyNanoUsd ?? -1, limits.monthlyNanoUsd ?? -1, member(reservation));
      pending.push({ index, reservation, limits });
    });
    if (pending.length === 0) return decisions;

    const codes = (await runScript(this.redis, RESERVE_SCRIPT, keys, args)) as number[];
    pending.forEach(({ index, reservation, limits }, i) => {
      const code = codes[i];
      if (code === 0) {
        decisions[index] = { ok: true, reservation };
        return;
      }
      const scope: BudgetScope = code === 2 ? 'monthly' : 'daily';
      const limitNanoUsd = (scope === 'daily' ? limits.dailyNanoUsd : limits.monthlyNanoUsd)!;
      decisions[index] = {
        ok: false,
        scope,
        retryAtMs: scope === 'daily' ? nextUtcDayStartMs(now) : nextUtcMonthStartMs(now),
        limitNanoUsd,
        exceedsLimit: reservation.amountNanoUsd > limitNanoUsd,
      };
    });
    return decisions;
  }

  /**
   * Replaces reservations with their actual costs (integer nano-USD; 0 for a response-cache hit or
   * a call that was never made), charged to the reservation's day and month. One round trip.
   */
  async settle(items: { reservation: BudgetReservation; actualNanoUsd: number }[]): Promise<void> {
    const keys: string[] = [];
    const args: (string | number)[] = [this.daySpentTtlSeconds, this.monthSpentTtlSeconds];
    for (const { reservation, actualNanoUsd } of items) {
      if (!reservation.tracked) continue;
      keys.push(...this.tenantKeys(reservation.tenant, reservation.day, reservation.month));
      args.push(member(reservation), reservation.amountNanoUsd, nonNegativeInteger('actualNanoUsd', actualNanoUsd));
    }
    if (keys.length > 0) await runScript(this.redis, SETTLE_SCRIPT, keys, args);
  }

  /** Frees reservations whose requests were not sent (or whose cost is unknown and deemed 0). */
  async release(reservations: BudgetReservation[]): Promise<void> {
    await this.settle(reservations.map((reservation) => ({ reservation, actualNanoUsd: 0 })));
  }

  /**
   * Whether the tenant's settled spend has reached a limit, for the producer's upfront 402. Open
   * reservations do not count (they may settle lower). No Redis call for tenants without a budget.
   */
  async isOverBudget(tenant: string, now: Date = new Date()): Promise<BudgetStatus> {
    const limits = this.limits.get(tenant);
    if (!limits) return { over: false, spentNanoUsd: 0, limitNanoUsd: null };
    const [daySpent, monthSpent] = await this.redis.mget(
      budgetSpentKey(this.prefix, tenant, utcDay(now)),
      budgetSpentKey(this.prefix, tenant, utcMonth(now)),
    );
    const candidates: { scope: BudgetScope; spentNanoUsd: number; limitNanoUsd: number }[] = [];
    if (limits.monthlyNanoUsd !== undefined) {
      candidates.push({ scope: 'monthly', spentNanoUsd: Number(monthSpent ?? 0), limitNanoUsd: limits.monthlyNanoUsd });
    }
    if (limits.dailyNanoUsd !== undefined) {
      candidates.push({ scope: 'daily', spentNanoUsd: Number(daySpent ?? 0), limitNanoUsd: limits.dailyNanoUsd });
    }
    // Report the exhausted scope (monthly first: it lasts longer), else the one with least headroom.
    const exhausted = candidates.find((c) => c.spentNanoUsd >= c.limitNanoUsd);
    const closest = exhausted ?? candidates.reduce((a, b) => (b.limitNanoUsd - b.spentNanoUsd < a.limitNanoUsd - a.spentNanoUsd ? b : a));
    return { over: exhausted !== undefined, ...closest };
  }

  /** Limits, spend and open reservations per scope, for `GET /v1/usage`. One round trip. */
  async remaining(tenant: string, now: Date = new Date()): Promise<BudgetRemaining> {
    const limits = this.limits.get(tenant);
    if (!limits) return {};
    const results = await this.redis
      .pipeline()
      .mget(budgetSpentKey(this.prefix, tenant, utcDay(now)), budgetSpentKey(this.prefix, tenant, utcMonth(now)))
      // Summed from the open reservations, so an expired one not yet cleaned up does not count.
      .zrangebyscore(budgetReservationsKey(this.prefix, tenant), `(${now.getTime()}`, '+inf')
      .exec();
    if (!results) throw new Error('budget read pipeline returned no results');
    for (const [error] of results) if (error) throw error;
    const [daySpent, monthSpent] = results[0]![1] as (string | null)[];
    const members = results[1]![1] as string[];
    const reservedNanoUsd = members.reduce((sum, m) => sum + Number(m.slice(m.lastIndexOf(':') + 1)), 0);
    const state = (limitNanoUsd: number, spent: string | null | undefined, resetsAtMs: number): BudgetPeriodState => {
      const spentNanoUsd = Number(spent ?? 0);
      return {
        limitNanoUsd,
        spentNanoUsd,
        reservedNanoUsd,
        remainingNanoUsd: Math.max(0, limitNanoUsd - spentNanoUsd - reservedNanoUsd),
        resetsAtMs,
      };
    };
    const out: BudgetRemaining = {};
    if (limits.dailyNanoUsd !== undefined) out.daily = state(limits.dailyNanoUsd, daySpent, nextUtcDayStartMs(now));
    if (limits.monthlyNanoUsd !== undefined) out.monthly = state(limits.monthlyNanoUsd, monthSpent, nextUtcMonthStartMs(now));
    return out;
  }

  private tenantKeys(tenant: string, day: string, month: string): string[] {
    return [
      budgetReservedKey(this.prefix, tenant),
      budgetReservationsKey(this.prefix, tenant),
      budgetSpentKey(this.prefix, tenant, day),
      budgetSpentKey(this.prefix, tenant, month),
    ];
  }
}

/** USD → integer nano-USD. Budgets are configured in USD; everything after this is integers. */
export function usdToNanoUsd(usd: number): number {
  return Math.round(usd * 1e9);
}

function member(reservation: BudgetReservation): string {
  return `${reservation.id}:${reservation.amountNanoUsd}`;
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  return value;
}
