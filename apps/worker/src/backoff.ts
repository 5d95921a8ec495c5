import type { BackoffStrategy } from 'bullmq';

export interface JitteredBackoffOptions {
  /** Delay cap of the first retry, ms. */
  baseMs: number;
  /** Upper bound of any delay, ms. */
  maxMs: number;
  /** [0, 1) source; injectable so tests can pin the jitter. */
  random?: () => number;
}

/**
 * Exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS Architecture Blog):
 * delay = random() × min(maxMs, baseMs × 2^(attemptsMade − 1)). Full jitter spreads the retries of
 * jobs that failed together (a 503 burst) instead of sending them back in one synchronized wave.
 *
 * BullMQ calls it with attemptsMade already counting the failed attempt (1 for the first retry).
 */
export function jitteredBackoffDelay(attemptsMade: number, options: JitteredBackoffOptions): number {
  const exponent = Math.max(0, attemptsMade - 1);
  // 2^exponent overflows to Infinity for huge attempt counts; min() keeps the cap.
  const ceiling = Math.min(options.maxMs, options.baseMs * 2 ** exponent);
  return Math.floor((options.random ?? Math.random)() * ceiling);
}

/**
 * BullMQ `settings.backoffStrategy`. BullMQ only calls it for types it has no built-in for, i.e.
 * JITTERED_BACKOFF, which every prompt job is enqueued with (promptJobOptions in shared).
 */
export function jitteredBackoffStrategy(options: JitteredBackoffOptions): BackoffStrategy {
  return (attemptsMade) => jitteredBackoffDelay(attemptsMade, options);
}
