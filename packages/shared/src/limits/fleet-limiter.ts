import { randomBytes } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import type { ReportedQuota } from '../errors.js';
import { limiterKey } from '../redis/keys.js';
import { OBSERVE_LUA } from './lua/observe.js';
import { PAUSE_LUA } from './lua/pause.js';
import { RELEASE_LUA } from './lua/release.js';
import { RESERVE_LUA } from './lua/reserve.js';
import { SETTLE_LUA } from './lua/settle.js';
import { STATE_LUA } from './lua/state.js';
import type {
  FleetLimiterOptions,
  LimiterState,
  LimitKey,
  ObservedRateLimit,
  PauseReason,
  RateLimits,
  Reservation,
  ReserveResult,
  SettleItem,
} from './types.js';
import { slotPipeline } from '../redis/cluster.js';

type Arg = string | number;
type Run<R> = (...args: Arg[]) => R;

/** The scripts, registered on the connection with `defineCommand` (EVALSHA, EVAL on NOSCRIPT). */
const SCRIPTS = {
  pqLimitReserve: { numberOfKeys: 7, lua: RESERVE_LUA },
  pqLimitSettle: { numberOfKeys: 5, lua: SETTLE_LUA },
  pqLimitRelease: { numberOfKeys: 4, lua: RELEASE_LUA },
  pqLimitPause: { numberOfKeys: 1, lua: PAUSE_LUA },
  pqLimitObserve: { numberOfKeys: 6, lua: OBSERVE_LUA },
  pqLimitState: { numberOfKeys: 6, lua: STATE_LUA },
} as const;

type ScriptName = keyof typeof SCRIPTS;
type LimiterRedis = Redis & { [K in ScriptName]: Run<Promise<unknown>> };
type LimiterPipeline = ChainableCommander & { [K in 'pqLimitSettle' | 'pqLimitRelease']: Run<ChainableCommander> };

/**
 * Fleet-wide rate limiter for provider quotas (requests and input tokens per rolling window),
 * shared by every worker replica through Redis. A sliding log: each granted request is a member of
 * a sorted set scored by Redis server time, with its token estimate in a hash and a running total,
 * so a reservation never sums the window. Every operation is one Lua script (one round trip);
 * settle and release pipeline one script per scope. See docs/decisions/limiter.md.
 *
 * Uses a standalone `Redis` connection (a pipeline over several scopes would cross slots on
 * Cluster; the keys of one scope do share a hash tag).
 */
export class FleetLimiter {
  /** Length of the rolling window, ms. */
  readonly windowMs: number;
  private readonly redis: LimiterRedis;
  private readonly prefix: string;
  private readonly learnedTtlMs: number;
  private readonly learnFactor: number;
  private readonly minLearnedTokens: number;
  private readonly reportedTtlMs: number;
  private readonly slowStartRequests: number;
  private readonly slowStartGrowth: number;
  /**
   * A lower bound of (local wall clock − Redis server time), the largest seen over the last minute:
   * the server reads its clock after the request was sent, so (local time at send − server time)
   * never exceeds the real offset, however late this event loop reads the reply. Dating a call
   * with it errs late, never early: the window then frees its room after the provider's does.
   */
  private clockOffset = { ms: Number.NEGATIVE_INFINITY, since: 0 };

  constructor(redis: Redis, prefix: string, options: FleetLimiterOptions = {}) {
    this.windowMs = positiveInteger(options.windowMs ?? 60_000, 'windowMs');
    this.learnedTtlMs = positiveInteger(options.learnedTtlMs ?? 600_000, 'learnedTtlMs');
    this.learnFactor = options.learnFactor ?? 0.9;
    if (!(this.learnFactor > 0 && this.learnFactor <= 1)) throw new RangeError('learnFactor must be in (0, 1]');
    this.minLearnedTokens = positiveInteger(options.minLearnedTokens ?? 1_000, 'minLearnedTokens');
    this.reportedTtlMs = positiveInteger(options.reportedTtlMs ?? 3_600_000, 'reportedTtlMs');
    this.slowStartRequests = options.slowStartRequests ?? 0;
    if (!Number.isInteger(this.slowStartRequests) || this.slowStartRequests < 0) throw new RangeError('slowStartRequests must be an integer ≥ 0');
    this.slowStartGrowth = options.slowStartGrowth ?? 1;
    if (!(this.slowStartGrowth >= 0)) throw new RangeError('slowStartGrowth must be ≥ 0');
    this.prefix = prefix;
    // Redefining on a shared connection is harmless (same name, same script).
    for (const [name, script] of Object.entries(SCRIPTS)) redis.defineCommand(name, script);
    this.redis = redis as LimiterRedis;
  }

