import { isProviderError, ProviderError } from '@prompt-queue/shared';

/**
 * The signal of one provider call: it aborts when the caller's signal does (with its reason) or when
 * `timeoutMs` passes. `dispose()` clears the timer and unhooks it from the caller's signal; call it
 * when the call settles, whatever its outcome.
 *
 * Deliberately not `AbortSignal.any([outer, timeout.signal])`: Node (20 at least) holds every
 * signal made by `AbortSignal.any` that has an 'abort' listener in a process-wide strong set until it
 * aborts. The Gemini SDK and fetch both add such a listener and never remove it, and a call that
 * succeeds never aborts its signal, so every call leaked its composite signal, the SDK's
 * AbortController and their listeners (≈ 2 KB per job: hundreds of MiB over 100k jobs). A plain
 * AbortController is collected with the call.
 */
export interface CallSignal {
  readonly signal: AbortSignal;
  /** Whether our timeout fired (not the caller's abort). */
  readonly timedOut: boolean;
  dispose(): void;
}

export function callSignal(outer: AbortSignal | undefined, timeoutMs: number): CallSignal {
  if (outer) started.add(outer);
  const controller = new AbortController();
  let timedOut = false;
  const onOuterAbort = (): void => controller.abort(outer?.reason);
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, timeoutMs);
  if (outer?.aborted) onOuterAbort();
  else outer?.addEventListener('abort', onOuterAbort, { once: true });
  return {
    signal: controller.signal,
    get timedOut() {
      return timedOut;
    },
    dispose() {
      clearTimeout(timer);
      outer?.removeEventListener('abort', onOuterAbort);
    },
  };
}

/** Callers' signals that have had a provider call made with them (weakly held: gone with the job). */
const started = new WeakSet<AbortSignal>();

/**
 * Whether a provider call was started with `signal` (a job's own signal: `callSignal` records it as
 * the call goes out, after any wait for an API key). A job whose signal has none has not reached
 * the provider yet, so a shutdown can hand it back at once without losing a call.
 */
export function providerCallStarted(signal: AbortSignal): boolean {
  return started.has(signal);
}

/**
 * A call its caller abandoned before it was sent (its signal aborted while it waited for a key, or
 * before it began). Nothing reached the provider, so it says nothing about the provider's health:
 * the breaker does not count it (breaker.ts).
 */
export class CallNotSentError extends ProviderError {
  readonly notSent = true as const;

  constructor(provider: string, cause: unknown) {
    super('PROVIDER_TIMEOUT', `The ${provider} call was abandoned before it was sent`, { disposition: 'backoff', cause });
  }
}

/** True for a {@link CallNotSentError}; survives duplicate package copies. */
export function isCallNotSent(error: unknown): boolean {
  return (error as { notSent?: unknown } | null)?.notSent === true;
}

/** The ProviderError a short-circuited call rejects with. */
export class BreakerOpenError extends ProviderError {
  readonly breakerOpen = true as const;
  readonly link: string;

  constructor(link: string, retryAfterMs: number | undefined, cause: unknown) {
    const when = retryAfterMs === undefined ? 'a trial call is in flight' : `next trial in ${retryAfterMs} ms`;
    super('PROVIDER_UNAVAILABLE', `Circuit breaker for ${link} is open (${when})`, {
      disposition: 'backoff',
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
      cause,
    });
    this.link = link;
  }
}

/** True for the error `fire` rejects with when it did not call the provider; survives duplicate package copies. */
export function isBreakerOpenError(error: unknown): error is BreakerOpenError {
  return isProviderError(error) && (error as { breakerOpen?: unknown }).breakerOpen === true;
}
