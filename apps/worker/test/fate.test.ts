import { describe, expect, it } from 'vitest';
import { GoogleGenerativeAIAbortError, GoogleGenerativeAIFetchError, type ErrorDetails } from '@google/generative-ai';
import { PromptQueueError, ProviderError, type PromptJobResult } from '@prompt-queue/shared';
import { BreakerOpenError } from '../src/providers/breaker.js';
import { CallNotSentError } from '../src/providers/call-signal.js';
import { classifyProviderError } from '../src/providers/gemini/classify.js';
import { DEFAULT_DAILY_QUOTA_RETRY_MS } from '../src/providers/rate-limit.js';
import {
  attemptFacts,
  callFate,
  callMetricOutcome,
  countsAgainstLink,
  isFinal,
  jobFateOfError,
  reachedProvider,
  SHUTDOWN_ABORT_REASON,
  type AttemptFacts,
  type JobFate,
} from '../src/pipeline/fate.js';

/**
 * fate.ts is pure: what a failed call and a failed attempt mean. The errors are real: SDK errors
 * run through classify.ts (as the Gemini adapter does), the breaker's short-circuit error and the
 * call signal's "never sent" error, and shared ProviderError/PromptQueueError objects.
 */

const RETRY_INFO = 'type.googleapis.com/google.rpc.RetryInfo';
const QUOTA_FAILURE = 'type.googleapis.com/google.rpc.QuotaFailure';

/** A Gemini HTTP error as the SDK throws it, classified. */
function httpError(status: number, statusText: string, details: ErrorDetails[] = []): ProviderError {
  const message = `[GoogleGenerativeAI Error]: Error fetching from https://example.invalid: [${status} ${statusText}] test answer`;
  return classifyProviderError(new GoogleGenerativeAIFetchError(message, status, statusText, details));
}

const quotaFailure = (quotaId: string, quotaValue: string): ErrorDetails => ({
  '@type': QUOTA_FAILURE,
  violations: [{ quotaMetric: 'generativelanguage.googleapis.com/generate_content_requests', quotaId, quotaValue }],
});

const errors = {
  /** Our timeout aborted the call: it may have reached Gemini and counted. */
  timeout: () => classifyProviderError(new GoogleGenerativeAIAbortError('This operation was aborted'), { timeoutMs: 1_000 }),
  /** The connection dropped mid-call: same as a timeout. */
  network: () => classifyProviderError(Object.assign(new Error('fetch failed'), { cause: { code: 'ECONNRESET' } })),
  http500: () => httpError(500, 'Internal Server Error'),
  http504: () => httpError(504, 'Gateway Timeout'),
  http400: () => httpError(400, 'Bad Request'),
  rpm429: () => httpError(429, 'Too Many Requests', [{ '@type': RETRY_INFO, retryDelay: '26s' }, quotaFailure('GenerateRequestsPerMinutePerProjectPerModel', '15')]),
  bare429: () => httpError(429, 'Too Many Requests', [{ '@type': RETRY_INFO, retryDelay: '3s' }]),
  rpd429: () => httpError(429, 'Too Many Requests', [{ '@type': RETRY_INFO, retryDelay: '40s' }, quotaFailure('GenerateRequestsPerDayPerProjectPerModel-FreeTier', '250')]),
  breakerOpen: () => new BreakerOpenError('gemini:gemini-2.5-flash:default', 5_000, Object.assign(new Error('Breaker is open'), { code: 'EOPENBREAKER' })),
  notSent: () => new CallNotSentError('gemini', new Error('shutdown')),
  bug: () => new TypeError("Cannot read properties of undefined (reading 'text')"),
};

describe('the test errors are what the adapters throw', () => {
  it('classify.ts gives them the expected codes, dispositions and statuses', () => {
    expect(errors.timeout()).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff', httpStatus: undefined });
    expect(errors.network()).toMatchObject({ code: 'PROVIDER_NETWORK_ERROR', disposition: 'backoff', httpStatus: undefined });
    expect(errors.http500()).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', disposition: 'backoff', httpStatus: 500 });
    expect(errors.http504()).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff', httpStatus: 504 });
    expect(errors.http400()).toMatchObject({ code: 'PROVIDER_BAD_REQUEST', disposition: 'fail', httpStatus: 400 });
    expect(errors.rpm429()).toMatchObject({ disposition: 'rate-limit', retryAfterMs: 26_000, reportedQuota: { dimension: 'rpm', limit: 15 } });
    expect(errors.bare429()).toMatchObject({ disposition: 'rate-limit', retryAfterMs: 3_000, reportedQuota: undefined });
    expect(errors.rpd429()).toMatchObject({ disposition: 'rate-limit', retryAfterMs: 40_000, reportedQuota: { dimension: 'rpd', limit: 250 } });
  });

  it('reachedProvider: every ProviderError but a short-circuit or a call never sent', () => {
    for (const make of [errors.timeout, errors.network, errors.http500, errors.http400, errors.rpm429]) expect(reachedProvider(make())).toBe(true);
    for (const make of [errors.breakerOpen, errors.notSent, errors.bug]) expect(reachedProvider(make())).toBe(false);
  });
});

