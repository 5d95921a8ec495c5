import type { Redis } from 'ioredis';
import { nanoUsdToUsd, type TokenUsage } from '../pricing/cost.js';
import {
  usageDayKey,
  usageHourKey,
  usageIndexKey,
  usageMonthKey,
} from '../redis/keys.js';
import { lastUtcDays, lastUtcHours, utcDay, utcHour, utcMonth } from './periods.js';
import { slotPipeline } from '../redis/cluster.js';

/**
 * Per-tenant usage aggregates in Redis, written by the worker once per batch and read by the
 * producer (`GET /v1/usage`) and the dashboard. Counters only: reads never touch job hashes and
 * never use KEYS/SCAN (small index sets name the tenants and models that have data).
 *
 * Layout (see `redis/keys.ts`): one hash per tenant per UTC day and per UTC month, fields
 * `<model>|<metric>`; one hash per UTC hour for the whole fleet, fields `<tenant>|<model>|<metric>`
 * (jobs, failures, costNanoUsd only: enough for the dashboard's 24-hour chart).
 */

/** Counters kept per tenant, model and period. Costs in integer nano-dollars (1e-9 USD). */
export const USAGE_METRICS = [
  'jobs',
  'failures',
  'inputTokens',
  'outputTokens',
  'thoughtsTokens',
  'cachedTokens',
  'costNanoUsd',
  'cacheHits',
  'savedNanoUsd',
  /** Jobs whose cost is unknown (a model without a price): their cost counts as 0. */
  'unpricedJobs',
  /** Of `costNanoUsd`, what calls served at the Batch API / Flex tier cost (docs/decisions/tiers.md). */
  'batchCostNanoUsd',
  'flexCostNanoUsd',
  /** What those calls would have cost more at standard prices. */
  'batchSavedNanoUsd',
  'flexSavedNanoUsd',
  /**
   * Of `costNanoUsd`, Batch API answers that came back after their job had been served standard
   * (billed twice: the batch request and the standard call).
   */
  'orphanedCostNanoUsd',
] as const;
export type UsageMetric = (typeof USAGE_METRICS)[number];

const HOURLY_METRICS = ['jobs', 'failures', 'costNanoUsd'] as const satisfies readonly UsageMetric[];
type HourlyMetric = (typeof HOURLY_METRICS)[number];

export type UsageCounters = Record<UsageMetric, number>;

/** Counters plus the costs in USD, for display only (sum the nano-dollar fields, never these). */
export interface UsageTotals extends UsageCounters {
  costUsd: number;
  savedUsd: number;
}

/** One finished job (or one attempt of it), as the worker settles it. */
export interface UsageEntry {
  tenant: string;
  /** The model actually called (a fallback may differ from the requested one). */
  model: string;
  provider: string;
  /** `orphaned`: a billed Batch API answer whose job was served otherwise (counts cost, not a job). */
  outcome: 'completed' | 'failed' | 'orphaned';
  /** Billed tokens. Ignored for response-cache hits: nothing was billed. */
  usage?: TokenUsage;
  /** Billed cost, integer nano-USD; `null` when the model has no price. Ignored for cache hits. */
  costNanoUsd: number | null;
  /** Served from the response cache, without a provider call. */
  cached: boolean;
  /** For cache hits: what the call would have cost, integer nano-USD. */
  savedNanoUsd?: number;
  /** The tier that served a call (absent: standard). */
  tier?: 'standard' | 'flex' | 'batch';
  /** For a flex or batch call: standard cost − its cost, integer nano-USD. */
  tierSavedNanoUsd?: number;
}

export interface PeriodUsage extends UsageTotals {
  byModel: Record<string, UsageTotals>;
}

export interface TenantUsage {
  /** UTC day, `YYYY-MM-DD`. */
  day: string;
  /** UTC month, `YYYY-MM`. */
  monthKey: string;
  today: PeriodUsage;
  month: PeriodUsage;
}

export interface FleetPeriodUsage {
  totals: UsageTotals;
  byTenant: Record<string, UsageTotals>;
  byModel: Record<string, UsageTotals>;
}

export interface HourlyUsage {
  /** UTC hour, `YYYY-MM-DDTHH`. */
  hour: string;
  /** Start of the hour, epoch ms. */
  startMs: number;
  jobs: number;
  failures: number;
  costNanoUsd: number;
  costUsd: number;
  /** Cost per tenant, nano-USD. */
  costByTenant: Record<string, number>;
  /** Cost per model, nano-USD. */
  costByModel: Record<string, number>;
}

