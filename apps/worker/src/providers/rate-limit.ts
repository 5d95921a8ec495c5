/**
 * Defaults every provider's classifier shares for a 429, so that a Gemini and an OpenAI-compatible
 * rate limit wait alike when the answer names no delay.
 */

/** When a 429 names no delay at all. Google's RetryInfo is usually a few to ~60 seconds. */
export const DEFAULT_RATE_LIMIT_RETRY_MS = 10_000;

/** A 0 s retry delay would make BullMQ's `SET … PX 0` fail; wait at least this long. */
export const MIN_RATE_LIMIT_RETRY_MS = 100;