describe('callFate: a failed call → what happens next, and its limiter reservation', () => {
  const closed = { linkOpen: false };
  const open = { linkOpen: true };

  it('a timeout keeps its reservation (the request may have counted); an HTTP error releases it', () => {
    const timeout = errors.timeout();
    expect(callFate(timeout, closed)).toEqual({ kind: 'fail', error: timeout, reservation: 'keep' });
    const network = errors.network();
    expect(callFate(network, closed)).toEqual({ kind: 'fail', error: network, reservation: 'keep' });
    const http500 = errors.http500();
    expect(callFate(http500, closed)).toEqual({ kind: 'fail', error: http500, reservation: 'release' });
    const http400 = errors.http400();
    expect(callFate(http400, closed)).toEqual({ kind: 'fail', error: http400, reservation: 'release' });
    // A 504 is a timeout, but an answered one: the provider refused it, nothing counted.
    expect(callFate(errors.http504(), closed).reservation).toBe('release');
  });

  it("a refused credential (PROVIDER_AUTH_FAILED) is the link's failure: next link, no attempt spent; at the chain's end the job fails", () => {
    // As the Gemini classifier makes it (403), and as the Vertex credentials make it (invalid_grant at the token endpoint).
    const forbidden = httpError(403, 'Forbidden');
    const refused = new ProviderError('PROVIDER_AUTH_FAILED', 'Vertex AI credential refused (keyFile /k.json): invalid_grant: Invalid JWT Signature.', { disposition: 'fail', httpStatus: 400 });
    for (const error of [forbidden, refused]) {
      expect(callFate(error, { ...closed, lastLink: false })).toEqual({ kind: 'next-link', reason: 'auth-failed', reservation: 'release' });
      expect(callFate(error, { ...closed, lastLink: true })).toEqual({ kind: 'fail', error, reservation: 'release' });
      // Callers that do not say where the link stands keep the old fate.
      expect(callFate(error, closed)).toEqual({ kind: 'fail', error, reservation: 'release' });
      expect(countsAgainstLink(error)).toBe(false);
    }
    // Other 4xx are about the request: every link would refuse it.
    expect(callFate(errors.http400(), { ...closed, lastLink: false })).toMatchObject({ kind: 'fail' });
  });

  it('a per-minute 429 → wait with its RetryInfo delay and the quota it reported; releases', () => {
    expect(callFate(errors.rpm429(), closed)).toEqual({
      kind: 'wait',
      reason: 'rate-limited',
      retryAfterMs: 26_000,
      reportedQuota: { dimension: 'rpm', limit: 15 },
      reservation: 'release',
    });
    // The breaker state does not matter for a quota answer.
    expect(callFate(errors.rpm429(), open)).toMatchObject({ kind: 'wait', reason: 'rate-limited' });
  });

  it('a 429 that reports no quota → wait, without reportedQuota', () => {
    const fate = callFate(errors.bare429(), closed);
    expect(fate).toEqual({ kind: 'wait', reason: 'rate-limited', retryAfterMs: 3_000, reservation: 'release' });
    expect(fate).not.toHaveProperty('reportedQuota');
  });

  it('a 429 that names no delay waits without one: the link\'s backoff decides (call-chain.ts)', () => {
    const stray = new ProviderError('PROVIDER_RATE_LIMITED', 'no delay', { disposition: 'rate-limit', httpStatus: 429 });
    expect(callFate(stray, closed)).toEqual({ kind: 'wait', reason: 'rate-limited', reservation: 'release' });
    // A per-day one without a reset still pauses the link a while before it is asked again.
    const daily = new ProviderError('PROVIDER_RATE_LIMITED', 'no delay', { disposition: 'rate-limit', httpStatus: 429, reportedQuota: { dimension: 'rpd', limit: 250 } });
    expect(callFate(daily, closed)).toEqual({ kind: 'next-link', reason: 'daily-quota', retryAfterMs: DEFAULT_DAILY_QUOTA_RETRY_MS, reservation: 'release' });
  });

  it('a requests-per-day 429 → the next link (daily quota, hours away); releases', () => {
    expect(callFate(errors.rpd429(), closed)).toEqual({ kind: 'next-link', reason: 'daily-quota', retryAfterMs: 40_000, reservation: 'release' });
  });

  it('a breaker short-circuit → next link, unavailable; releases (no call was made)', () => {
    expect(callFate(errors.breakerOpen(), closed)).toEqual({ kind: 'next-link', reason: 'unavailable', reservation: 'release' });
    expect(callFate(errors.breakerOpen(), open)).toEqual({ kind: 'next-link', reason: 'unavailable', reservation: 'release' });
  });

  it('a call abandoned before it was sent → next link, unavailable; releases', () => {
    expect(callFate(errors.notSent(), closed)).toEqual({ kind: 'next-link', reason: 'unavailable', reservation: 'release' });
  });

  it('a transient failure that left the link open → next link in the same attempt, with its own reservation verdict', () => {
    expect(callFate(errors.http500(), open)).toEqual({ kind: 'next-link', reason: 'unavailable', reservation: 'release' });
    // A timeout that opened the breaker still keeps: the request may have counted.
    expect(callFate(errors.timeout(), open)).toEqual({ kind: 'next-link', reason: 'unavailable', reservation: 'keep' });
  });

  it('a 4xx fails the attempt even when the link is open: another link would refuse it too', () => {
    const http400 = errors.http400();
    expect(callFate(http400, open)).toEqual({ kind: 'fail', error: http400, reservation: 'release' });
  });

  it('an error that is not a ProviderError (our bug) fails the attempt and releases', () => {
    const bug = errors.bug();
    expect(callFate(bug, closed)).toEqual({ kind: 'fail', error: bug, reservation: 'release' });
    expect(callFate('a string', open)).toEqual({ kind: 'fail', error: 'a string', reservation: 'release' });
  });
});