export interface UsageOverview {
  day: string;
  monthKey: string;
  today: FleetPeriodUsage;
  month: FleetPeriodUsage;
  /** The last `days` UTC days, oldest first; the last one is today. */
  daily: (FleetPeriodUsage & { day: string })[];
  /** The last 24 UTC hours, oldest first; the last one is the current hour. */
  hourly: HourlyUsage[];
}

export interface UsageLedgerOptions {
  /** How long day hashes (and their index sets) are kept, days. @defaultValue 35 */
  dayRetentionDays?: number;
  /** How long month hashes are kept, days. @defaultValue 400 */
  monthRetentionDays?: number;
  /** How long hourly hashes are kept, hours. @defaultValue 48 */
  hourRetentionHours?: number;
}

const HOURS_IN_OVERVIEW = 24;

export class UsageLedger {
  private readonly dayTtlSeconds: number;
  private readonly monthTtlSeconds: number;
  private readonly hourTtlSeconds: number;

  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    options: UsageLedgerOptions = {},
  ) {
    this.dayTtlSeconds = (options.dayRetentionDays ?? 35) * 86_400;
    this.monthTtlSeconds = (options.monthRetentionDays ?? 400) * 86_400;
    this.hourTtlSeconds = (options.hourRetentionHours ?? 48) * 3_600;
  }

  /**
   * Adds one batch of entries in one round trip. Entries of the same tenant and model are summed
   * in memory first, so a batch of 50 jobs of one tenant costs ~20 HINCRBYs, not 1,000. On a single
   * Redis one MULTI writes everything, all or nothing; on a Cluster there is one MULTI per slot
   * touched, sent at once: a tenant's day and month hashes (tagged `{<tenant>}`) are written all or
   * nothing together, the fleet-wide hour hash and index sets in their own. Not idempotent: call it
   * once per settled batch. Throws (before writing anything) on a count that is not a non-negative
   * integer.
   */
  async record(entries: UsageEntry[], now: Date = new Date()): Promise<void> {
    if (entries.length === 0) return;
    const groups = new Map<string, { tenant: string; model: string; counters: UsageCounters }>();
    for (const entry of entries) {
      const id = `${entry.tenant}\n${entry.model}`;
      let group = groups.get(id);
      if (!group) {
        group = { tenant: entry.tenant, model: entry.model, counters: zeroCounters() };
        groups.set(id, group);
      }
      addEntry(group.counters, entry);
    }

    const day = utcDay(now);
    const month = utcMonth(now);
    const hourKey = usageHourKey(this.prefix, utcHour(now));
    const tx = slotPipeline(this.redis, { transaction: true });
    const dayKeys = new Set<string>();
    const monthKeys = new Set<string>();
    for (const { tenant, model, counters } of groups.values()) {
      const dayKey = usageDayKey(this.prefix, day, tenant);
      const monthKey = usageMonthKey(this.prefix, month, tenant);
      dayKeys.add(dayKey);
      monthKeys.add(monthKey);
      for (const metric of USAGE_METRICS) {
        const value = counters[metric];
        if (value === 0) continue;
        tx.hincrby(dayKey, `${model}|${metric}`, value);
        tx.hincrby(monthKey, `${model}|${metric}`, value);
      }
      for (const metric of HOURLY_METRICS) {
        if (counters[metric] !== 0) tx.hincrby(hourKey, `${tenant}|${model}|${metric}`, counters[metric]);
      }
    }
    const tenants = [...new Set([...groups.values()].map((group) => group.tenant))];
    const models = [...new Set([...groups.values()].map((group) => group.model))];
    const dayIndexes = [usageIndexKey(this.prefix, 'day', day, 'tenants'), usageIndexKey(this.prefix, 'day', day, 'models')];
    const monthIndexes = [usageIndexKey(this.prefix, 'month', month, 'tenants'), usageIndexKey(this.prefix, 'month', month, 'models')];
    tx.sadd(dayIndexes[0]!, ...tenants).sadd(dayIndexes[1]!, ...models);
    tx.sadd(monthIndexes[0]!, ...tenants).sadd(monthIndexes[1]!, ...models);
    // Refreshing the TTL on every write is cheap and keeps a key alive exactly as long as it is used.
    for (const key of [...dayKeys, ...dayIndexes]) tx.expire(key, this.dayTtlSeconds);
    for (const key of [...monthKeys, ...monthIndexes]) tx.expire(key, this.monthTtlSeconds);
    tx.expire(hourKey, this.hourTtlSeconds);
    const results = await tx.exec();
    if (!results) throw new Error('usage record transaction was aborted');
    for (const [error] of results) if (error) throw error;
  }

  /** Today's and this month's usage of one tenant (UTC), in total and per model. One round trip. */
  async tenantUsage(tenant: string, now: Date = new Date()): Promise<TenantUsage> {
    const day = utcDay(now);
    const monthKey = utcMonth(now);
    const results = await slotPipeline(this.redis)
      .hgetall(usageDayKey(this.prefix, day, tenant))
      .hgetall(usageMonthKey(this.prefix, monthKey, tenant))
      .exec();
    const [dayHash, monthHash] = hashResults(results, 2);
    return { day, monthKey, today: periodUsage(dayHash!), month: periodUsage(monthHash!) };
  }

  /**
   * Fleet-wide numbers for the dashboard: today and this month by tenant and by model, a per-day
   * series of the last `days` days (default 1, at most the day retention) and a per-hour series of
   * the last 24 hours. Two round trips: the index sets, then the hashes they name.
   */
  async overview(options: { days?: number; now?: Date } = {}): Promise<UsageOverview> {
    const now = options.now ?? new Date();
    const days = lastUtcDays(now, clampDays(options.days ?? 1, this.dayTtlSeconds / 86_400));
    const monthKey = utcMonth(now);
    const hours = lastUtcHours(now, HOURS_IN_OVERVIEW);

    const first = slotPipeline(this.redis);
    for (const day of days) first.smembers(usageIndexKey(this.prefix, 'day', day, 'tenants'));
    first.smembers(usageIndexKey(this.prefix, 'month', monthKey, 'tenants'));
    for (const { hour } of hours) first.hgetall(usageHourKey(this.prefix, hour));
    const firstResults = checkResults(await first.exec(), days.length + 1 + hours.length);
    const dayTenants = firstResults.slice(0, days.length) as string[][];
    const monthTenants = firstResults[days.length] as string[];
    const hourHashes = firstResults.slice(days.length + 1) as Record<string, string>[];

    const second = slotPipeline(this.redis);
    days.forEach((day, i) => dayTenants[i]!.forEach((tenant) => second.hgetall(usageDayKey(this.prefix, day, tenant))));
    for (const tenant of monthTenants) second.hgetall(usageMonthKey(this.prefix, monthKey, tenant));
    const total = dayTenants.reduce((sum, list) => sum + list.length, 0) + monthTenants.length;
    const hashes = total === 0 ? [] : hashResults(await second.exec(), total);

    let next = 0;
    const daily = days.map((day, i) => {
      const perTenant = dayTenants[i]!.map((tenant) => ({ tenant, hash: hashes[next++]! }));
      return { day, ...fleetUsage(perTenant) };
    });
    const month = fleetUsage(monthTenants.map((tenant) => ({ tenant, hash: hashes[next++]! })));
    const today = daily.at(-1)!;
    return {
      day: today.day,
      monthKey,
      today: { totals: today.totals, byTenant: today.byTenant, byModel: today.byModel },
      month,
      daily,
      hourly: hours.map(({ hour, startMs }, i) => hourlyUsage(hour, startMs, hourHashes[i]!)),
    };
  }
}

