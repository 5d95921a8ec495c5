import { z } from 'zod';

/**
 * Every error code prompt-queue reports, in one place. The producer answers with them, the worker
 * fails jobs with them, and the dashboard groups failures by them. `retryable` says whether a
 * later attempt of the same job could succeed; `httpStatus` is what the producer answers.
 */
export const ERROR_CATALOG = {
  // Producer: bad input or state (never a 500 for these).
  INVALID_JSON: { httpStatus: 400, retryable: false },
  VALIDATION_FAILED: { httpStatus: 400, retryable: false },
  UNKNOWN_MODEL: { httpStatus: 400, retryable: false },
  UNAUTHORIZED: { httpStatus: 401, retryable: false },
  NOT_FOUND: { httpStatus: 404, retryable: false },
  METHOD_NOT_ALLOWED: { httpStatus: 405, retryable: false },
  IDEMPOTENCY_CONFLICT: { httpStatus: 409, retryable: false },
  JOB_NOT_CANCELLABLE: { httpStatus: 409, retryable: false },
  PAYLOAD_TOO_LARGE: { httpStatus: 413, retryable: false },
  PROMPT_TOO_LARGE: { httpStatus: 413, retryable: false },
  UNSUPPORTED_MEDIA_TYPE: { httpStatus: 415, retryable: false },
  /** The tenant's daily or monthly budget is spent (producer: 402 upfront; worker: the job fails). */
  BUDGET_EXCEEDED: { httpStatus: 402, retryable: false },
  REDIS_UNAVAILABLE: { httpStatus: 503, retryable: true },
  INTERNAL: { httpStatus: 500, retryable: true },

  // Worker: outcomes of a provider call.
  INVALID_JOB: { httpStatus: 422, retryable: false },
  IMAGE_EXPIRED: { httpStatus: 422, retryable: false },
  /** A `fileData.fileUri` the chain link may not receive (only Files API URIs and `fileUris.allow`). */
  FILE_URI_NOT_ALLOWED: { httpStatus: 422, retryable: false },
  PROVIDER_BAD_REQUEST: { httpStatus: 422, retryable: false },
  PROVIDER_AUTH_FAILED: { httpStatus: 502, retryable: false },
  PROVIDER_MODEL_NOT_FOUND: { httpStatus: 422, retryable: false },
  PROMPT_BLOCKED: { httpStatus: 422, retryable: false },
  RESPONSE_BLOCKED: { httpStatus: 422, retryable: false },
  PROVIDER_RATE_LIMITED: { httpStatus: 429, retryable: true },
  PROVIDER_UNAVAILABLE: { httpStatus: 503, retryable: true },
  PROVIDER_TIMEOUT: { httpStatus: 504, retryable: true },
  PROVIDER_NETWORK_ERROR: { httpStatus: 502, retryable: true },
  CANCELLED: { httpStatus: 409, retryable: false },
  /**
   * The job's worker stopped (killed, or lost its lock) more than `worker.maxStalledCount` times
   * while serving it, and BullMQ failed it. Enqueuing it again may well succeed.
   */
  JOB_STALLED: { httpStatus: 503, retryable: true },

  // Webhooks (docs/webhooks.md).
  /** A webhook URL that is not http(s), has credentials, or reaches a non-public address (SSRF guard). */
  WEBHOOK_URL_NOT_ALLOWED: { httpStatus: 400, retryable: false },
  /** A delivery attempt got no 2xx (an error status, a redirect, a timeout, a network error). */
  WEBHOOK_DELIVERY_FAILED: { httpStatus: 502, retryable: true },
  /** The job's own webhook secret expired before its delivery, or its tenant has none any more. */
  WEBHOOK_SECRET_MISSING: { httpStatus: 422, retryable: false },
} as const satisfies Record<string, { httpStatus: number; retryable: boolean }>;

export type ErrorCode = keyof typeof ERROR_CATALOG;

/** Every code of the catalogue, as a schema: the `code` enum of error answers and failed jobs (OpenAPI). */
export const errorCodeSchema = z.enum(Object.keys(ERROR_CATALOG) as [ErrorCode, ...ErrorCode[]]).meta({ id: 'ErrorCode' });

