import { GoogleGenerativeAIAbortError, GoogleGenerativeAIFetchError } from '@google/generative-ai';
import { isProviderError, ProviderError, type ReportedQuota } from '@prompt-queue/shared';
import { MIN_RATE_LIMIT_RETRY_MS } from '../rate-limit.js';

/**
 * THE one place where a failed provider call becomes a shared `ProviderError`, with the disposition
 * the worker acts on (see FailureDisposition in packages/shared): fail now, back off, or pause the
 * fleet. Breakers and fallback chains (next issue) read the same disposition, so every layer agrees
 * on what a 400 or a 503 means.
 *
 * Messages are built here from the status and Google's own error message only: never the request
 * (prompt text, images) and never a key (the SDK sends keys in a header, not the URL).
 */


const MAX_MESSAGE_CHARS = 300;

const RETRY_INFO_TYPE = 'type.googleapis.com/google.rpc.RetryInfo';
const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';
const QUOTA_FAILURE_TYPE = 'type.googleapis.com/google.rpc.QuotaFailure';

export function classifyProviderError(error: unknown, context: { timeoutMs?: number } = {}): ProviderError {
  if (isProviderError(error)) return error;

  if (isFetchError(error)) return classifyHttpError(error);

  if (isAbort(error)) {
    const within = context.timeoutMs === undefined ? '' : ` within ${context.timeoutMs} ms`;
    return new ProviderError('PROVIDER_TIMEOUT', `Gemini did not answer${within}`, { disposition: 'backoff', cause: error });
  }

  const message = error instanceof Error ? error.message : String(error);
  if (isNetworkFailure(error, message)) {
    return new ProviderError('PROVIDER_NETWORK_ERROR', `Cannot reach Gemini: ${networkReason(error, message)}`, {
      disposition: 'backoff',
      cause: error,
    });
  }

  // A bug or an answer we cannot read: retryable, so a deploy that fixes it still serves the job.
  return new ProviderError('INTERNAL', `Unexpected provider failure: ${clip(message)}`, { disposition: 'backoff', cause: error });
}

function classifyHttpError(error: GoogleGenerativeAIFetchError): ProviderError {
  const status = error.status ?? 0;
  const details = Array.isArray(error.errorDetails) ? (error.errorDetails as unknown[]) : [];
  const google = googleMessage(error);
  const text = `Gemini answered ${status}${error.statusText ? ` ${error.statusText}` : ''}${google ? `: ${google}` : ''}`;
  const base = { httpStatus: status, cause: error };

  if (status === 429) {
    const named = retryDelayMs(details, google);
    const reportedQuota = quotaFailureLimit(details);
    return new ProviderError('PROVIDER_RATE_LIMITED', text, {
      ...base,
      disposition: 'rate-limit',
      ...(named !== undefined ? { retryAfterMs: Math.max(MIN_RATE_LIMIT_RETRY_MS, named) } : {}),
      ...(reportedQuota ? { reportedQuota } : {}),
    });
  }
  if (status === 403 || (status === 400 && errorInfoReason(details) === 'API_KEY_INVALID')) {
    return new ProviderError('PROVIDER_AUTH_FAILED', text, { ...base, disposition: 'fail' });
  }
  if (status === 404) return new ProviderError('PROVIDER_MODEL_NOT_FOUND', text, { ...base, disposition: 'fail' });
  if (status === 400) return new ProviderError('PROVIDER_BAD_REQUEST', text, { ...base, disposition: 'fail' });
  if (status === 504) return new ProviderError('PROVIDER_TIMEOUT', text, { ...base, disposition: 'backoff' });
  if (status >= 500) return new ProviderError('PROVIDER_UNAVAILABLE', text, { ...base, disposition: 'backoff' });
  // 401, 408, 409, 413… : the same request would fail the same way.
  if (status >= 400) return new ProviderError('PROVIDER_BAD_REQUEST', text, { ...base, disposition: 'fail' });
  return new ProviderError('INTERNAL', text, { ...base, disposition: 'backoff' });
}

/**
 * The delay a 429 asks for, in ms: google.rpc.RetryInfo.retryDelay (a protobuf Duration, "26s" or
 * "0.5s" in JSON, `{seconds, nanos}` in some encoders), else "Please retry in 47.17s." in the text.
 */
export function retryDelayMs(details: readonly unknown[], message: string): number | undefined {
  for (const detail of details) {
    if (!isRecord(detail) || detail['@type'] !== RETRY_INFO_TYPE) continue;
    const ms = durationMs(detail.retryDelay);
    if (ms !== undefined) return ms;
  }
  const match = /retry in (\d+(?:\.\d+)?)\s*(ms|s)\b/i.exec(message);
  if (match) return Math.ceil(Number(match[1]) * (match[2]!.toLowerCase() === 'ms' ? 1 : 1000));
  return undefined;
}

