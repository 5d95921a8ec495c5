import type { ErrorCode, Issue, JobView } from './types.js';

/**
 * The client's errors. Each has a distinct `name`, and the `is…` guards test that name rather than
 * `instanceof`, so they still work when two copies of this package end up in one program.
 */

/** The API answered with an error body `{ error: { code, message, details? } }`. */
export class PromptQueueApiError extends Error {
  override readonly name = 'PromptQueueApiError';
  /** The API's code; a newer server may send one this client does not list. */
  readonly code: ErrorCode | (string & {});
  readonly status: number;
  /** Per-field problems (`path` like `jobs[3].prompt`) of a validation error. */
  readonly details: Issue[] | undefined;

  constructor(status: number, code: string, message: string, details?: Issue[]) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }

  /** 503 (`REDIS_UNAVAILABLE`), and 502/504 from a proxy in front: the client retries these. */
  get retryable(): boolean {
    return this.status === 502 || this.status === 503 || this.status === 504;
  }
}

/** The request never got an HTTP answer (refused, reset, DNS), after all retries. */
export class PromptQueueNetworkError extends Error {
  override readonly name = 'PromptQueueNetworkError';
  readonly code = 'NETWORK_ERROR' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** `wait()` ran out of time before the job finished; `lastView` is the job as last seen. */
export class PromptQueueTimeoutError extends Error {
  override readonly name = 'PromptQueueTimeoutError';
  readonly code = 'WAIT_TIMEOUT' as const;
  constructor(
    message: string,
    readonly lastView: JobView,
  ) {
    super(message);
  }
}

export type WebhookVerificationFailure = 'missing-signature' | 'malformed-signature' | 'timestamp-outside-tolerance' | 'signature-mismatch';

/** A webhook request failed verification; `reason` says why. Answer it with a 400. */
export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
  constructor(
    readonly reason: WebhookVerificationFailure,
    message: string,
  ) {
    super(message);
  }
}

function named(error: unknown, name: string): boolean {
  return error instanceof Error && error.name === name;
}

/** True for an API error, and with `code`, for that code only. */
export function isApiError(error: unknown, code?: ErrorCode): error is PromptQueueApiError {
  return named(error, 'PromptQueueApiError') && (code === undefined || (error as PromptQueueApiError).code === code);
}

export function isNetworkError(error: unknown): error is PromptQueueNetworkError {
  return named(error, 'PromptQueueNetworkError');
}

export function isTimeoutError(error: unknown): error is PromptQueueTimeoutError {
  return named(error, 'PromptQueueTimeoutError');
}

export function isWebhookVerificationError(error: unknown): error is WebhookVerificationError {
  return named(error, 'WebhookVerificationError');
}
