import {
  isProviderError,
  type EstimateSample,
  type FleetLimiter,
  type Logger,
  type PauseReason,
  type ReportedQuota,
  type Reservation,
  type SettleItem,
  type TokenEstimator,
} from '@prompt-queue/shared';
import type { WorkerMetrics } from '../metrics.js';
import { isCallNotSent } from '../providers/call-signal.js';
import type { CallLatencies } from '../providers/call-latencies.js';
import type { Link } from '../providers/chain.js';
import type { Batch, BatchJob, Fates } from './batch.js';
import { attemptFacts, callFate, callMetricOutcome, jobFateOfError, type JobFate, type WaitReason } from './fate.js';
import type { JobResults } from './results.js';

/**
 * Stage 4: the calls. For each link of the chain, in order: [breaker open, or daily quota spent?
 * skip] → calibrated input estimates → limiter.reserve (one round trip for the batch) → calls
 * through the link's breaker → each failure's fate (fate.ts) → [429: observe + fleet pause].
 * Jobs whose fate is `next-link` try the next link in the same attempt. Returns each called job's
 * fate and the limiter reservations to settle or release (settle.ts sends them with the rest).
 */

/** When a breaker is half-open (its trial call in flight), jobs for it look again after this, ms. */
const HALF_OPEN_RECHECK_MS = 1_000;
/** Shortest wait before a job that did not get quota looks again, ms. */
const MIN_WAIT_MS = 25;
/** A call answered within this long of being sent is dated at its answer (see countedAt), ms. */
const DATE_AT_ANSWER_WITHIN_MS = 1_000;

/**
 * When the provider counted a served call, as late as we can tell: it counts a call on arrival,
 * somewhere between our send and its answer. Dating it too early frees its room in our window
 * before the provider frees it: 429s at the window's rollover.
 * - A fast call (answered within a second) is dated at its answer: at most its own latency late.
 * - A call that took far longer than the link's calls normally do (CallLatencies.waited) waited
 *   before it arrived — a fleet's first burst opening connections, a busy event loop on either
 *   side — and is dated at its answer less the fastest normal call: still never before its arrival.
 * - While the link's normal latency is not known yet (its first calls), at its answer.
 * - Otherwise, a slow call is dated at its send: its latency is the provider thinking, and
 *   dating it later would hold quota the provider has freed.
 */
export function countedAt(limiter: Pick<FleetLimiter, 'toServerTime'>, sentAt: number, latencies: CallLatencies): number {
  const answeredAt = limiter.toServerTime(Date.now());
  const latencyMs = answeredAt - sentAt;
  const typical = latencies.typical();
  let at: number;
  if (latencyMs <= DATE_AT_ANSWER_WITHIN_MS || typical === undefined) at = answeredAt;
  else if (latencies.waited(latencyMs)) at = Math.max(sentAt, answeredAt - typical.floorMs);
  else at = sentAt;
  latencies.record(latencyMs);
  return at;
}

export interface CallChainDeps {
  logger: Logger;
  limiter: FleetLimiter;
  /** The fleet's calibrated input-token estimates, one calibration per link scope. */
  estimator: TokenEstimator;
  results: JobResults;
  metrics?: WorkerMetrics | undefined;
  /** Counts served calls per link (for /status). */
  onServed?: ((link: Link, jobs: number) => void) | undefined;
}

/**
 * Offered each generate job as soon as its call is served, before the batch's other calls end.
 * Returning true takes the job over, with its fate and its limiter items (settle, calibration
 * sample): they stay out of the batch's `fates` and ledger (serve-batch.ts settles it early).
 */
export type ServedEarly = (job: BatchJob, fate: JobFate & { kind: 'served' }, items: { settle: SettleItem; sample: EstimateSample }) => boolean;

/**
 * Limiter reservations to settle (call made, usage known) or release (call never made, or refused),
 * and what each served call teaches the token calibration.
 */
export interface LimiterLedger {
  settle: SettleItem[];
  release: Reservation[];
  samples: EstimateSample[];
}

/**
 * Jobs to send at the Flex tier (tier-route.ts), each with its Flex call's timeout, ms: a Flex call
 * that is shed (503) or runs out of that time is sent again at standard at once, on the same link,
 * in the same attempt; sheds do not count against the link's breaker.
 */
export type FlexJobs = ReadonlyMap<BatchJob, number>;