/**
 * The quota a 429 says was hit, from its google.rpc.QuotaFailure violations. A per-day quota
 * (`GenerateRequestsPerDayPerProjectPerModel`, `…_requests_per_day`) wins over any per-minute one:
 * it lasts until Google's daily reset, so the worker must stop waiting on it and use another link.
 * Otherwise the first per-minute violation whose quotaValue is a positive integer and whose
 * quotaId / quotaMetric names the dimension: requests (`GenerateRequestsPerMinutePerProjectPerModel`,
 * `…_requests`) or tokens (`GenerateContentInputTokensPerModelPerMinute`, `…_input_token_count`).
 * Quotas per hour or second are skipped: the limiter models a minute.
 */
export function quotaFailureLimit(details: readonly unknown[]): ReportedQuota | undefined {
  let perMinute: ReportedQuota | undefined;
  for (const detail of details) {
    if (!isRecord(detail) || detail['@type'] !== QUOTA_FAILURE_TYPE || !Array.isArray(detail.violations)) continue;
    for (const violation of detail.violations as unknown[]) {
      if (!isRecord(violation)) continue;
      const raw = violation.quotaValue;
      const text = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim() : '';
      const value = /^\d+$/.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : 0;
      const names = [violation.quotaId, violation.quotaMetric].filter((name): name is string => typeof name === 'string');
      if (names.some((name) => /per_?day/i.test(name))) return { dimension: 'rpd', limit: value };
      if (perMinute || value <= 0 || names.some((name) => /per_?(hour|second)/i.test(name))) continue;
      // The quotaId is the more specific name (the free-tier metric names both requests and tokens
      // only by its suffix); fall back on the metric.
      for (const name of names) {
        if (/token/i.test(name)) perMinute = { dimension: 'tpm', limit: value };
        else if (/request/i.test(name)) perMinute = { dimension: 'rpm', limit: value };
        if (perMinute) break;
      }
    }
  }
  return perMinute;
}

function durationMs(value: unknown): number | undefined {
  if (typeof value === 'string') {
    const match = /^(\d+(?:\.\d+)?)s$/.exec(value.trim());
    return match ? Math.ceil(Number(match[1]) * 1000) : undefined;
  }
  if (isRecord(value)) {
    const seconds = Number(value.seconds ?? 0);
    const nanos = Number(value.nanos ?? 0);
    if (Number.isFinite(seconds) && Number.isFinite(nanos)) return Math.ceil(seconds * 1000 + nanos / 1e6);
  }
  return undefined;
}

function errorInfoReason(details: readonly unknown[]): string | undefined {
  for (const detail of details) {
    if (isRecord(detail) && detail['@type'] === ERROR_INFO_TYPE && typeof detail.reason === 'string') return detail.reason;
  }
  return undefined;
}

/**
 * Google's `error.message` out of the SDK's text, which is
 * `[GoogleGenerativeAI Error]: Error fetching from <url>: [<status> <text>] <message> <details JSON>`.
 * The details are dropped (they are structured data, read above), the rest clipped.
 */
function googleMessage(error: GoogleGenerativeAIFetchError): string {
  const afterStatus = /\] ([\s\S]*)$/.exec(error.message)?.[1] ?? '';
  let message = afterStatus;
  if (Array.isArray(error.errorDetails)) {
    const suffix = ` ${JSON.stringify(error.errorDetails)}`;
    if (message.endsWith(suffix)) message = message.slice(0, -suffix.length);
  }
  return clip(message.replace(/\s+/g, ' ').trim());
}

function isFetchError(error: unknown): error is GoogleGenerativeAIFetchError {
  // instanceof fails across duplicated SDK copies; the status field is the SDK's contract.
  return (
    error instanceof GoogleGenerativeAIFetchError ||
    (error instanceof Error && typeof (error as { status?: unknown }).status === 'number' && 'errorDetails' in error)
  );
}

function isAbort(error: unknown): boolean {
  if (error instanceof GoogleGenerativeAIAbortError) return true;
  const name = (error as { name?: unknown } | null)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

const NETWORK_CODES = ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'UND_ERR_SOCKET'];

function isNetworkFailure(error: unknown, message: string): boolean {
  if (/Error fetching from|fetch failed|socket hang up|other side closed|^terminated$/i.test(message)) return true;
  const code = causeCode(error);
  return code !== undefined && NETWORK_CODES.includes(code);
}

/** The most specific reason: undici hides the errno in `cause` (sometimes two levels deep). */
function networkReason(error: unknown, message: string): string {
  const code = causeCode(error);
  if (code) return code;
  return clip(message.replace(/^\[GoogleGenerativeAI Error\]: Error fetching from \S+: /, ''));
}

function causeCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && isRecord(current); depth++) {
    if (typeof current.code === 'string') return current.code;
    current = current.cause;
  }
  return undefined;
}

function clip(text: string): string {
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS - 1)}…` : text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