  /**
   * Reserves room for a batch of requests in one round trip: grants the longest prefix that fits
   * (count + 1 ≤ rpm and tokens + estimate ≤ tpm, against min(configured, learned) limits) and
   * records it. When some do not fit, `waitMs` says when the next one could (or when a fleet pause
   * ends; then nothing is granted). A single request larger than the whole token limit is granted
   * when the window is empty — otherwise it could never run — and then fills the window.
   *
   * @param limits configured limits per window, 0 = unlimited
   * @param estimatedTokens input-token estimate of each request, in order (rounded up)
   */
  async reserve(key: LimitKey, limits: RateLimits, estimatedTokens: number[]): Promise<ReserveResult> {
    const estimates = estimatedTokens.map((tokens) => tokenCount(tokens, 'estimatedTokens'));
    const idPrefix = randomBytes(9).toString('base64url');
    const sentLocal = Date.now();
    const [granted, waitMs, now, pausedUntil, pauseReason, probe] = (await this.redis.pqLimitReserve(
      ...this.keys(key, 'log', 'est', 'total', 'pause', 'learned', 'probe', 'open'),
      this.windowMs,
      limit(limits.rpm, 'rpm'),
      limit(limits.tpm, 'tpm'),
      idPrefix,
      this.slowStartRequests,
      this.reportedTtlMs,
      ...estimates,
    )) as [number, number, number, number, string, number];
    const reservations = estimates
      .slice(0, granted)
      .map((tokens, i): Reservation => ({ key: { ...key }, id: `${idPrefix}:${i}`, estimatedTokens: tokens, reservedAt: now }));
    this.observeServerTime(now, sentLocal);
    const result: ReserveResult = { granted: reservations, waitMs, now };
    if (pausedUntil >= 0) {
      result.pausedUntil = pausedUntil;
      result.pauseReason = pauseReason === 'daily-quota' ? 'daily-quota' : 'rate-limited';
    }
    if (probe >= 0) result.slowStart = probe;
    return result;
  }

  /**
   * A local wall-clock time (`Date.now()`) on the Redis clock the window uses, for `sentAt`. Never
   * earlier than the truth, and later by at most the fastest round trip seen. (Estimated from when
   * replies were read instead, a reply read late by a busy event loop, as at startup, dated every
   * call after it that much too early: the window freed room before the provider did, and the
   * first window's rollover drew 429s.)
   */
  toServerTime(localMs: number): number {
    return Number.isFinite(this.clockOffset.ms) ? localMs - this.clockOffset.ms : localMs;
  }

  private observeServerTime(serverNow: number, sentLocal: number): void {
    const offset = sentLocal - serverNow;
    // A fresh bound each minute follows a clock that was stepped.
    if (offset > this.clockOffset.ms || sentLocal - this.clockOffset.since > 60_000) this.clockOffset = { ms: offset, since: sentLocal };
  }

  /**
   * Replaces each reservation's estimate by the input tokens the provider counted
   * (usageMetadata.promptTokenCount), and moves it to when its call was sent (`sentAt`, when given):
   * the provider counts a call when it arrives, which may be well after the reservation in a busy
   * worker. One round trip; a reservation that already left the window (or was released) is skipped.
   */
  async settle(items: SettleItem[]): Promise<void> {
    const groups = this.groupByScope(items.map((item) => ({
      key: item.reservation.key,
      args: [item.reservation.id, tokenCount(item.actualTokens, 'actualTokens'), item.sentAt !== undefined ? Math.max(item.reservation.reservedAt, Math.round(item.sentAt)) : 0],
    })));
    await this.runPerScope(groups, (pipeline, key, args) =>
      pipeline.pqLimitSettle(...this.keys(key, 'log', 'est', 'total', 'probe', 'open'), this.windowMs, this.slowStartGrowth, ...args),
    );
  }

  /** Gives back reservations whose call was never made (shutdown, cancelled job). One round trip. */
  async release(reservations: Reservation[]): Promise<void> {
    const groups = this.groupByScope(reservations.map((r) => ({ key: r.key, args: [r.id] })));
    await this.runPerScope(groups, (pipeline, key, args) => pipeline.pqLimitRelease(...this.keys(key, 'log', 'est', 'total', 'open'), this.windowMs, ...args));
  }

  /**
   * Pauses the scope fleet-wide for `ms` (a 429's RetryInfo delay): reserve() grants nothing and
   * reports the remaining pause and its reason until it ends. Never shortens a longer pause already
   * in force. `daily-quota`: the requests-per-day quota is spent until its reset (the worker then
   * sends the model's jobs to the next link of their chain instead of waiting).
   */
  async pause(key: LimitKey, ms: number, reason: PauseReason = 'rate-limited'): Promise<void> {
    const length = Math.ceil(ms);
    if (!(length > 0)) return;
    await this.redis.pqLimitPause(limiterKey(this.prefix, key, 'pause'), length, reason);
  }

