import {
  ERROR_CATALOG,
  formatFailedReason,
  isErrorCode,
  isPromptQueueError,
  isProviderError,
  type ErrorCode,
  type PromptJobResult,
  type ReportedQuota,
} from '@prompt-queue/shared';
import { isBreakerOpenError, isCallNotSent } from '../providers/call-signal.js';
import { DEFAULT_DAILY_QUOTA_RETRY_MS } from '../providers/rate-limit.js';

/**
 * What a failure means, decided here and nowhere else. Two pure functions:
 *
 * - {@link callFate}: a failed provider call → what happens next on the chain (wait, next link,
 *   fail) and what its limiter reservation becomes. The batch's call stage acts on it; the breaker
 *   asks {@link countsAgainstLink}; the call-latency metric asks {@link callMetricOutcome}.
 * - {@link jobFateOfError}: an error that ends a job's attempt → the job's fate (retry or fail,
 *   cancelled, handed back), with its code and message. The settle step records it, BullMQ is told
 *   from it (bullmq-outcome.ts), metrics and events read it.
 */

/** Abort reason the worker uses on a forced shutdown: the job goes back to the queue, unharmed. */
export const SHUTDOWN_ABORT_REASON = 'worker-shutdown';

/**
 * The limiter reservation of a call: `settle` at the actual usage (served), `keep` at its estimate
 * (the request may have reached the provider and counted: a timeout, a lost connection), or
 * `release` (nothing counted: never sent, or the provider answered with an error status — a quota
 * 429 is refused before it counts).
 */
export type ReservationVerdict = 'settle' | 'keep' | 'release';

export type CallFate =
  | { kind: 'served'; reservation: 'settle' }
  /**
   * A per-minute quota: the job waits, the model pauses fleet-wide, the limiter learns. Without
   * `retryAfterMs` the 429 named no delay: the link's backoff decides (UnnamedRateLimitBackoff).
   */
  | { kind: 'wait'; reason: 'rate-limited'; retryAfterMs?: number; reportedQuota?: ReportedQuota; reservation: ReservationVerdict }
  /**
   * Try the next link in this attempt: the daily quota is spent (hours away), or the link is down
   * (breaker open, or the call never went out).
   */
  | { kind: 'next-link'; reason: 'daily-quota'; retryAfterMs: number; reservation: ReservationVerdict }
  | { kind: 'next-link'; reason: 'unavailable'; reservation: ReservationVerdict }
  /** The link's credential was refused (a revoked key, a bad API key): another link may serve. */
  | { kind: 'next-link'; reason: 'auth-failed'; reservation: ReservationVerdict }
  /** The job's attempt ends with this error ({@link jobFateOfError} decides retry or fail). */
  | { kind: 'fail'; error: unknown; reservation: ReservationVerdict };

/** Whether a failed call reached the provider: not short-circuited by a breaker, not abandoned before it went out. */
export function reachedProvider(error: unknown): boolean {
  return isProviderError(error) && !isBreakerOpenError(error) && !isCallNotSent(error);
}

/**
 * A failed call's fate. `linkOpen`: the link's breaker is open now (this failure may have opened
 * it), so a transient failure moves on to the next link instead of spending the job's attempt.
 * `lastLink`: no link follows in the chain, so a refused credential fails the job (PROVIDER_AUTH_FAILED)
 * instead of moving on; before that, it is the link's failure, not the job's.
 */
export function callFate(error: unknown, context: { linkOpen: boolean; lastLink?: boolean }): CallFate {
  const sent = reachedProvider(error);
  const answered = isProviderError(error) && error.httpStatus !== undefined;
  const reservation: ReservationVerdict = !sent || answered ? 'release' : 'keep';
  if (!isProviderError(error)) return { kind: 'fail', error, reservation };
  if (error.disposition === 'rate-limit') {
    const { retryAfterMs } = error;
    if (error.reportedQuota?.dimension === 'rpd') return { kind: 'next-link', reason: 'daily-quota', retryAfterMs: retryAfterMs ?? DEFAULT_DAILY_QUOTA_RETRY_MS, reservation };
    return {
      kind: 'wait',
      reason: 'rate-limited',
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      ...(error.reportedQuota ? { reportedQuota: error.reportedQuota } : {}),
      reservation,
    };
  }
  if (error.disposition === 'backoff' && (!sent || context.linkOpen)) return { kind: 'next-link', reason: 'unavailable', reservation };
  if (error.code === 'PROVIDER_AUTH_FAILED' && context.lastLink === false) return { kind: 'next-link', reason: 'auth-failed', reservation };
  return { kind: 'fail', error, reservation };
}

/**
 * The breaker's filter: a failure says the link is unhealthy only when the provider was reached and
 * answered with a transient failure (5xx, timeout, network). A 4xx or a 429 is an answer: the
 * provider is up. A call abandoned before it went out learned nothing.
 */
