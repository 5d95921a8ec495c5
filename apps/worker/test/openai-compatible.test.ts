import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startEmulatorProcess, textTokens, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { isProviderError } from '@prompt-queue/shared';
import { freePort } from '@prompt-queue/shared/testing';
import { classifyOpenAIError, OpenAICompatibleProvider, toOpenAIUsage } from '../src/providers/openai/openai-compatible.js';
import type { GenerateRequest } from '../src/providers/provider.js';

const MODEL = 'gpt-4o-mini';
const KEY = 'sk-emulator-test-key-0123456789';
/** A 1×1 PNG. */
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

const ask = (text: string, extra: Partial<GenerateRequest> = {}): GenerateRequest => ({
  model: MODEL,
  contents: [{ role: 'user', parts: [{ text }] }],
  ...extra,
});

async function failure(promise: Promise<unknown>) {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!isProviderError(error)) throw new Error(`expected a ProviderError, got ${String(error)}`);
  return error;
}

describe('OpenAICompatibleProvider against the emulator', () => {
  let emulator: EmulatorProcess;
  let provider: OpenAICompatibleProvider;
  /** Bodies and headers of the requests the provider sent, recorded around the real fetch. */
  let sent: { url: string; body: Record<string, unknown>; headers: Headers }[];

  const make = (overrides: Partial<ConstructorParameters<typeof OpenAICompatibleProvider>[0]> = {}) =>
    new OpenAICompatibleProvider({
      name: 'openai',
      baseUrl: `${emulator.url}/v1/`,
      apiKey: KEY,
      timeoutMs: 5_000,
      fetch: async (input, init) => {
        sent.push({ url: String(input), body: JSON.parse(String(init?.body)) as Record<string, unknown>, headers: new Headers(init?.headers) });
        return fetch(input, init);
      },
      ...overrides,
    });

  beforeAll(async () => {
    emulator = await startEmulatorProcess({ apiKeys: [KEY] });
    provider = make();
  });
  afterAll(async () => {
    await emulator?.stop();
  });
  beforeEach(async () => {
    sent = [];
    await emulator.client.reset();
  });

  it('answers with text, finishReason and usage', async () => {
    const result = await provider.generate(ask('Hello'));
    expect(result.text).toMatch(/^Emulated answer from gpt-4o-mini: /);
    expect(result).toMatchObject({ finishReason: 'STOP', provider: 'openai', model: MODEL, modelVersion: MODEL });
    expect(result.usage).toEqual({
      inputTokens: textTokens('Hello'),
      outputTokens: textTokens(result.text),
      thoughtsTokens: 0,
      cachedTokens: 0,
      totalTokens: textTokens('Hello') + textTokens(result.text),
    });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.url).toBe(`${emulator.url}/v1/chat/completions`);
    expect(sent[0]!.headers.get('authorization')).toBe(`Bearer ${KEY}`);
    expect(sent[0]!.body).toEqual({ model: MODEL, messages: [{ role: 'user', content: 'Hello' }] });
    const counters = await emulator.client.counters();
    expect(counters.byModel[MODEL]?.successes).toBe(1);
  });

  it('uses the global fetch by default', async () => {
    const plain = new OpenAICompatibleProvider({ name: 'vllm', baseUrl: `${emulator.url}/v1`, apiKey: KEY, timeoutMs: 5_000 });
    await expect(plain.generate(ask('Hello'))).resolves.toMatchObject({ provider: 'vllm', finishReason: 'STOP' });
  });

  it('sends systemInstruction as a system message, model turns as assistant, and generationConfig', async () => {
    const request = ask('', {
      systemInstruction: 'Be brief.',
      contents: [
        { role: 'user', parts: [{ text: 'Hi ' }, { text: 'there' }] },
        { role: 'model', parts: [{ text: 'Hello!' }] },
        { role: 'user', parts: [{ text: 'Tell me more' }] },
      ],
      generationConfig: { temperature: 0.2, topP: 0.9, stopSequences: ['END'], seed: 7, maxOutputTokens: 500, topK: 3 },
    });
    const result = await provider.generate(request);
    expect(sent[0]!.body).toEqual({
      model: MODEL,
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: 'Hi there' },
        { role: 'assistant', content: 'Hello!' },
        { role: 'user', content: 'Tell me more' },
      ],
      max_tokens: 500,
      temperature: 0.2,
      top_p: 0.9,
      stop: ['END'],
      seed: 7,
    });
    // The emulator counted the system message too.
    const expected = ['Be brief.', 'Hi there', 'Hello!', 'Tell me more'].reduce((sum, text) => sum + textTokens(text), 0);
    expect(result.usage.inputTokens).toBe(expected);
  });

  it('maps inlineData images to image_url data-URL parts', async () => {
    const result = await provider.generate(
      ask('', { contents: [{ role: 'user', parts: [{ text: 'What is this?' }, { inlineData: { mimeType: 'image/png', data: PNG } }] }] }),
    );
    expect(sent[0]!.body.messages).toEqual([
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is this?' },
          { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } },
        ],
      },
    ]);
    expect(result.usage.inputTokens).toBe(textTokens('What is this?') + 258);
  });

  it('refuses parts it cannot translate without calling the server', async () => {
    const error = await failure(
      provider.generate(ask('', { contents: [{ role: 'user', parts: [{ fileData: { mimeType: 'video/mp4', fileUri: 'gs://bucket/v.mp4' } }] }] })),
    );
    expect(error).toMatchObject({ code: 'PROVIDER_BAD_REQUEST', disposition: 'fail' });
    expect(error.message).toMatch(/cannot take a video\/mp4 file reference$/);
    expect(error.message).not.toContain('gs://');
    const image = await failure(
      provider.generate(ask('', { contents: [{ role: 'user', parts: [{ fileData: { mimeType: 'image/jpeg', fileUri: 'gs://bucket/i.jpg' } }] }] })),
    );
    expect(image.message).toMatch(/cannot take an image\/jpeg file reference$/);
    expect(sent).toHaveLength(0);
  });

  it('max_tokens reached → MAX_TOKENS is a success', async () => {
    const result = await provider.generate(ask('Hello', { generationConfig: { maxOutputTokens: 3 } }));
    expect(result.finishReason).toBe('MAX_TOKENS');
    expect(result.usage.outputTokens).toBeLessThanOrEqual(3);
  });

  it('finish_reason content_filter → RESPONSE_BLOCKED', async () => {
    expect(await failure(provider.generate(ask('please [[safety]]')))).toMatchObject({ code: 'RESPONSE_BLOCKED', disposition: 'fail' });
  });

  it('a bad key → 401 PROVIDER_AUTH_FAILED, without the key in the message', async () => {
    const badKey = 'sk-wrong-key-9876543210';
    const error = await failure(make({ apiKey: badKey }).generate(ask('Secret prompt text')));
    expect(error).toMatchObject({ code: 'PROVIDER_AUTH_FAILED', disposition: 'fail', httpStatus: 401 });
    expect(error.message).toContain('401');
    expect(error.message).not.toContain(badKey);
    expect(error.message).not.toContain('Secret prompt text');
  });

  it('a 429 fault → rate-limit with retryAfterMs from the headers', async () => {
    await emulator.client.addFault({ kind: 'rateLimit', retryDelaySeconds: 7, count: 1 });
    const error = await failure(provider.generate(ask('Hello')));
    expect(error).toMatchObject({ code: 'PROVIDER_RATE_LIMITED', disposition: 'rate-limit', httpStatus: 429, retryAfterMs: 7_000 });
    expect(error.message).not.toContain('Hello');
    await expect(provider.generate(ask('Hello'))).resolves.toMatchObject({ finishReason: 'STOP' });
  });

  it.each([
    ['unavailable', 503, 'PROVIDER_UNAVAILABLE'],
    ['internal', 500, 'PROVIDER_UNAVAILABLE'],
    ['deadline', 504, 'PROVIDER_TIMEOUT'],
  ] as const)('a %s fault (%i) → %s with backoff', async (kind, status, code) => {
    await emulator.client.addFault({ kind, count: 1 });
    expect(await failure(provider.generate(ask('Hello')))).toMatchObject({ code, disposition: 'backoff', httpStatus: status });
  });

  it('a 400 → PROVIDER_BAD_REQUEST, fail (injected and from real validation)', async () => {
    await emulator.client.addFault({ kind: 'badRequest', count: 1 });
    expect(await failure(provider.generate(ask('Hello')))).toMatchObject({ code: 'PROVIDER_BAD_REQUEST', disposition: 'fail', httpStatus: 400 });
    const invalid = await failure(provider.generate(ask('Hello', { generationConfig: { temperature: 2.5 } })));
    expect(invalid).toMatchObject({ code: 'PROVIDER_BAD_REQUEST', disposition: 'fail' });
    expect(invalid.message).toContain('temperature');
  });

  it('a slow answer past timeoutMs → PROVIDER_TIMEOUT, backoff', async () => {
    await emulator.client.addFault({ kind: 'slow', delayMs: 5_000, count: 1 });
    const started = Date.now();
    const error = await failure(make({ timeoutMs: 150 }).generate(ask('Hello')));
    expect(error).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff' });
    expect(error.message).toContain('150 ms');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('sends nothing, and does not report a send, for a signal aborted already (a shutdown handing the job back)', async () => {
    let sends = 0;
    const error = await failure(provider.generate(ask('Hello'), { signal: AbortSignal.abort('worker-shutdown'), onSend: () => (sends += 1) }));
    expect(error).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff', notSent: true });
    expect(sent).toHaveLength(0);
    expect(sends).toBe(0);
  });

  it("the caller's signal aborts the call → PROVIDER_TIMEOUT, backoff", async () => {
    await emulator.client.addFault({ kind: 'slow', delayMs: 5_000, count: 1 });
    const error = await failure(provider.generate(ask('Hello'), { signal: AbortSignal.timeout(100) }));
    expect(error).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff' });
    expect(error.message).toContain('aborted');
  });

  it('nothing listening → PROVIDER_NETWORK_ERROR, backoff', async () => {
    const port = await freePort();
    const error = await failure(make({ baseUrl: `http://127.0.0.1:${port}/v1` }).generate(ask('Hello')));
    expect(error).toMatchObject({ code: 'PROVIDER_NETWORK_ERROR', disposition: 'backoff' });
    expect(error.message).toContain('ECONNREFUSED');
  });
});