export function isErrorCode(value: string): value is ErrorCode {
  return Object.prototype.hasOwnProperty.call(ERROR_CATALOG, value);
}

/** An error that carries one of our codes. `details` must never hold prompt text or secrets. */
export class PromptQueueError extends Error {
  override readonly name = 'PromptQueueError';
  readonly code: ErrorCode;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.code = code;
    this.details = details;
  }

  get httpStatus(): number {
    return ERROR_CATALOG[this.code].httpStatus;
  }

  get retryable(): boolean {
    return ERROR_CATALOG[this.code].retryable;
  }
}

/** Works across duplicated package copies, where `instanceof` would not. */
export function isPromptQueueError(error: unknown): error is PromptQueueError {
  return (
    error instanceof Error &&
    (error as { name?: unknown }).name === 'PromptQueueError' &&
    typeof (error as { code?: unknown }).code === 'string'
  );
}

/**
 * How the worker reacts to a failed provider call. One disposition per failure type, so retry
 * layers never multiply:
 * - `fail`: the same request will fail again (4xx, safety block): fail the job now.
 * - `backoff`: transient (5xx, timeout, network): retry through BullMQ attempts with backoff.
 * - `rate-limit`: quota exhausted (429): wait `retryAfterMs`, ideally fleet-wide.
 */
export type FailureDisposition = 'fail' | 'backoff' | 'rate-limit';

/**
 * A quota limit the provider reported in a 429: requests (`rpm`) or input tokens (`tpm`) per
 * minute, or requests per day (`rpd`, reset at midnight Pacific; `limit` 0 when not stated).
 */
export interface ReportedQuota {
  dimension: 'rpm' | 'tpm' | 'rpd';
  limit: number;
}

export class ProviderError extends Error {
  override readonly name = 'ProviderError';
  readonly code: ErrorCode;
  readonly disposition: FailureDisposition;
  /** From the provider's RetryInfo, when it sent one. */
  readonly retryAfterMs: number | undefined;
  readonly httpStatus: number | undefined;
  /**
   * On a 429: the per-minute limit the provider says was hit (google.rpc.QuotaFailure quotaValue),
   * and its dimension — requests or input tokens.
   */
  readonly reportedQuota: ReportedQuota | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options: {
      disposition: FailureDisposition;
      retryAfterMs?: number;
      httpStatus?: number;
      reportedQuota?: ReportedQuota;
      cause?: unknown;
    },
  ) {
    super(message, { cause: options.cause });
    this.code = code;
    this.disposition = options.disposition;
    this.retryAfterMs = options.retryAfterMs;
    this.httpStatus = options.httpStatus;
    this.reportedQuota = options.reportedQuota;
  }
}

export function isProviderError(error: unknown): error is ProviderError {
  return error instanceof Error && (error as { name?: unknown }).name === 'ProviderError';
}

/**
 * BullMQ keeps only a message for a failed job, so the code travels inside it as a `[CODE]` prefix;
 * bull-board shows it as is and the producer parses it back.
 */
export function formatFailedReason(code: ErrorCode, message: string): string {
  return `[${code}] ${message}`;
}

/** BullMQ's own failedReason for a job that stalled more than `maxStalledCount` times. */
const BULLMQ_STALLED_REASON = 'job stalled more than allowable limit';

export function parseFailedReason(reason: string | undefined): { code: ErrorCode; message: string; retryable: boolean } {
  const match = /^\[([A-Z_]+)\] ([\s\S]*)$/.exec(reason ?? '');
  if (match && isErrorCode(match[1]!)) {
    const code = match[1];
    return { code, message: match[2]!, retryable: ERROR_CATALOG[code].retryable };
  }
  if (reason === BULLMQ_STALLED_REASON) {
    return { code: 'JOB_STALLED', message: 'The job\'s worker stopped (killed, or lost its lock) more times than worker.maxStalledCount allows.', retryable: true };
  }
  // A failure we did not classify (a crash): report it as internal.
  return { code: 'INTERNAL', message: reason || 'The job failed without a reason.', retryable: true };
}