export function countsAgainstLink(error: unknown): boolean {
  if (isCallNotSent(error) || isBreakerOpenError(error)) return false;
  return !isProviderError(error) || error.disposition === 'backoff';
}

export type CallMetricOutcome = 'success' | 'rate_limited' | 'timeout' | 'error';

/** The provider-call histogram's outcome label; undefined when no call was made (short-circuit, abandoned before it went out). */
export function callMetricOutcome(error: unknown): CallMetricOutcome | undefined {
  if (isBreakerOpenError(error) || isCallNotSent(error)) return undefined;
  if (!isProviderError(error)) return 'error';
  if (error.disposition === 'rate-limit') return 'rate_limited';
  return error.code === 'PROVIDER_TIMEOUT' ? 'timeout' : 'error';
}

/** Why a job goes back to `delayed` without spending an attempt. */
export type WaitReason = 'quota' | 'rate-limited' | 'daily-quota' | 'breakers-open' | 'budget' | 'budget-busy' | 'cache-pending' | 'waiting-in-batch';

/**
 * A job's fate at the end of its batch. `final` ends the job (completed, failed for good,
 * cancelled): exactly those are recorded as ends (job-ends.ts). `retry` and `wait` come back;
 * `hand-back` returns it unharmed on shutdown.
 */
export type JobFate =
  /** `result.cached`: from the cache or a leader, `savedNanoUsd` = what the call cost. */
  | { kind: 'served'; result: PromptJobResult; link?: string; savedNanoUsd?: number }
  | { kind: 'wait'; untilMs: number; reason: WaitReason; fields?: Record<string, unknown> }
  /** `retryable`: the error itself could pass on a later attempt; `retry`: and the job has one left. */
  | { kind: 'failed'; code: ErrorCode; message: string; retryable: boolean; retry: boolean; latencyMs: number; link?: string }
  | { kind: 'cancelled'; latencyMs: number }
  | { kind: 'hand-back' };

/** The attempt facts {@link jobFateOfError} needs: BullMQ's counters and the job's own signal. */
export interface AttemptFacts {
  attemptsMade: number;
  attempts: number;
  /** Whether the worker holds the job's lock token (a hand-back needs it). */
  hasToken: boolean;
  signal: AbortSignal | undefined;
}

/** The fate of a job whose attempt ended with `error`. */
export function jobFateOfError(facts: AttemptFacts, error: unknown, latencyMs: number, link?: string): JobFate {
  const at = link !== undefined ? { link } : {};
  if (facts.signal?.aborted) {
    if (facts.signal.reason === SHUTDOWN_ABORT_REASON && facts.hasToken) return { kind: 'hand-back' };
    return { kind: 'cancelled', latencyMs };
  }
  const another = facts.attemptsMade + 1 < facts.attempts;
  if (isProviderError(error)) {
    // 'rate-limit' never ends an attempt (the batch waits it out); a stray one is transient.
    const retryable = error.disposition !== 'fail';
    return { kind: 'failed', code: error.code, message: error.message, retryable, retry: retryable && another, latencyMs, ...at };
  }
  if (isPromptQueueError(error)) {
    const code = isErrorCode(error.code) ? error.code : 'INTERNAL';
    const retryable = ERROR_CATALOG[code].retryable;
    return { kind: 'failed', code, message: error.message, retryable, retry: retryable && another, latencyMs, ...at };
  }
  // Our own bug (or Redis failing mid-job): retry, a fixed deploy may still serve it.
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  return { kind: 'failed', code: 'INTERNAL', message: `Unexpected worker error: ${message.slice(0, 300)}`, retryable: true, retry: another, latencyMs, ...at };
}

/** The attempt facts of a job BullMQ handed the processor. */
export function attemptFacts(entry: { job: { attemptsMade: number; opts: { attempts?: number } }; token: string | undefined; signal: AbortSignal | undefined }): AttemptFacts {
  return { attemptsMade: entry.job.attemptsMade, attempts: entry.job.opts.attempts ?? 1, hasToken: entry.token !== undefined, signal: entry.signal };
}

/** A fate that ends the job for good: exactly these are recorded as ends (ends.ts). */
export type FinalFate = JobFate & { kind: 'served' | 'failed' | 'cancelled' };

/** Whether the fate ends the job for good (an end to record), as opposed to coming back. */
export function isFinal(fate: JobFate): fate is FinalFate {
  return fate.kind === 'served' || fate.kind === 'cancelled' || (fate.kind === 'failed' && !fate.retry);
}

/** The job's `failedReason` for BullMQ (`[CODE] message`), which GET /v1/jobs/:id parses back. */
export function failedReasonOf(fate: JobFate & { kind: 'failed' }): string {
  return formatFailedReason(fate.code, fate.message);
}
