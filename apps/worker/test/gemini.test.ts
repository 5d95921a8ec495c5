import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { isProviderError } from '@prompt-queue/shared';
import { waitFor } from '@prompt-queue/shared/testing';
import { GeminiProvider } from '../src/providers/gemini/gemini-provider.js';
import type { GenerateRequest } from '../src/providers/provider.js';
import { MODEL } from './helpers.js';

const ask = (text: string, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  model: MODEL,
  contents: [{ role: 'user', parts: [{ text }] }],
  ...extra,
});

describe('GeminiProvider against the emulator', () => {
  let emulator: EmulatorProcess;
  let provider: GeminiProvider;

  beforeAll(async () => {
    emulator = await startEmulatorProcess({ apiKeys: ['key-one', 'key-two'] });
    provider = new GeminiProvider({ apiKeys: ['key-one', 'key-two'], baseUrl: emulator.url, apiVersion: 'v1beta', timeoutMs: 5_000 });
  });
  afterAll(async () => {
    await emulator?.stop();
  });
  beforeEach(async () => {
    await emulator.client.reset();
  });

  async function failure(promise: Promise<unknown>) {
    const error = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    if (!isProviderError(error)) throw new Error(`expected a ProviderError, got ${String(error)}`);
    return error;
  }

  it('answers with text, finishReason, usage (thoughts included) and modelVersion', async () => {
    const result = await provider.generate(ask('Hello'), {});
    expect(result.text).toMatch(/^Emulated answer from gemini-2\.5-flash: /);
    expect(result).toMatchObject({ finishReason: 'STOP', provider: 'gemini', model: MODEL, modelVersion: MODEL });
    const { usage } = result;
    expect(usage.inputTokens).toBeGreaterThan(0);
    expect(usage.outputTokens).toBeGreaterThan(0);
    expect(usage.thoughtsTokens).toBeGreaterThan(0);
    expect(usage.cachedTokens).toBe(0);
    expect(usage.totalTokens).toBe(usage.inputTokens + usage.outputTokens + usage.thoughtsTokens);
  });

  it('leaves thought parts out of the text', async () => {
    const plain = await provider.generate(ask('Think about it'));
    const withThoughts = await provider.generate(ask('Think about it', { generationConfig: { thinkingConfig: { includeThoughts: true } } }));
    expect(withThoughts.text).toBe(plain.text);
    expect(withThoughts.text).not.toContain('Emulated thinking');
  });

  it('sends systemInstruction and generationConfig: MAX_TOKENS is a success', async () => {
    const result = await provider.generate(ask('Hello', { systemInstruction: 'Be brief.', generationConfig: { maxOutputTokens: 3 } }));
    expect(result.finishReason).toBe('MAX_TOKENS');
    expect(result.usage.outputTokens).toBeLessThanOrEqual(3);
  });

  it('a blocked prompt → PROMPT_BLOCKED', async () => {
    expect(await failure(provider.generate(ask('please [[block]] this')))).toMatchObject({ code: 'PROMPT_BLOCKED', disposition: 'fail' });
  });

  it.each(['safety', 'recitation'])('a %s finish → RESPONSE_BLOCKED', async (trigger) => {
    const error = await failure(provider.generate(ask(`please [[${trigger}]]`)));
    expect(error).toMatchObject({ code: 'RESPONSE_BLOCKED', disposition: 'fail' });
    expect(error.message).toContain(trigger.toUpperCase());
  });

  it('rotates over the API keys', async () => {
    for (let i = 0; i < 4; i++) await provider.generate(ask(`call ${i}`));
    const byKey = Object.values((await emulator.client.counters()).byKey);
    expect(byKey.sort()).toEqual([2, 2]);
  });

  it('times out after timeoutMs → PROVIDER_TIMEOUT', async () => {
    const quick = new GeminiProvider({ apiKeys: ['key-one'], baseUrl: emulator.url, apiVersion: 'v1beta', timeoutMs: 150 });
    await emulator.client.addFault({ kind: 'slow', count: 1, delayMs: 3_000 });
    const started = Date.now();
    const error = await failure(quick.generate(ask('slow')));
    expect(error).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff' });
    expect(error.message).toBe('Gemini did not answer within 150 ms');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it("stops when the caller's signal aborts", async () => {
    await emulator.client.addFault({ kind: 'slow', count: 1, delayMs: 3_000 });
    const controller = new AbortController();
    setTimeout(() => controller.abort('stop'), 100);
    const error = await failure(provider.generate(ask('slow'), { signal: controller.signal }));
    expect(error.code).toBe('PROVIDER_TIMEOUT');
  });

  it('sends nothing for a signal aborted already (the SDK would ignore it and run the call to its end)', async () => {
    await emulator.client.setLatency(3_000);
    try {
      const started = Date.now();
      let sends = 0;
      const error = await failure(provider.generate(ask('never sent'), { signal: AbortSignal.abort('worker-shutdown'), onSend: () => (sends += 1) }));
      expect(error).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff', notSent: true });
      expect(sends).toBe(0);
      expect(Date.now() - started).toBeLessThan(500);
      expect((await emulator.client.counters()).totalCalls).toBe(0);
    } finally {
      await emulator.client.setLatency(0);
    }
  });

  it('a call waiting for the probe of a new key is abandoned, unsent, when its signal aborts', async () => {
    await emulator.client.setLatency(1_500);
    try {
      const fresh = new GeminiProvider({ apiKeys: ['key-one'], baseUrl: emulator.url, apiVersion: 'v1beta', timeoutMs: 5_000 });
      const probe = fresh.generate(ask('the probe'));
      const controller = new AbortController();
      const waiting = failure(fresh.generate(ask('waits for the probe'), { signal: controller.signal }));
      await waitFor(async () => (await emulator.client.counters()).totalCalls === 1, { what: 'the probe call' });
      const aborted = Date.now();
      controller.abort('worker-shutdown');
      expect(await waiting).toMatchObject({ notSent: true });
      expect(Date.now() - aborted).toBeLessThan(100);
      await probe;
      expect((await emulator.client.counters()).totalCalls).toBe(1);
    } finally {
      await emulator.client.setLatency(0);
    }
  });
});