export async function callChain(
  deps: CallChainDeps,
  batch: Batch,
  callers: readonly BatchJob[],
  servedEarly?: ServedEarly,
  flex: FlexJobs = new Map(),
): Promise<{ fates: Fates; ledger: LimiterLedger }> {
  const fates: Fates = new Map();
  const ledger: LimiterLedger = { settle: [], release: [], samples: [] };
  const { links } = batch;
  let candidates = [...callers];
  /** Links whose requests-per-day quota is spent, and until when (Redis server time ≈ ours). */
  const dailyQuotaSpent = new Map<Link, number>();
  for (const link of links) {
    if (candidates.length === 0) break;
    // An open breaker: straight to the next link, in the same attempt.
    if (link.breaker.isOpen()) continue;
    candidates = await callLink(deps, batch, link, candidates, { fates, ledger, dailyQuotaSpent, servedEarly, flex });
  }
  if (candidates.length === 0) return { fates, ledger };
  // Left over: every link's breaker is open or its daily quota spent. Wait for the earliest link
  // to come back, no attempt spent.
  const now = Date.now();
  const backAt = (link: Link): number => {
    const daily = dailyQuotaSpent.get(link);
    if (daily !== undefined) return daily;
    return link.breaker.state.state === 'open' ? (link.breaker.state as { retryAt: number }).retryAt : now + HALF_OPEN_RECHECK_MS;
  };
  const retryAt = Math.min(...links.map(backAt));
  const reason: WaitReason = dailyQuotaSpent.size > 0 ? 'daily-quota' : 'breakers-open';
  for (const job of candidates) {
    fates.set(job, { kind: 'wait', untilMs: Math.max(retryAt, now + MIN_WAIT_MS), reason, fields: { links: links.map((l) => l.id) } });
  }
  return { fates, ledger };
}

interface ChainState {
  fates: Fates;
  ledger: LimiterLedger;
  dailyQuotaSpent: Map<Link, number>;
  servedEarly?: ServedEarly | undefined;
  flex: FlexJobs;
}

/** A Flex call that was shed or ran late: the job goes standard. */
const FLEX_SHED = Symbol('flex-shed');

