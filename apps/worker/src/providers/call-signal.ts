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
