import type { Redis } from 'ioredis';
import {
  isProviderError,
  promptFeatures,
  type BudgetReservation,
  type EstimateSample,
  type Config,
  type FleetLimiter,
  type Logger,
  type PauseReason,
  type PromptFeatures,
  type PromptJobResult,
  type ReportedQuota,
  type Reservation,
  type SettleItem,
  type TokenEstimator,
} from '@prompt-queue/shared';
import type { Outcome } from '../batching/batcher.js';
import type { WorkerMetrics } from '../metrics.js';
import type { Link, ProviderChains } from '../providers/chain.js';
import type { EmbedItem, GenerateRequest } from '../providers/provider.js';
import { promptSha256, type BatchAccounting } from './accounting.js';
import type { JobEntry, JobOutcomes, WaitReason } from './outcomes.js';
import { isCallNotSent } from '../providers/call-signal.js';
import { buildEmbedItem, buildRequest, estimateInputTokens } from './request.js';

/**
 * Serves one micro-batch (jobs of one kind and model) through the fallback chain:
 *
 *   prepare (blobs) → admit: cache.lookup (one MGET) → dedupe → budget.reserve (one script call)
 *   → for each link: [breaker open, or daily quota spent? skip] → calibrated input estimates
 *   → limiter.reserve (one round trip for the batch) → calls
 *   through the link's breaker → [429: observe + fleet pause] → fan the leaders' answers out to
 *   their followers → settle, one round trip: limiter settle/release + token calibration · budget settle · cache store
 *   + fairness (one pipeline) · usage record (one MULTI) · audit lines → one outcome per job
 *
 * Redis bookkeeping is a constant number of round trips per batch, never one per job: one lookup,
 * one budget reserve, per link tried one limiter reserve (and on 429s one observe and one pause),
 * then the settle step. See accounting.ts for the order of cache and budget, and dedupe.
 */

/** When a breaker is half-open (its trial call in flight), jobs for it look again after this, ms. */
const HALF_OPEN_RECHECK_MS = 1_000;
/** Shortest wait before a job that did not get quota looks again, ms. */
const MIN_WAIT_MS = 25;

export interface BatchContext {
  kind: 'generate' | 'embed';
  model: string;
  jobs: readonly BatchJob[];
  /** Response cache digests this batch claimed as in flight; released when it settles. */
  claims: string[];
}

/** A job in flight through one batch. */
export interface BatchJob {
  readonly entry: JobEntry;
  /** What its input-token estimate is computed from (generate jobs). */
  readonly features: PromptFeatures;
  /** Its input-token estimate for the budget: the largest calibrated reservation over its chain's links. */
  readonly estimate: number;
  request?: GenerateRequest;
  embedItem?: EmbedItem;
  /** Its fate once decided; jobs without one are still travelling down the chain. */
  final?: Final;
  /** sha256 of the canonical request (audit lines). */
  readonly promptSha256: string;
  /** Response cache keys, one per chain link in order; empty: cache off, or `cache: false`. */
  cacheKeys: string[];
  /** An identical job of this batch whose call answers this one too (dedupe). */
  leader?: BatchJob;
  /** Its budget reservation (worst case), settled with the actual cost after the call. */
  budget?: BudgetReservation;
}

export type Final =
  /** `result.cached`: from the cache or a leader, `savedNanoUsd` = what the call cost. */
  | { kind: 'served'; result: PromptJobResult; link?: string; savedNanoUsd?: number }
  | { kind: 'error'; error: unknown; latencyMs: number; link?: string }
  | { kind: 'wait'; untilMs: number; reason: WaitReason; fields?: Record<string, unknown> };

export interface BatchServiceDeps {
  config: Config;
  logger: Logger;
  /** Reads image blobs. */
  redis: Redis;
  limiter: FleetLimiter;
  /** The fleet's calibrated input-token estimates, one calibration per link scope. */
  estimator: TokenEstimator;
  chains: ProviderChains;
  outcomes: JobOutcomes;
  /** Cache, budgets, usage, audit and fairness: admitted before the calls, settled after. */
  accounting: BatchAccounting;
  metrics?: WorkerMetrics;
  /** Counts served calls per link (for /status). */
  onServed?(link: Link, jobs: number): void;
}

