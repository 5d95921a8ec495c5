export {
  PromptQueueClient,
  MAX_BULK_JOBS,
  type ClientOptions,
  type RequestOptions,
  type EnqueueBulkOptions,
  type BulkChunk,
  type BulkResult,
  type WaitOptions,
  type EventsOptions,
} from './client.js';
export {
  PromptQueueApiError,
  PromptQueueNetworkError,
  PromptQueueTimeoutError,
  WebhookVerificationError,
  isApiError,
  isNetworkError,
  isTimeoutError,
  isWebhookVerificationError,
  type WebhookVerificationFailure,
} from './errors.js';
export type { RetryOptions } from './retry.js';
export {
  verifyWebhook,
  SIGNATURE_HEADER,
  EVENT_ID_HEADER,
  DEFAULT_TOLERANCE_SECONDS,
  type WebhookHeaders,
  type VerifyWebhookOptions,
  type VerifiedWebhook,
} from './webhooks.js';
export * from './types.js';