function zeroCounters(): UsageCounters {
  return Object.fromEntries(USAGE_METRICS.map((metric) => [metric, 0])) as UsageCounters;
}

function addEntry(counters: UsageCounters, entry: UsageEntry): void {
  if (entry.outcome === 'orphaned') counters.orphanedCostNanoUsd += nonNegativeInteger('costNanoUsd', entry.costNanoUsd ?? 0);
  else counters.jobs += 1;
  if (entry.outcome === 'failed') counters.failures += 1;
  if (entry.cached) {
    // A response-cache hit was not billed: only the avoided cost counts.
    counters.cacheHits += 1;
    counters.savedNanoUsd += nonNegativeInteger('savedNanoUsd', entry.savedNanoUsd ?? 0);
    return;
  }
  if (entry.usage) {
    counters.inputTokens += nonNegativeInteger('inputTokens', entry.usage.inputTokens);
    counters.outputTokens += nonNegativeInteger('outputTokens', entry.usage.outputTokens);
    counters.thoughtsTokens += nonNegativeInteger('thoughtsTokens', entry.usage.thoughtsTokens);
    counters.cachedTokens += nonNegativeInteger('cachedTokens', entry.usage.cachedTokens);
  }
  if (entry.costNanoUsd === null) counters.unpricedJobs += 1;
  else counters.costNanoUsd += nonNegativeInteger('costNanoUsd', entry.costNanoUsd);
  if ((entry.tier === 'batch' || entry.tier === 'flex') && entry.costNanoUsd !== null) {
    counters[`${entry.tier}CostNanoUsd`] += entry.costNanoUsd;
    counters[`${entry.tier}SavedNanoUsd`] += nonNegativeInteger('tierSavedNanoUsd', entry.tierSavedNanoUsd ?? 0);
  }
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`usage ${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

function withUsd(counters: UsageCounters): UsageTotals {
  return { ...counters, costUsd: nanoUsdToUsd(counters.costNanoUsd), savedUsd: nanoUsdToUsd(counters.savedNanoUsd) };
}

function isMetric(value: string): value is UsageMetric {
  return (USAGE_METRICS as readonly string[]).includes(value);
}

/** Parses a tenant's `<model>|<metric>` hash into per-model counters. */
function countersByModel(hash: Record<string, string>): Map<string, UsageCounters> {
  const byModel = new Map<string, UsageCounters>();
  for (const [field, value] of Object.entries(hash)) {
    const bar = field.lastIndexOf('|');
    const model = field.slice(0, bar);
    const metric = field.slice(bar + 1);
    if (bar <= 0 || !isMetric(metric)) continue;
    let counters = byModel.get(model);
    if (!counters) byModel.set(model, (counters = zeroCounters()));
    counters[metric] += Number(value);
  }
  return byModel;
}

function addInto(target: UsageCounters, source: UsageCounters): void {
  for (const metric of USAGE_METRICS) target[metric] += source[metric];
}

function periodUsage(hash: Record<string, string>): PeriodUsage {
  const total = zeroCounters();
  const byModel: Record<string, UsageTotals> = {};
  for (const [model, counters] of countersByModel(hash)) {
    addInto(total, counters);
    byModel[model] = withUsd(counters);
  }
  return { ...withUsd(total), byModel };
}

function fleetUsage(perTenant: { tenant: string; hash: Record<string, string> }[]): FleetPeriodUsage {
  const total = zeroCounters();
  const byTenant: Record<string, UsageTotals> = {};
  const byModel = new Map<string, UsageCounters>();
  for (const { tenant, hash } of perTenant) {
    const tenantTotal = zeroCounters();
    for (const [model, counters] of countersByModel(hash)) {
      addInto(tenantTotal, counters);
      let modelTotal = byModel.get(model);
      if (!modelTotal) byModel.set(model, (modelTotal = zeroCounters()));
      addInto(modelTotal, counters);
    }
    addInto(total, tenantTotal);
    byTenant[tenant] = withUsd(tenantTotal);
  }
  return {
    totals: withUsd(total),
    byTenant,
    byModel: Object.fromEntries([...byModel].map(([model, counters]) => [model, withUsd(counters)])),
  };
}

function hourlyUsage(hour: string, startMs: number, hash: Record<string, string>): HourlyUsage {
  const out: HourlyUsage = { hour, startMs, jobs: 0, failures: 0, costNanoUsd: 0, costUsd: 0, costByTenant: {}, costByModel: {} };
  for (const [field, raw] of Object.entries(hash)) {
    const firstBar = field.indexOf('|');
    const lastBar = field.lastIndexOf('|');
    if (firstBar <= 0 || lastBar <= firstBar) continue;
    const tenant = field.slice(0, firstBar);
    const model = field.slice(firstBar + 1, lastBar);
    const metric = field.slice(lastBar + 1) as HourlyMetric;
    const value = Number(raw);
    if (metric === 'jobs') out.jobs += value;
    else if (metric === 'failures') out.failures += value;
    else if (metric === 'costNanoUsd') {
      out.costNanoUsd += value;
      out.costByTenant[tenant] = (out.costByTenant[tenant] ?? 0) + value;
      out.costByModel[model] = (out.costByModel[model] ?? 0) + value;
    }
  }
  out.costUsd = nanoUsdToUsd(out.costNanoUsd);
  return out;
}

function clampDays(days: number, retentionDays: number): number {
  if (!Number.isInteger(days) || days < 1) throw new RangeError(`overview days must be a positive integer, got ${days}`);
  return Math.min(days, Math.max(1, Math.floor(retentionDays)));
}

type PipelineResults = [Error | null, unknown][] | null;

function checkResults(results: PipelineResults, expected: number): unknown[] {
  if (!results || results.length !== expected) throw new Error('usage read pipeline returned no results');
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}

function hashResults(results: PipelineResults, expected: number): Record<string, string>[] {
  return checkResults(results, expected) as Record<string, string>[];
}
