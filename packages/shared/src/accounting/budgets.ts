import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { budgetReservationsKey, budgetReservedKey, budgetSpentKey } from '../redis/keys.js';
import { RENEW_SCRIPT, RESERVE_SCRIPT, SETTLE_SCRIPT, SWEEP_SCRIPT, runScript } from './budget-scripts.js';
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
  /** Reserved amount (the request's estimated cost), integer nano-USD. */
  amountNanoUsd: number;
  /** UTC day (`YYYY-MM-DD`) and month (`YYYY-MM`) the actual cost is charged to. */
  day: string;
  month: string;
  /** After this (epoch ms), unless renewed, the reservation is charged at its amount and freed. */
  expiresAtMs: number;
  tracked: boolean;
}

export type BudgetDecision =
  | { ok: true; reservation: BudgetReservation }
  | {
      ok: false;
      scope: BudgetScope;
      /**
       * `spent`: spent + this request > limit, so no settle can make room before the period ends.
       * `busy`: it fits the unspent budget, but not next to the reservations in flight; room comes
       * back as they settle (seconds), so wait briefly, do not fail.
       */
      reason: 'spent' | 'busy';
      /** Start of the next UTC day (daily) or month (monthly), epoch ms. */
      retryAtMs: number;
      limitNanoUsd: number;
      /** The scope's settled spend when refused, nano-USD. */
      spentNanoUsd: number;
      /** The tenant's open reservations when refused, nano-USD. */
      reservedNanoUsd: number;
      /** What this request asked for, nano-USD. */
      wantNanoUsd: number;
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
   * How long a reservation lives unless its holder renews it (`renew`), ms. The worker passes its
   * job lock duration and renews at half of it, like BullMQ renews job locks: a killed worker's
   * reservations lapse (and are charged at their amount) together with its job locks.
   * @defaultValue 30_000 (BullMQ's default lockDuration)
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
 * Before a batch calls the provider, the worker reserves each request's estimated cost (its
 * calibrated input estimate plus the fleet's high quantile of output + thinking tokens for such
 * requests, see BatchAccounting). One Lua script checks spent + reserved + want ≤ limit, for the
 * day and for the month, and holds the amount in the tenant's reserved counter, atomically for
 * every worker. After the call, `settle` swaps the reservation for the actual cost.
 *
 * A refusal says why (`reason`): `spent` when spent + want > limit (nothing in flight can make
 * room: fail, or wait for the next period), `busy` when only the in-flight reservations are in the
 * way (wait briefly: they settle, usually below their estimate). So a budget is usable to its end.
 *
 * Overspend bound: a request reserves an estimate, not its worst case, so settled spend can pass
 * the limit by at most Σ (actual − reserved) over the requests in flight when the limit was
 * reached, each less than that call's own cost (at most its output bound − its estimate, where the
 * provider keeps to the bound): bounded by what is in flight (concurrency per worker × workers),
 * never an unbounded run, because the next reservation sees the settled truth.
 *
 * Reservation lifetime follows the job lock: a reservation expires `reservationTtlMs` after it
 * was made or last renewed (`renew`, which the holder's batch calls every half TTL). An expired
 * reservation — its worker was killed — is charged at its amount (the call may have reached the
 * provider, which bills it) and freed, by the next reserve or `remaining` read. If its worker was
 * only slow and settles later, only the actual cost above that amount is added.
 *
 * Each script call covers one tenant, whose keys share its hash tag (`{<tenant>}`): a batch of
 * several tenants makes one call per tenant, sent together, so it works on Redis Cluster.
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
    this.reservationTtlMs = options.reservationTtlMs ?? 30_000;
    this.daySpentTtlSeconds = options.daySpentTtlSeconds ?? 3 * 86_400;
    this.monthSpentTtlSeconds = options.monthSpentTtlSeconds ?? 62 * 86_400;
  }

  /** Whether the tenant has a budget, and what to do when it is exhausted. */
  policy(tenant: string): { budgeted: boolean; onExceeded: 'fail' | 'wait' } {
    const limits = this.limits.get(tenant);
    return { budgeted: limits !== undefined, onExceeded: limits?.onExceeded ?? 'fail' };
  }

  /** How long a reservation lives without renewal, ms (renew at half of it). */
  get ttlMs(): number {
    return this.reservationTtlMs;
  }

  /**
   * Reserves each request's estimated cost (nano-USD), in order: one script call per tenant of the
   * batch (a tenant's keys share its hash tag, so each call stays in one Redis Cluster slot), all
   * sent at once: one round trip. Tenants without a budget are granted without touching Redis.
   * Never throws for one request's amount: it is saturated to an integer in [0, 2^53) (a
   * non-number counts as the maximum, so a budgeted tenant is refused and an unbudgeted one is
   * unaffected). `holdMs`: how long the reservations live unrenewed, when not `reservationTtlMs`
   * (a Batch API job holds its reservation until its answer or its fallback time, hours away).
   */
  async reserve(requests: { tenant: string; amountNanoUsd: number }[], now: Date = new Date(), holdMs: number = this.reservationTtlMs): Promise<BudgetDecision[]> {
    const day = utcDay(now);
    const month = utcMonth(now);
    const expiresAtMs = now.getTime() + holdMs;
    const decisions: BudgetDecision[] = new Array<BudgetDecision>(requests.length);
    const common: (string | number)[] = [now.getTime(), expiresAtMs, Math.max(this.keyTtlMs(), holdMs + 60_000), this.daySpentTtlSeconds, this.monthSpentTtlSeconds];
    const byTenant = new Map<string, { args: (string | number)[]; pending: { index: number; reservation: BudgetReservation; limits: Limits }[] }>();

    requests.forEach(({ tenant, amountNanoUsd: asked }, index) => {
      const amountNanoUsd = saturatedNanoUsd(asked, Number.MAX_SAFE_INTEGER);
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
      let group = byTenant.get(tenant);
      if (!group) byTenant.set(tenant, (group = { args: [...common], pending: [] }));
      // Group 1: each call carries one tenant's keys.
      group.args.push(1, amountNanoUsd, limits.dailyNanoUsd ?? -1, limits.monthlyNanoUsd ?? -1, member(reservation));
      group.pending.push({ index, reservation, limits });
    });
    if (byTenant.size === 0) return decisions;

    const calls = [...byTenant].map(async ([tenant, { args, pending }]) => {
      const out = (await runScript(this.redis, RESERVE_SCRIPT, this.tenantKeys(tenant, day, month), args)) as number[];
      return pending.map((item, i) => ({ ...item, out: [Number(out[3 * i]), Number(out[3 * i + 1]), Number(out[3 * i + 2])] as const }));
    });
    for (const { index, reservation, limits, out } of (await Promise.all(calls)).flat()) {
      const [code, spentNanoUsd, reservedNanoUsd] = out;
      if (code === 0) {
        decisions[index] = { ok: true, reservation };
        continue;
      }
      const scope: BudgetScope = code === 2 || code === 4 ? 'monthly' : 'daily';
      const limitNanoUsd = (scope === 'daily' ? limits.dailyNanoUsd : limits.monthlyNanoUsd)!;
      decisions[index] = {
        ok: false,
        scope,
        reason: code === 1 || code === 2 ? 'spent' : 'busy',
        retryAtMs: scope === 'daily' ? nextUtcDayStartMs(now) : nextUtcMonthStartMs(now),
        limitNanoUsd,
        spentNanoUsd,
        reservedNanoUsd,
        wantNanoUsd: reservation.amountNanoUsd,
        exceedsLimit: reservation.amountNanoUsd > limitNanoUsd,
      };
    }
    return decisions;
  }

  /**
   * Replaces reservations with their actual costs (integer nano-USD; 0 for a response-cache hit or
   * a call that was never made), charged to the reservation's day and month. One script call per
   * tenant, sent at once: one round trip.
   */
  async settle(items: { reservation: BudgetReservation; actualNanoUsd: number }[]): Promise<void> {
    const byTenant = new Map<string, { keys: string[]; args: (string | number)[] }>();
    for (const { reservation, actualNanoUsd } of items) {
      if (!reservation.tracked) continue;
      let call = byTenant.get(reservation.tenant);
      if (!call) byTenant.set(reservation.tenant, (call = { keys: [], args: [this.daySpentTtlSeconds, this.monthSpentTtlSeconds] }));
      call.keys.push(...this.tenantKeys(reservation.tenant, reservation.day, reservation.month));
      // Saturated, never thrown: one odd figure must not lose the whole batch's settle.
      call.args.push(member(reservation), reservation.amountNanoUsd, saturatedNanoUsd(actualNanoUsd, 0));
    }
    await Promise.all([...byTenant.values()].map(({ keys, args }) => runScript(this.redis, SETTLE_SCRIPT, keys, args)));
  }

  /**
   * Pushes the expiry of reservations still in flight `reservationTtlMs` out from `now`: their
   * holder is alive. One round trip. Returns how many were still open (a swept one stays charged).
   */
  async renew(reservations: BudgetReservation[], now: Date = new Date()): Promise<number> {
    const byTenant = new Map<string, { keys: string[]; args: (string | number)[] }>();
    for (const reservation of reservations) {
      if (!reservation.tracked) continue;
      let call = byTenant.get(reservation.tenant);
      if (!call) byTenant.set(reservation.tenant, (call = { keys: [], args: [now.getTime() + this.reservationTtlMs, this.keyTtlMs()] }));
      call.keys.push(budgetReservedKey(this.prefix, reservation.tenant), budgetReservationsKey(this.prefix, reservation.tenant));
      call.args.push(member(reservation));
    }
    const renewed = await Promise.all([...byTenant.values()].map(({ keys, args }) => runScript(this.redis, RENEW_SCRIPT, keys, args)));
    return renewed.reduce<number>((sum, count) => sum + Number(count), 0);
  }

  /**
   * Charges costs that had no reservation (calls the Batch API answered: they were sent hours
   * before, in a batch) to their tenants' budgets, each to today and this month. One round trip.
   */
  async charge(items: { tenant: string; nanoUsd: number }[], now: Date = new Date()): Promise<void> {
    const day = utcDay(now);
    const month = utcMonth(now);
    // A reservation that was never made: settling it adds exactly the actual cost.
    await this.settle(
      items
        .filter(({ tenant, nanoUsd }) => this.limits.has(tenant) && nanoUsd > 0)
        .map(({ tenant, nanoUsd }) => ({
          reservation: { tenant, id: randomUUID(), amountNanoUsd: 0, day, month, expiresAtMs: now.getTime(), tracked: true },
          actualNanoUsd: nanoUsd,
        })),
    );
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

  /**
   * Limits, spend and open reservations per scope, for `GET /v1/usage`. One script call, which
   * first sweeps expired reservations (a killed worker's: charged at their amount), so the figures
   * are true even while none of the tenant's jobs runs.
   */
  async remaining(tenant: string, now: Date = new Date()): Promise<BudgetRemaining> {
    const limits = this.limits.get(tenant);
    if (!limits) return {};
    const [daySpent, monthSpent, reservedNanoUsd] = ((await runScript(
      this.redis,
      SWEEP_SCRIPT,
      this.tenantKeys(tenant, utcDay(now), utcMonth(now)),
      [now.getTime(), this.daySpentTtlSeconds, this.monthSpentTtlSeconds],
    )) as number[]).map(Number) as [number, number, number];
    const state = (limitNanoUsd: number, spent: number, resetsAtMs: number): BudgetPeriodState => {
      const spentNanoUsd = spent;
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

  /**
   * TTL of the reserved counter and reservation set, ms: long enough that an expired reservation
   * is still there to be swept (charged) after a fleet-wide outage, short enough to vanish unused.
   */
  private keyTtlMs(): number {
    return Math.max(this.reservationTtlMs + 60_000, this.daySpentTtlSeconds * 1000);
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

/**
 * An amount as an integer nano-USD in [0, 2^53): rounded up, negatives 0, too large (or infinite)
 * the maximum; a non-number becomes `ifNaN`. Budget math saturates instead of throwing, so one
 * request's odd figure fails (or is refused) alone, never the batch it travels in.
 */
export function saturatedNanoUsd(value: number, ifNaN: number): number {
  if (Number.isNaN(value)) return ifNaN;
  if (value <= 0) return 0;
  return Math.min(Number.MAX_SAFE_INTEGER, Math.ceil(value));
}
