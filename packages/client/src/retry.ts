/** How the client retries a request that got no answer or a 503. */
export interface RetryOptions {
  /** Attempts in all, the first included; 1 turns retries off. @defaultValue 5 */
  attempts?: number;
  /** Delay before the first retry, ms; doubles each time, with full jitter. @defaultValue 250 */
  baseDelayMs?: number;
  /** Largest delay between attempts, ms. @defaultValue 5000 */
  maxDelayMs?: number;
}

export type ResolvedRetry = Required<RetryOptions>;

export function resolveRetry(options: RetryOptions | undefined): ResolvedRetry {
  return { attempts: options?.attempts ?? 5, baseDelayMs: options?.baseDelayMs ?? 250, maxDelayMs: options?.maxDelayMs ?? 5_000 };
}

/**
 * Delay before retry number `retry` (1-based): full jitter over an exponential ceiling, so many
 * clients that failed together do not come back together. A `Retry-After` from the server is a floor.
 */
export function backoffMs(retry: number, policy: ResolvedRetry, retryAfterMs = 0, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.max(retryAfterMs, Math.round(random() * ceiling));
}

/** `Retry-After` as ms (seconds or an HTTP date), or 0. */
export function retryAfterMs(value: string | null, now = Date.now()): number {
  if (!value) return 0;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1_000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? 0 : Math.max(0, at - now);
}

/** Resolves after `ms`, or rejects with the signal's reason once it aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