describe('countsAgainstLink (the breaker filter)', () => {
  it('transient failures of a reached provider count: timeout, network, 5xx', () => {
    for (const make of [errors.timeout, errors.network, errors.http500, errors.http504]) expect(countsAgainstLink(make())).toBe(true);
  });

  it('answers do not count: a 4xx, a 429 (per minute or per day)', () => {
    for (const make of [errors.http400, errors.rpm429, errors.rpd429]) expect(countsAgainstLink(make())).toBe(false);
  });

  it('a call never sent or short-circuited does not count; an error that is not a ProviderError does', () => {
    expect(countsAgainstLink(errors.notSent())).toBe(false);
    expect(countsAgainstLink(errors.breakerOpen())).toBe(false);
    expect(countsAgainstLink(errors.bug())).toBe(true);
  });
});

describe('callMetricOutcome (the provider-call histogram label)', () => {
  it('each kind of failure', () => {
    expect(callMetricOutcome(errors.timeout())).toBe('timeout');
    expect(callMetricOutcome(errors.http504())).toBe('timeout');
    expect(callMetricOutcome(errors.network())).toBe('error');
    expect(callMetricOutcome(errors.http500())).toBe('error');
    expect(callMetricOutcome(errors.http400())).toBe('error');
    expect(callMetricOutcome(errors.rpm429())).toBe('rate_limited');
    expect(callMetricOutcome(errors.rpd429())).toBe('rate_limited');
    expect(callMetricOutcome(errors.bug())).toBe('error');
  });

  it('a short-circuit or a call abandoned before it went out made no call: no label', () => {
    expect(callMetricOutcome(errors.breakerOpen())).toBeUndefined();
    expect(callMetricOutcome(errors.notSent())).toBeUndefined();
  });
});

