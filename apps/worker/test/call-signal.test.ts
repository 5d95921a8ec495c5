import { getEventListeners } from 'node:events';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { callSignal } from '../src/providers/call-signal.js';
import { GeminiProvider } from '../src/providers/gemini/gemini-provider.js';
import { OpenAICompatibleProvider } from '../src/providers/openai/openai-compatible.js';
import type { GenerateRequest } from '../src/providers/provider.js';
import { MODEL } from './helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * How many of `refs` are still alive after full collections. fetch (undici) holds a request's
 * signal from a FinalizationRegistry until its own controller is collected and the cleanup task
 * has run, so this collects a few times, letting tasks run in between, before counting.
 */
async function survivors(refs: readonly WeakRef<object>[]): Promise<number> {
  let alive = refs.length;
  for (let round = 0; round < 20 && alive > 1; round++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    gc();
    alive = refs.filter((ref) => ref.deref() !== undefined).length;
  }
  return alive;
}

const ask = (text: string, model = MODEL): GenerateRequest => ({ model, contents: [{ role: 'user', parts: [{ text }] }] });

describe('callSignal', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it("aborts with the caller's reason, not as a timeout", () => {
    const outer = new AbortController();
    const call = callSignal(outer.signal, 60_000);
    outer.abort('stop');
    expect(call.signal.aborted).toBe(true);
    expect(call.signal.reason).toBe('stop');
    expect(call.timedOut).toBe(false);
    call.dispose();
  });

  it('is aborted at once when the caller already was', () => {
    const call = callSignal(AbortSignal.abort('gone'), 60_000);
    expect(call.signal.aborted).toBe(true);
    expect(call.signal.reason).toBe('gone');
    call.dispose();
  });

  it('times out after timeoutMs, without a caller signal too', () => {
    vi.useFakeTimers();
    const call = callSignal(undefined, 1_000);
    vi.advanceTimersByTime(999);
    expect(call.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(call.signal.aborted).toBe(true);
    expect(call.timedOut).toBe(true);
    call.dispose();
  });

  it("dispose clears the timer and leaves no listener on the caller's signal", () => {
    vi.useFakeTimers();
    const outer = new AbortController();
    const call = callSignal(outer.signal, 1_000);
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(1);
    call.dispose();
    expect(getEventListeners(outer.signal, 'abort')).toHaveLength(0);
    expect(vi.getTimerCount()).toBe(0);
    outer.abort('late');
    expect(call.signal.aborted).toBe(false);
  });
});

/**
 * Regression: the providers combined the caller's signal and their timeout with AbortSignal.any.
 * Node keeps such a signal, once something listens to its 'abort' (the Gemini SDK, fetch), in a
 * process-wide set until it aborts, which a successful call never does: every call leaked its
 * signals (≈ 2 KB per job: worker RSS 242 → 966 MiB over 100k jobs in bench/memory.mjs). Each call's
 * signal must be collectable once the call has settled.
 */
describe('provider calls leave nothing behind', () => {
  const CALLS = 50;

  afterEach(() => {
    vi.unstubAllGlobals();
  });

  it('GeminiProvider (the SDK listens to the signal we pass): every call signal is collected', async () => {
    const signals: WeakRef<AbortSignal>[] = [];
    // The SDK calls the global fetch with its own controller's signal, which listens to ours.
    vi.stubGlobal('fetch', async (_input: RequestInfo | URL, init?: RequestInit) => {
      const signal = init!.signal!;
      signals.push(new WeakRef(signal));
      signal.addEventListener('abort', () => undefined); // as undici does
      await Promise.resolve();
      return new Response(
        JSON.stringify({
          candidates: [{ content: { role: 'model', parts: [{ text: 'ok' }] }, finishReason: 'STOP' }],
          usageMetadata: { promptTokenCount: 3, candidatesTokenCount: 1, totalTokenCount: 4 },
        }),
        { status: 200, headers: { 'content-type': 'application/json' } },
      );
    });
    const provider = new GeminiProvider({ apiKeys: ['key-one'], baseUrl: 'http://gemini.invalid', apiVersion: 'v1beta', timeoutMs: 5_000 });
    for (let i = 0; i < CALLS; i++) {
      // Like BullMQ: one signal per job, never aborted.
      const result = await provider.generate(ask(`leak ${i}`), { signal: new AbortController().signal });
      expect(result.text).toBe('ok');
    }
    expect(signals).toHaveLength(CALLS);
    expect(await survivors(signals)).toBeLessThanOrEqual(1);
  });

  it('OpenAICompatibleProvider (fetch listens to the signal): every call signal is collected', async () => {
    const signals: WeakRef<AbortSignal>[] = [];
    const provider = new OpenAICompatibleProvider({
      name: 'openai',
      baseUrl: 'http://openai.invalid/v1',
      apiKey: 'sk-test',
      timeoutMs: 5_000,
      fetch: async (_input, init) => {
        const signal = init!.signal!;
        signals.push(new WeakRef(signal));
        // As undici does: a listener on the request's signal, never removed by a settled call.
        signal.addEventListener('abort', () => undefined);
        await Promise.resolve();
        return new Response(
          JSON.stringify({
            model: 'gpt-4o-mini',
            choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
            usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 },
          }),
          { status: 200, headers: { 'content-type': 'application/json' } },
        );
      },
    });
    for (let i = 0; i < CALLS; i++) {
      const result = await provider.generate(ask(`leak ${i}`, 'gpt-4o-mini'), { signal: new AbortController().signal });
      expect(result.text).toBe('ok');
    }
    expect(signals).toHaveLength(CALLS);
    expect(await survivors(signals)).toBeLessThanOrEqual(1);
  });
});