/**
 * Limiter reservations to settle (call made, usage known) or release (call never made, or refused),
 * and what each served call teaches the token calibration.
 */
interface Ledger {
  settle: SettleItem[];
  release: Reservation[];
  samples: EstimateSample[];
}

export type BatchService = (entries: JobEntry[]) => Promise<Outcome<PromptJobResult>[]>;

export function createBatchService(deps: BatchServiceDeps): BatchService {
  const { config, logger, limiter, estimator, outcomes, accounting, metrics } = deps;

  async function prepare(batch: BatchContext): Promise<void> {
    await Promise.all(
      batch.jobs.map(async (job) => {
        try {
          if (batch.kind === 'embed') job.embedItem = buildEmbedItem(job.entry.data);
          else job.request = await buildRequest(deps.redis, config.redis.prefix, job.entry.data);
        } catch (error) {
          job.final = { kind: 'error', error, latencyMs: 0 };
        }
      }),
    );
  }

  async function runChain(batch: BatchContext, links: readonly Link[], ledger: Ledger): Promise<void> {
    // Followers wait for their leader's answer; decided jobs (cache hits, refusals) make no call.
    let candidates = batch.jobs.filter((job) => !job.final && !job.leader);
    /** Links whose requests-per-day quota is spent, and until when (Redis server time ≈ ours). */
    const dailyQuotaSpent = new Map<Link, number>();
    for (const link of links) {
      if (candidates.length === 0) return;
      // An open breaker: straight to the next link, in the same attempt.
      if (link.breaker.isOpen()) continue;
      candidates = await serveOnLink(batch, link, candidates, ledger, dailyQuotaSpent);
    }
    // Left over: every link's breaker is open or its daily quota spent. Wait for the earliest link
    // to come back, no attempt spent.
    if (candidates.length === 0) return;
    const now = Date.now();
    const backAt = (link: Link): number => {
      const daily = dailyQuotaSpent.get(link);
      if (daily !== undefined) return daily;
      return link.breaker.state.state === 'open' ? (link.breaker.state as { retryAt: number }).retryAt : now + HALF_OPEN_RECHECK_MS;
    };
    const retryAt = Math.min(...links.map(backAt));
    const reason: WaitReason = dailyQuotaSpent.size > 0 ? 'daily-quota' : 'breakers-open';
    for (const job of candidates) {
      job.final = { kind: 'wait', untilMs: Math.max(retryAt, now + MIN_WAIT_MS), reason, fields: { links: links.map((l) => l.id) } };
    }
  }

  /** Reserves quota for the candidates on one link, calls it, and returns the jobs for the next link. */
  async function serveOnLink(
    batch: BatchContext, link: Link, candidates: BatchJob[], ledger: Ledger, dailyQuotaSpent: Map<Link, number>,
  ): Promise<BatchJob[]> {
    // A job whose processor was aborted (forced shutdown, cancel) makes no call.
    const live: BatchJob[] = [];
    for (const job of candidates) {
      if (job.entry.signal?.aborted) job.final = { kind: 'error', error: job.entry.signal.reason, latencyMs: 0 };
      else live.push(job);
    }
    if (live.length === 0) return [];

    const embed = batch.kind === 'embed';
    // An embed batch is ONE request: one reservation for the sum of its inputs (embeddings report
    // no usage, so their estimate is never calibrated: they keep the producer's bound).
    const estimates = embed ? undefined : live.map((job) => estimator.estimate(link.limitKey, job.features));
    const reserved = await limiter.reserve(
      link.limitKey,
      link.limits,
      estimates ? estimates.map((estimate) => estimate.reserve) : [live.reduce((sum, job) => sum + job.estimate, 0)],
    );
    if (reserved.pauseReason === 'daily-quota') {
      // The model's daily quota is spent until Google's reset: the next link serves meanwhile.
      dailyQuotaSpent.set(link, reserved.pausedUntil!);
      return live;
    }
    const grantedCount = embed ? (reserved.granted.length > 0 ? live.length : 0) : reserved.granted.length;
    if (grantedCount < live.length) {
      // No room in the window (or the model is paused fleet-wide): wait in `delayed`, holding no
      // slot and spending no attempt. Quota waits do not spill over to the next link on purpose:
      // a fallback is for failures, not a cheaper or worse model taking the overflow.
      const untilMs = Date.now() + Math.max(MIN_WAIT_MS, reserved.waitMs);
      const reason: WaitReason = reserved.pausedUntil !== undefined ? 'rate-limited' : 'quota';
      for (const job of live.slice(grantedCount)) {
        job.final = { kind: 'wait', untilMs, reason, fields: { link: link.id } };
        metrics?.limiterWait.observe({ model: link.model }, (untilMs - Date.now()) / 1000);
      }
    }
    if (grantedCount === 0) return [];

    const granted = live.slice(0, grantedCount);
    const failures: { job: BatchJob; error: unknown; latencyMs: number; reservation: Reservation | undefined }[] = [];
    if (embed) {
      const reservation = reserved.granted[0]!;
      const started = performance.now();
      try {
        const answer = await link.breaker.fire(() =>
          link.provider.embedBatch!({ model: link.model, items: granted.map((job) => job.embedItem!) }, callOptions(granted)),
        );
        const latencyMs = elapsed(started);
        metrics?.recordProviderCall(link.providerName, link.model, 'success', latencyMs / 1000);
        granted.forEach((job, i) => {
          const served = { provider: link.providerName, model: link.model, embedding: answer.embeddings[i]!, inputTokens: job.estimate };
          job.final = served$(() => outcomes.embedded(job.entry, served, latencyMs), link, latencyMs);
        });
        deps.onServed?.(link, granted.length);
        // batchEmbedContents reports no usage: the estimate stays in the window as reserved (the
        // settle closes the call, so it no longer counts as in flight).
        ledger.settle.push({ reservation, actualTokens: reservation.estimatedTokens });
      } catch (error) {
        const latencyMs = elapsed(started);
        recordFailedCall(link, error, latencyMs);
        // One call, one reservation: the first job carries it.
        granted.forEach((job, i) => failures.push({ job, error, latencyMs, reservation: i === 0 ? reservation : undefined }));
      }
    } else {
      await Promise.all(
        granted.map(async (job, i) => {
          const reservation = reserved.granted[i]!;
          const started = performance.now();
          // When the request actually leaves (after any key lease wait), on the Redis clock: the
          // provider counts it then, so its window entry moves there when it settles.
          let sentAt = limiter.toServerTime(Date.now());
          const onSend = (): void => {
            sentAt = limiter.toServerTime(Date.now());
          };
          try {
            const answer = await link.breaker.fire(() => link.provider.generate({ ...job.request!, model: link.model }, { ...callOptions([job]), onSend }));
            const latencyMs = elapsed(started);
            metrics?.recordProviderCall(link.providerName, link.model, 'success', latencyMs / 1000);
            ledger.settle.push({ reservation, actualTokens: answer.usage.inputTokens, sentAt });
            ledger.samples.push({ key: link.limitKey, features: job.features, predicted: estimates![i]!.predicted, actual: answer.usage.inputTokens });
            job.final = served$(() => outcomes.generated(job.entry, { ...answer, provider: link.providerName, model: link.model }, latencyMs), link, latencyMs);
            deps.onServed?.(link, 1);
          } catch (error) {
            const latencyMs = elapsed(started);
            recordFailedCall(link, error, latencyMs);
            failures.push({ job, error, latencyMs, reservation });
          }
        }),
      );
    }

    const next: BatchJob[] = [];
    let retryAfterMs = 0;
    let dailyResetMs = 0;
    let reportedQuota: ReportedQuota | undefined;
    for (const { job, error, latencyMs, reservation } of failures) {
      // Not made: the breaker short-circuited it, or it was abandoned before it went out.
      const made = isProviderError(error) && (error as { breakerOpen?: boolean }).breakerOpen !== true && !isCallNotSent(error);
      // A provider that answered with an error status served nothing and counted nothing (a quota
      // 429 is refused before it counts): give the room back. A timeout or a lost connection may
      // have reached it: keep the estimate in the window.
      if (reservation && (!made || (isProviderError(error) && error.httpStatus !== undefined))) ledger.release.push(reservation);
      else if (reservation) ledger.settle.push({ reservation, actualTokens: reservation.estimatedTokens });
      if (job.entry.signal?.aborted) {
        job.final = { kind: 'error', error, latencyMs, link: link.id };
      } else if (isProviderError(error) && error.disposition === 'rate-limit' && error.reportedQuota?.dimension === 'rpd') {
        // Requests per day spent: waiting would take hours, so the next link serves (or, at the
        // end of the chain, the job waits for the reset). No attempt is spent either way.
        dailyResetMs = Math.max(dailyResetMs, error.retryAfterMs ?? 0);
        next.push(job);
      } else if (isProviderError(error) && error.disposition === 'rate-limit') {
        retryAfterMs = Math.max(retryAfterMs, error.retryAfterMs ?? 0);
        reportedQuota ??= error.reportedQuota;
        metrics?.limiterWait.observe({ model: link.model }, (error.retryAfterMs ?? 0) / 1000);
        job.final = { kind: 'wait', untilMs: Date.now() + (error.retryAfterMs ?? 0), reason: 'rate-limited', fields: { link: link.id, code: error.code } };
      } else if (isProviderError(error) && error.disposition === 'backoff' && (!made || link.breaker.isOpen())) {
        next.push(job);
      } else {
        job.final = { kind: 'error', error, latencyMs, link: link.id };
      }
    }
    if (retryAfterMs > 0) await pauseLink(link, retryAfterMs, reportedQuota);
    if (dailyResetMs > 0) {
      dailyQuotaSpent.set(link, Date.now() + dailyResetMs);
      await pauseLink(link, dailyResetMs, undefined, 'daily-quota');
    }
    return next;
  }

  /**
   * A 429 from a link whose reservation our window granted: the quota is fleet-wide, so pause the
   * model for the whole fleet, and let the limiter learn that the real limit is lower (before the
   * refused reservation is released, so its usage counts) — exactly the limit the 429 reported
   * (QuotaFailure quotaValue, the first one in the batch) when it did, whether or not limits are
   * configured: configured limits stay the ceiling. A per-day 429 only pauses, until the reset.
   */
  async function pauseLink(link: Link, retryAfterMs: number, reported?: ReportedQuota, reason: PauseReason = 'rate-limited'): Promise<void> {
    try {
      if (reason === 'rate-limited') {
        const learned = await limiter.observeRateLimit(link.limitKey, link.limits, reported);
        logger.warn('429 within our limits: lowering the fleet limit', { link: link.id, ...learned, reported: reported !== undefined });
      }
      await limiter.pause(link.limitKey, retryAfterMs, reason);
      logger.warn(reason === 'daily-quota' ? 'daily quota spent: model paused fleet-wide until the reset' : 'provider rate limit: model paused fleet-wide', {
        link: link.id,
        retryAfterMs,
      });
    } catch (error) {
      // The jobs still wait their retry delay; only the fleet-wide part is lost.
      logger.warn('could not pause the model fleet-wide', { link: link.id, error: String(error) });
    }
  }

  /** A provider call that failed, for the latency histogram (short-circuits made no call). */
  function recordFailedCall(link: Link, error: unknown, latencyMs: number): void {
    if (!metrics || (error as { breakerOpen?: unknown } | null)?.breakerOpen === true) return;
    const outcome = !isProviderError(error)
      ? 'error'
      : error.disposition === 'rate-limit'
        ? 'rate_limited'
        : error.code === 'PROVIDER_TIMEOUT'
          ? 'timeout'
          : 'error';
    metrics.recordProviderCall(link.providerName, link.model, outcome, latencyMs / 1000);
  }

  /** Settles used limiter reservations with actual input tokens, releases unused ones. */
  async function settleLimiter(ledger: Ledger): Promise<void> {
    try {
      // The pipelines go out back to back on one connection: one round trip.
      await Promise.all([limiter.settle(ledger.settle), limiter.release(ledger.release), estimator.record(ledger.samples)]);
    } catch (error) {
      // Reservations then stay at their estimate until they leave the window: safe, only less room.
      logger.warn('could not settle limiter reservations', { error: String(error) });
    }
  }

  async function finish(job: BatchJob): Promise<Outcome<PromptJobResult>> {
    const final = job.final!;
    switch (final.kind) {
      case 'served':
        return { ok: true, value: final.result };
      case 'wait':
        return { ok: false, error: await outcomes.wait(job.entry, final.untilMs, final.reason, final.fields) };
      case 'error':
        return { ok: false, error: await outcomes.failed(job.entry, final.error, final.latencyMs) };
    }
  }

  return async function serveBatch(entries: JobEntry[]): Promise<Outcome<PromptJobResult>[]> {
    const first = entries[0]!.data;
    const links = deps.chains.linksFor(first.kind, first.model);
    try {
      // Loads each link's calibration on first use; later it refreshes in the background.
      await estimator.prepare(links.map((link) => link.limitKey));
    } catch (error) {
      // Redis trouble: estimate from what this process knows (or the high prior).
      logger.warn('could not load token calibrations', { error: String(error) });
    }
    const batch: BatchContext = {
      kind: first.kind,
      model: first.model,
      jobs: entries.map((entry): BatchJob => {
        const features = promptFeatures(entry.data.model, entry.data.contents, entry.data.systemInstruction);
        const estimate = first.kind === 'embed' ? estimateInputTokens(entry.data) : Math.max(...links.map((link) => estimator.estimate(link.limitKey, features).reserve));
        return { entry, features, estimate, promptSha256: promptSha256(entry.data), cacheKeys: [] };
      }),
      claims: [],
    };
    const ledger: Ledger = { settle: [], release: [], samples: [] };
    try {
      await prepare(batch);
      await accounting.admit(batch, links);
      await runChain(batch, links, ledger);
    } catch (error) {
      // Redis failing under the limiter, a bug: every undecided job retries through its attempts.
      for (const job of batch.jobs) if (!job.leader) job.final ??= { kind: 'error', error, latencyMs: 0 };
    }
    accounting.fanOut(batch);
    for (const job of batch.jobs) job.final ??= { kind: 'error', error: new Error('job left the batch undecided'), latencyMs: 0 };
    // One step, one round trip: the limiter's settle goes out with the budget, cache, usage writes.
    await accounting.settle(batch, links, settleLimiter(ledger));
    return Promise.all(batch.jobs.map(finish));
  };
}

/** One signal for a call serving several jobs: aborted only when all of them are. */
function callOptions(jobs: readonly BatchJob[]): { signal?: AbortSignal } {
  const signals = jobs.map((job) => job.entry.signal).filter((signal): signal is AbortSignal => signal !== undefined);
  if (signals.length === 0 || signals.length < jobs.length) return {};
  if (signals.length === 1) return { signal: signals[0]! };
  const all = new AbortController();
  const onAbort = (): void => {
    if (signals.every((signal) => signal.aborted)) all.abort(signals[0]!.reason);
  };
  for (const signal of signals) signal.addEventListener('abort', onAbort, { once: true });
  return { signal: all.signal };
}

/** A result built from a successful call; a malformed one is an error of that job only. */
function served$(build: () => PromptJobResult, link: Link, latencyMs: number): Final {
  try {
    return { kind: 'served', result: build(), link: link.id };
  } catch (error) {
    return { kind: 'error', error, latencyMs, link: link.id };
  }
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