describe('jobFateOfError: an attempt that ended with an error → the job fate', () => {
  const facts = (overrides: Partial<AttemptFacts> = {}): AttemptFacts => ({ attemptsMade: 0, attempts: 3, hasToken: true, signal: undefined, ...overrides });
  const aborted = (reason: unknown): AbortSignal => {
    const controller = new AbortController();
    controller.abort(reason);
    return controller.signal;
  };

  it('a shutdown abort with the lock token → hand-back (no attempt spent)', () => {
    expect(jobFateOfError(facts({ signal: aborted(SHUTDOWN_ABORT_REASON) }), errors.timeout(), 40, 'l1')).toEqual({ kind: 'hand-back' });
  });

  it('a shutdown abort without the token → cancelled (it cannot be handed back)', () => {
    expect(jobFateOfError(facts({ signal: aborted(SHUTDOWN_ABORT_REASON), hasToken: false }), errors.timeout(), 40)).toEqual({ kind: 'cancelled', latencyMs: 40 });
  });

  it('any other abort → cancelled, whatever the error', () => {
    expect(jobFateOfError(facts({ signal: aborted('cancelled by the caller') }), errors.http500(), 12)).toEqual({ kind: 'cancelled', latencyMs: 12 });
    expect(jobFateOfError(facts({ signal: aborted(undefined) }), errors.bug(), 0)).toEqual({ kind: 'cancelled', latencyMs: 0 });
  });

  it('a signal that is not aborted decides nothing', () => {
    const live = new AbortController().signal;
    expect(jobFateOfError(facts({ signal: live }), errors.http500(), 5)).toMatchObject({ kind: 'failed', code: 'PROVIDER_UNAVAILABLE' });
  });

  it("a ProviderError with disposition 'fail' → failed, no retry, with the link", () => {
    const error = errors.http400();
    expect(jobFateOfError(facts(), error, 33, 'gemini:m:default')).toEqual({
      kind: 'failed',
      code: 'PROVIDER_BAD_REQUEST',
      message: error.message,
      retryable: false,
      retry: false,
      latencyMs: 33,
      link: 'gemini:m:default',
    });
  });

  it("'backoff' with attempts left → retry; on the last attempt → no retry, but still retryable", () => {
    expect(jobFateOfError(facts({ attemptsMade: 1, attempts: 3 }), errors.timeout(), 1)).toMatchObject({ kind: 'failed', code: 'PROVIDER_TIMEOUT', retryable: true, retry: true });
    expect(jobFateOfError(facts({ attemptsMade: 2, attempts: 3 }), errors.timeout(), 1)).toMatchObject({ kind: 'failed', code: 'PROVIDER_TIMEOUT', retryable: true, retry: false });
    // Without BullMQ attempts a job has one: no retry.
    expect(jobFateOfError(facts({ attemptsMade: 0, attempts: 1 }), errors.http500(), 1)).toMatchObject({ retryable: true, retry: false });
  });

  it('a stray rate-limit error is transient: retried', () => {
    expect(jobFateOfError(facts(), errors.rpm429(), 1)).toMatchObject({ kind: 'failed', code: 'PROVIDER_RATE_LIMITED', retryable: true, retry: true });
  });

  it("a PromptQueueError follows the catalogue: BUDGET_EXCEEDED is not retried, REDIS_UNAVAILABLE is", () => {
    const budget = new PromptQueueError('BUDGET_EXCEEDED', 'spent');
    expect(jobFateOfError(facts(), budget, 0)).toEqual({ kind: 'failed', code: 'BUDGET_EXCEEDED', message: 'spent', retryable: false, retry: false, latencyMs: 0 });
    expect(jobFateOfError(facts(), new PromptQueueError('REDIS_UNAVAILABLE', 'down'), 0)).toMatchObject({ code: 'REDIS_UNAVAILABLE', retryable: true, retry: true });
  });

  it('an unknown error → INTERNAL, retried, its message clipped to 300 characters', () => {
    const long = new TypeError('x'.repeat(1_000));
    const fate = jobFateOfError(facts(), long, 7, 'l');
    expect(fate).toMatchObject({ kind: 'failed', code: 'INTERNAL', retryable: true, retry: true, latencyMs: 7, link: 'l' });
    const { message } = fate as JobFate & { kind: 'failed' };
    expect(message).toBe(`Unexpected worker error: ${`TypeError: ${'x'.repeat(1_000)}`.slice(0, 300)}`);
    expect(jobFateOfError(facts({ attemptsMade: 2 }), 'thrown string', 0)).toMatchObject({ code: 'INTERNAL', message: 'Unexpected worker error: thrown string', retry: false });
  });

  it('without a link, the fate names none', () => {
    expect(jobFateOfError(facts(), errors.http500(), 0)).not.toHaveProperty('link');
  });
});

describe('attemptFacts and isFinal', () => {
  it("attemptFacts reads BullMQ's counters, the token and the signal (one attempt when none is set)", () => {
    const signal = new AbortController().signal;
    expect(attemptFacts({ job: { attemptsMade: 2, opts: { attempts: 5 } }, token: 'tok', signal })).toEqual({ attemptsMade: 2, attempts: 5, hasToken: true, signal });
    expect(attemptFacts({ job: { attemptsMade: 0, opts: {} }, token: undefined, signal: undefined })).toEqual({ attemptsMade: 0, attempts: 1, hasToken: false, signal: undefined });
  });

  it('served, cancelled and failed-for-good are ends; a retry, a wait and a hand-back come back', () => {
    const result = { cached: false } as PromptJobResult;
    const failed = { kind: 'failed', code: 'INTERNAL', message: 'm', retryable: true, latencyMs: 0 } as const;
    expect(isFinal({ kind: 'served', result })).toBe(true);
    expect(isFinal({ kind: 'cancelled', latencyMs: 0 })).toBe(true);
    expect(isFinal({ ...failed, retry: false })).toBe(true);
    expect(isFinal({ ...failed, retry: true })).toBe(false);
    expect(isFinal({ kind: 'wait', untilMs: 0, reason: 'quota' })).toBe(false);
    expect(isFinal({ kind: 'hand-back' })).toBe(false);
  });
});