  /**
   * Call when the provider answered 429 although the window was within the limits: the real limit
   * is lower than configured. Learns, for the dimension closest to its limit (usage / limit;
   * requests when neither is limited), `floor(usage × learnFactor)` — at least 1 request or
   * `minLearnedTokens`, never above the current effective limit. reserve() then uses
   * min(configured, learned) until `learnedTtlMs` after the last such 429.
   *
   * Learning from usage rather than multiplying the current limit means a burst of 429s from many
   * replicas at once lowers the limit once, not once per replica.
   *
   * When the 429 reported the limit it hit (`reported`, from google.rpc.QuotaFailure quotaValue,
   * per window), learns exactly that for its dimension instead — at least 1 request or
   * `minLearnedTokens`, never above the configured limit (so it can replace a lower usage-based
   * guess) — with the same TTL. Usage is then ignored: a 429 at a window rollover, when usage is
   * low, no longer collapses the limit.
   */
  async observeRateLimit(key: LimitKey, limits: RateLimits, reported?: ReportedQuota): Promise<ObservedRateLimit> {
    const reportedLimit = reported && Number.isFinite(reported.limit) && reported.limit > 0 ? Math.floor(reported.limit) : 0;
    const reportedDimension = reportedLimit > 0 && (reported?.dimension === 'rpm' || reported?.dimension === 'tpm') ? reported.dimension : '';
    const [dimension, learned, expiresAt] = (await this.redis.pqLimitObserve(
      ...this.keys(key, 'log', 'est', 'total', 'learned', 'probe', 'open'),
      this.windowMs,
      limit(limits.rpm, 'rpm'),
      limit(limits.tpm, 'tpm'),
      this.learnFactor,
      this.learnedTtlMs,
      this.minLearnedTokens,
      reportedDimension,
      reportedLimit,
      this.reportedTtlMs,
      this.slowStartRequests,
    )) as [number, number, number];
    return { dimension: dimension === 0 ? 'rpm' : 'tpm', limit: learned, expiresAt };
  }

  /** Read-only view of the scope's rolling window, effective limits and pause (dashboard, metrics). */
  async state(key: LimitKey, limits: RateLimits): Promise<LimiterState> {
    const [requests, tokens, rpmLimit, tpmLimit, learnedRpm, learnedTpm, learnedTtl, pausedUntil, now, pauseReason, probe] =
      (await this.redis.pqLimitState(
        ...this.keys(key, 'log', 'est', 'total', 'pause', 'learned', 'probe'),
        this.windowMs,
        limit(limits.rpm, 'rpm'),
        limit(limits.tpm, 'tpm'),
      )) as [number, number, number, number, number, number, number, number, number, string, number];
    const state: LimiterState = { requests, tokens, rpmLimit, tpmLimit, pausedUntil: pausedUntil >= 0 ? pausedUntil : null, now };
    if (pausedUntil >= 0) state.pauseReason = pauseReason === 'daily-quota' ? 'daily-quota' : 'rate-limited';
    // What the workers' slow start wrote (a reader such as the dashboard has no options of its own).
    if (probe >= 0 && (rpmLimit === 0 || tpmLimit === 0)) state.slowStart = probe;
    if (learnedRpm >= 0 || learnedTpm >= 0) {
      state.learned = { expiresAt: now + Math.max(0, learnedTtl) };
      if (learnedRpm >= 0) state.learned.rpm = learnedRpm;
      if (learnedTpm >= 0) state.learned.tpm = learnedTpm;
    }
    return state;
  }

  private keys(key: LimitKey, ...parts: Parameters<typeof limiterKey>[2][]): string[] {
    return parts.map((part) => limiterKey(this.prefix, key, part));
  }

  private groupByScope(items: { key: LimitKey; args: Arg[] }[]): Map<string, { key: LimitKey; args: Arg[] }> {
    const groups = new Map<string, { key: LimitKey; args: Arg[] }>();
    for (const item of items) {
      const tag = limiterKey(this.prefix, item.key, 'log');
      const group = groups.get(tag);
      if (group) group.args.push(...item.args);
      else groups.set(tag, { key: item.key, args: [...item.args] });
    }
    return groups;
  }

  private async runPerScope(
    groups: Map<string, { key: LimitKey; args: Arg[] }>,
    add: (pipeline: LimiterPipeline, key: LimitKey, args: Arg[]) => void,
  ): Promise<void> {
    if (groups.size === 0) return;
    const pipeline = slotPipeline(this.redis) as LimiterPipeline;
    for (const { key, args } of groups.values()) add(pipeline, key, args);
    const results = await pipeline.exec();
    for (const [error] of results ?? []) if (error) throw error;
  }
}

function positiveInteger(value: number, name: string): number {
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer (got ${value})`);
  return value;
}

/** A limit per window: a non-negative integer, 0 = unlimited (a fraction never rounds to unlimited). */
function limit(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be ≥ 0 (0 = unlimited), got ${value}`);
  return value === 0 ? 0 : Math.max(1, Math.floor(value));
}

/** A token count: non-negative, rounded up (an estimate errs high). */
function tokenCount(value: number, name: string): number {
  if (!Number.isFinite(value) || value < 0) throw new RangeError(`${name} must be a finite number ≥ 0, got ${value}`);
  return Math.ceil(value);
}
