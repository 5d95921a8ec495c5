import { isProviderError, ProviderError } from '@prompt-queue/shared';
import { quotaFailureLimit, retryDelayMs } from '../gemini/classify.js';
import { MIN_RATE_LIMIT_RETRY_MS } from '../rate-limit.js';

/**
 * A failed Vertex AI call (`@google/genai`'s ApiError: `status`, and Google's error body as JSON in
 * `message`) → a shared ProviderError, with the Gemini API classifier's dispositions: a 429 waits
 * (RetryInfo, QuotaFailure read by the same helpers as gemini/classify.ts), 401/403 fail the link
 * (PROVIDER_AUTH_FAILED), 404 model not found, other 4xx fail, 5xx/timeouts/network back off.
 *
 * A Vertex 429 may carry NO QuotaFailure (Dynamic Shared Quota: shared capacity ran out, there is
 * no per-project limit to learn): it is still PROVIDER_RATE_LIMITED, without `reportedQuota`, so
 * the adaptive limiter only pauses and halves its slow-start cap (docs/decisions/limiter.md).
 *
 * Messages come from the status and Google's `error.message` only: never the request, never the
 * bearer token (the SDK sends it in a header).
 */

const MAX_MESSAGE_CHARS = 300;
const ERROR_INFO_TYPE = 'type.googleapis.com/google.rpc.ErrorInfo';

interface GoogleErrorBody {
  message: string;
  status: string;
  details: unknown[];
}

export function classifyVertexError(error: unknown, context: { timeoutMs?: number } = {}): ProviderError {
  if (isProviderError(error)) return error;
  const status = (error as { status?: unknown } | null)?.status;
  if (error instanceof Error && typeof status === 'number') return classifyHttp(status, googleError(error.message), error);

  const name = (error as { name?: unknown } | null)?.name;
  if (name === 'AbortError' || name === 'TimeoutError') {
    const within = context.timeoutMs === undefined ? '' : ` within ${context.timeoutMs} ms`;
    return new ProviderError('PROVIDER_TIMEOUT', `Vertex AI did not answer${within}`, { disposition: 'backoff', cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = causeCode(error);
  if (code !== undefined || /fetch failed|socket hang up|other side closed|^terminated$/i.test(message)) {
    return new ProviderError('PROVIDER_NETWORK_ERROR', `Cannot reach Vertex AI: ${code ?? clip(message)}`, { disposition: 'backoff', cause: error });
  }
  return new ProviderError('INTERNAL', `Unexpected Vertex AI failure: ${clip(message)}`, { disposition: 'backoff', cause: error });
}

/** The ErrorInfo `reason` of a Google error (`ACCESS_TOKEN_EXPIRED`, `SERVICE_DISABLED`…). */
export function errorInfoReason(details: readonly unknown[]): string | undefined {
  for (const detail of details) {
    if (isRecord(detail) && detail['@type'] === ERROR_INFO_TYPE && typeof detail.reason === 'string') return detail.reason;
  }
  return undefined;
}

/** Google's error body out of the ApiError message (`{"error":{code,message,status,details}}` as JSON). */
export function googleError(message: string): GoogleErrorBody {
  try {
    const parsed = JSON.parse(message) as unknown;
    const inner = isRecord(parsed) && isRecord(parsed.error) ? parsed.error : undefined;
    if (inner) {
      return {
        message: typeof inner.message === 'string' ? inner.message : '',
        status: typeof inner.status === 'string' ? inner.status : '',
        details: Array.isArray(inner.details) ? inner.details : [],
      };
    }
  } catch {
    // Not JSON: a proxy's HTML page, plain text.
  }
  return { message, status: '', details: [] };
}

function classifyHttp(status: number, body: GoogleErrorBody, cause: unknown): ProviderError {
  const google = clip(body.message);
  const reason = errorInfoReason(body.details);
  const text = `Vertex AI answered ${status}${body.status ? ` ${body.status}` : ''}${reason ? ` (${reason})` : ''}${google ? `: ${google}` : ''}`;
  const base = { httpStatus: status, cause };
  if (status === 429) {
    // Dynamic Shared Quota 429s name no delay: the call chain backs off (UnnamedRateLimitBackoff).
    const named = retryDelayMs(body.details, body.message);
    const reportedQuota = quotaFailureLimit(body.details);
    return new ProviderError('PROVIDER_RATE_LIMITED', text, {
      ...base,
      disposition: 'rate-limit',
      ...(named !== undefined ? { retryAfterMs: Math.max(MIN_RATE_LIMIT_RETRY_MS, named) } : {}),
      ...(reportedQuota ? { reportedQuota } : {}),
    });
  }
  if (status === 401 || status === 403) return new ProviderError('PROVIDER_AUTH_FAILED', text, { ...base, disposition: 'fail' });
  if (status === 404) return new ProviderError('PROVIDER_MODEL_NOT_FOUND', text, { ...base, disposition: 'fail' });
  if (status === 504) return new ProviderError('PROVIDER_TIMEOUT', text, { ...base, disposition: 'backoff' });
  if (status >= 500) return new ProviderError('PROVIDER_UNAVAILABLE', text, { ...base, disposition: 'backoff' });
  if (status >= 400) return new ProviderError('PROVIDER_BAD_REQUEST', text, { ...base, disposition: 'fail' });
  return new ProviderError('INTERNAL', text, { ...base, disposition: 'backoff' });
}

function causeCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && isRecord(current); depth++) {
    if (typeof current.code === 'string' && /^E[A-Z]+$|^UND_ERR/.test(current.code)) return current.code;
    current = current.cause;
  }
  return undefined;
}

function clip(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_MESSAGE_CHARS ? `${flat.slice(0, MAX_MESSAGE_CHARS - 1)}…` : flat;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
