/**
 * What every provider's classifier and the call chain share about 429s, so that a Gemini, a Vertex
 * and an OpenAI-compatible rate limit wait alike.
 */

/**
 * A daily-quota 429 that names no reset: the model is paused this long before it is asked again
 * (its jobs go to the next link meanwhile).
 */
export const DEFAULT_DAILY_QUOTA_RETRY_MS = 10_000;

/** A 0 s retry delay would make BullMQ's `SET … PX 0` fail; wait at least this long. */
export const MIN_RATE_LIMIT_RETRY_MS = 100;

/** The waits after consecutive 429s that name no delay, on one link: 1 s, 2 s, 4 s … 32 s. */
export const UNNAMED_RATE_LIMIT_FIRST_MS = 1_000;
export const UNNAMED_RATE_LIMIT_MAX_MS = 32_000;

/**
 * How long a link waits after a 429 that names no delay: Vertex AI's Dynamic Shared Quota (a
 * shared pool, no RetryInfo, no quota value), a proxy, an OpenAI-compatible server without
 * `retry-after`. Such a 429 is contention of the moment, so the first wait is short, and each
 * further one in a row doubles it (truncated exponential backoff, as Google advises for DSQ); a
 * served call ends the streak. (A fixed 10 s paused the whole fleet that long for every stray
 * 429.) The limiter's learned limit lowers the rate meanwhile. One per link, in each process: the
 * fleet-wide pause keeps the longest any worker asked for.
 */
export class UnnamedRateLimitBackoff {
  private streak = 0;

  /** The wait after one more 429 without a delay. */
  next(): number {
    const wait = Math.min(UNNAMED_RATE_LIMIT_MAX_MS, UNNAMED_RATE_LIMIT_FIRST_MS * 2 ** Math.min(this.streak, 30));
    this.streak += 1;
    return wait;
  }

  /** A served call: the next 429 without a delay starts again from the first wait. */
  served(): void {
    this.streak = 0;
  }
}