/** Reserves quota for the candidates on one link, calls it, and returns the jobs for the next link. */
async function callLink(deps: CallChainDeps, batch: Batch, link: Link, candidates: BatchJob[], state: ChainState): Promise<BatchJob[]> {
  const { limiter, estimator, metrics, results } = deps;
  const { fates, ledger } = state;
  // A job whose processor was aborted (forced shutdown, cancel) makes no call.
  const live: BatchJob[] = [];
  for (const job of candidates) {
    if (job.entry.signal?.aborted) fates.set(job, jobFateOfError(attemptFacts(job.entry), job.entry.signal.reason, 0));
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
    state.dailyQuotaSpent.set(link, reserved.pausedUntil!);
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
      fates.set(job, { kind: 'wait', untilMs, reason, fields: { link: link.id } });
      metrics?.limiterWait.observe({ model: link.model }, (untilMs - Date.now()) / 1000);
    }
  }
  if (grantedCount === 0) return [];

  const granted = live.slice(0, grantedCount);
  const failures: { job: BatchJob; error: unknown; latencyMs: number; reservation: Reservation | undefined }[] = [];
  const served = (job: BatchJob, build: () => JobFate & { kind: 'served' }, latencyMs: number): void => {
    // A result built from a successful call; a malformed one is an error of that job only.
    try {
      fates.set(job, build());
    } catch (error) {
      fates.set(job, jobFateOfError(attemptFacts(job.entry), error, latencyMs, link.id));
    }
  };
  if (embed) {
    const reservation = reserved.granted[0]!;
    const started = performance.now();
    try {
      const answer = await link.breaker.fire(() => link.provider.embedBatch!({ model: link.model, items: granted.map((job) => job.embedItem!) }, callOptions(granted)));
      const latencyMs = elapsed(started);
      metrics?.recordProviderCall(link.providerName, link.model, 'success', latencyMs / 1000);
      granted.forEach((job, i) => {
        const embedding = { provider: link.providerName, model: link.model, embedding: answer.embeddings[i]!, inputTokens: job.estimate };
        served(job, () => ({ kind: 'served', result: results.embedded(embedding, latencyMs), link: link.id }), latencyMs);
      });
      deps.onServed?.(link, granted.length);
      link.rateLimitBackoff.served();
      // batchEmbedContents reports no usage: the estimate stays in the window as reserved (the
      // settle closes the call, so it no longer counts as in flight).
      ledger.settle.push({ reservation, actualTokens: reservation.estimatedTokens });
    } catch (error) {
      const latencyMs = elapsed(started);
      recordFailedCall(deps, link, error, latencyMs);
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
        const flexTimeoutMs = state.flex.get(job);
        const call = (tier: 'flex' | 'standard') =>
          link.provider.generate(
            { ...job.request!, model: link.model, ...(tier === 'flex' ? { serviceTier: 'flex' as const } : {}) },
            { ...callOptions([job]), onSend, ...(tier === 'flex' ? { timeoutMs: flexTimeoutMs } : {}) },
          );
        try {
          let answer = await link.breaker.fire(async () => {
            if (flexTimeoutMs === undefined) return call('standard');
            try {
              return await call('flex');
            } catch (error) {
              // Shed or late is Flex being Flex, not the link failing: no breaker failure.
              if (!isFlexShed(error) || job.entry.signal?.aborted) throw error;
              return FLEX_SHED;
            }
          });
          if (answer === FLEX_SHED) {
            deps.logger.info('Flex call shed or late: the job goes standard on the same link', { link: link.id });
            metrics?.recordProviderCall(link.providerName, link.model, 'flex_shed', elapsed(started) / 1000);
            answer = await link.breaker.fire(() => call('standard'));
          }
          const latencyMs = elapsed(started);
          metrics?.recordProviderCall(link.providerName, link.model, 'success', latencyMs / 1000);
          const settle: SettleItem = { reservation, actualTokens: answer.usage.inputTokens, sentAt: countedAt(limiter, sentAt, link.latencies) };
          const sample: EstimateSample = { key: link.limitKey, features: job.features, predicted: estimates![i]!.predicted, actual: answer.usage.inputTokens };
          const generated = { ...answer, provider: link.providerName, model: link.model };
          served(
            job,
            () => {
              // Priced at the tier the provider says served it (a provider without Flex: standard).
              if (generated.servedTier !== 'flex') return { kind: 'served', result: results.generated(generated, latencyMs), link: link.id };
              const { result, savedNanoUsd } = results.atTier(generated, latencyMs, 'flex');
              return { kind: 'served', result, link: link.id, savedNanoUsd };
            },
            latencyMs,
          );
          deps.onServed?.(link, 1);
          link.rateLimitBackoff.served();
          const fate = fates.get(job);
          if (fate?.kind === 'served' && state.servedEarly?.(job, fate, { settle, sample })) {
            fates.delete(job);
          } else {
            ledger.settle.push(settle);
            ledger.samples.push(sample);
          }
        } catch (error) {
          const latencyMs = elapsed(started);
          recordFailedCall(deps, link, error, latencyMs);
          failures.push({ job, error, latencyMs, reservation });
        }
      }),
    );
  }

  const next: BatchJob[] = [];
  let retryAfterMs = 0;
  let dailyResetMs = 0;
  let reportedQuota: ReportedQuota | undefined;
  // A 429 that named no delay: the link's backoff grows once per call round, not once per job.
  let unnamedWaitMs: number | undefined;
  const waitFor = (fate: { retryAfterMs?: number }): number => fate.retryAfterMs ?? (unnamedWaitMs ??= link.rateLimitBackoff.next());
  for (const { job, error, latencyMs, reservation } of failures) {
    const fate = callFate(error, { linkOpen: link.breaker.isOpen(), lastLink: batch.links.indexOf(link) === batch.links.length - 1 });
    if (reservation && fate.reservation === 'release') ledger.release.push(reservation);
    else if (reservation) ledger.settle.push({ reservation, actualTokens: reservation.estimatedTokens });
    if (job.entry.signal?.aborted) {
      // Cancelled or handed back during the call: that decides, not the call's error.
      fates.set(job, jobFateOfError(attemptFacts(job.entry), error, latencyMs, link.id));
      continue;
    }
    switch (fate.kind) {
      case 'next-link':
        // Requests per day spent (waiting would take hours), the link is down, or its credential
        // was refused: the next link serves; at the end of the chain the job waits for the
        // earliest link. No attempt spent.
        if (fate.reason === 'daily-quota') dailyResetMs = Math.max(dailyResetMs, fate.retryAfterMs);
        next.push(job);
        break;
      case 'wait': {
        const waitMs = waitFor(fate);
        retryAfterMs = Math.max(retryAfterMs, waitMs);
        reportedQuota ??= fate.reportedQuota;
        metrics?.limiterWait.observe({ model: link.model }, waitMs / 1000);
        fates.set(job, { kind: 'wait', untilMs: Date.now() + waitMs, reason: 'rate-limited', fields: { link: link.id, code: 'PROVIDER_RATE_LIMITED' } });
        break;
      }
      case 'fail':
        fates.set(job, jobFateOfError(attemptFacts(job.entry), error, latencyMs, link.id));
        break;
      case 'served':
        break;
    }
  }
  if (retryAfterMs > 0) await pauseLink(deps, link, retryAfterMs, reportedQuota);
  if (dailyResetMs > 0) {
    state.dailyQuotaSpent.set(link, Date.now() + dailyResetMs);
    await pauseLink(deps, link, dailyResetMs, undefined, 'daily-quota');
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
async function pauseLink(deps: CallChainDeps, link: Link, retryAfterMs: number, reported?: ReportedQuota, reason: PauseReason = 'rate-limited'): Promise<void> {
  const { limiter, logger } = deps;
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
function recordFailedCall(deps: CallChainDeps, link: Link, error: unknown, latencyMs: number): void {
  const outcome = callMetricOutcome(error);
  if (outcome) deps.metrics?.recordProviderCall(link.providerName, link.model, outcome, latencyMs / 1000);
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

/** A Flex call the provider shed (503) or that ran out of its deadline-bound time. */
function isFlexShed(error: unknown): boolean {
  return isProviderError(error) && (error.code === 'PROVIDER_UNAVAILABLE' || error.code === 'PROVIDER_TIMEOUT') && !isCallNotSent(error);
}

function elapsed(started: number): number {
  return Math.round(performance.now() - started);
}
