import type { BackoffStrategy } from 'bullmq';

export interface WebhookBackoffOptions {
  /** Delay before the first retry, ms (`webhooks.backoffBaseMs`). */
  backoffBaseMs: number;
  /** Cap of one delay, ms (`webhooks.backoffMaxMs`). */
  backoffMaxMs: number;
  /** [0, 1) source; injectable so tests can pin the jitter. */
  random?: () => number;
}

/** Share of a delay that jitter may take off: retries of a receiver's outage spread out a little. */
const JITTER = 0.2;

/**
 * Delay before a delivery's next attempt: min(max, base × 2^(attemptsMade − 1)), up to 20% earlier.
 * Not the prompt worker's full jitter: a receiver that is down for hours needs a schedule that
 * reliably spans the whole day (30 s, 1 m, 2 m … 4 h, 4 h … with the defaults), and deliveries
 * rarely fail in synchronized waves large enough to need more spreading.
 *
 * BullMQ calls it with attemptsMade already counting the failed attempt (1 for the first retry).
 */
export function webhookBackoffDelay(attemptsMade: number, options: WebhookBackoffOptions): number {
  const exponent = Math.max(0, attemptsMade - 1);
  const ceiling = Math.min(options.backoffMaxMs, options.backoffBaseMs * 2 ** exponent);
  return Math.floor(ceiling * (1 - JITTER * (options.random ?? Math.random)()));
}

export function webhookBackoffStrategy(options: WebhookBackoffOptions): BackoffStrategy {
  return (attemptsMade) => webhookBackoffDelay(attemptsMade, options);
}