describe('classifyOpenAIError', () => {
  const now = Date.parse('2026-01-01T00:00:00Z');

  it('reads retry-after-ms, retry-after seconds, an HTTP date, the message, else names none', () => {
    const ms = (headers: Record<string, string>, body: unknown = {}) => classifyOpenAIError(429, body, headers, { now }).retryAfterMs;
    expect(ms({ 'retry-after-ms': '1500', 'retry-after': '2' })).toBe(1_500);
    expect(ms({ 'Retry-After': '2' })).toBe(2_000);
    expect(ms({ 'retry-after': new Date(now + 30_000).toUTCString() })).toBe(30_000);
    expect(ms({}, { error: { message: 'Rate limit reached. Please try again in 1.25s.' } })).toBe(1_250);
    expect(ms({}, { error: { message: 'Please try again in 20ms.' } })).toBe(100); // at least 100 ms
    expect(ms({})).toBeUndefined();
    expect(classifyOpenAIError(429, {}, new Headers({ 'retry-after': '3' })).retryAfterMs).toBe(3_000);
  });

  it.each([
    [400, 'PROVIDER_BAD_REQUEST', 'fail'],
    [422, 'PROVIDER_BAD_REQUEST', 'fail'],
    [404, 'PROVIDER_MODEL_NOT_FOUND', 'fail'],
    [401, 'PROVIDER_AUTH_FAILED', 'fail'],
    [403, 'PROVIDER_AUTH_FAILED', 'fail'],
    [429, 'PROVIDER_RATE_LIMITED', 'rate-limit'],
    [500, 'PROVIDER_UNAVAILABLE', 'backoff'],
    [502, 'PROVIDER_UNAVAILABLE', 'backoff'],
    [503, 'PROVIDER_UNAVAILABLE', 'backoff'],
    [504, 'PROVIDER_TIMEOUT', 'backoff'],
  ] as const)('%i → %s (%s)', (status, code, disposition) => {
    expect(classifyOpenAIError(status, { error: { message: 'x' } }, {})).toMatchObject({ code, disposition, httpStatus: status });
  });

  it('reads Ollama and vLLM error shapes, masks keys and quoted input', () => {
    expect(classifyOpenAIError(404, { error: 'model "llama9" not found, try pulling it first' }, {}, { provider: 'ollama' }).message).toBe(
      'ollama answered 404: model "llama9" not found, try pulling it first',
    );
    const vllm = classifyOpenAIError(400, { object: 'error', message: "1 validation error [type=string_type, input_value='my secret prompt', input_type=int]", code: 400 }, {});
    expect(vllm.message).not.toContain('my secret prompt');
    const leaked = classifyOpenAIError(500, { error: { message: 'bad key sk-live-abcdefghijkl and mine-own-key' } }, {}, { apiKey: 'mine-own-key' });
    expect(leaked.message).not.toContain('sk-live-abcdefghijkl');
    expect(leaked.message).not.toContain('mine-own-key');
    expect(classifyOpenAIError(400, { error: { message: 'filtered', code: 'content_filter' } }, {})).toMatchObject({ code: 'PROMPT_BLOCKED', disposition: 'fail' });
  });
});

describe('toOpenAIUsage', () => {
  it('moves reasoning tokens out of the output count into thoughtsTokens, and reads cached tokens', () => {
    expect(
      toOpenAIUsage({
        prompt_tokens: 100,
        completion_tokens: 50,
        total_tokens: 150,
        prompt_tokens_details: { cached_tokens: 40 },
        completion_tokens_details: { reasoning_tokens: 30 },
      }),
    ).toEqual({ inputTokens: 100, outputTokens: 20, thoughtsTokens: 30, cachedTokens: 40, totalTokens: 150 });
    expect(toOpenAIUsage(undefined)).toEqual({ inputTokens: 0, outputTokens: 0, thoughtsTokens: 0, cachedTokens: 0, totalTokens: 0 });
  });
});
