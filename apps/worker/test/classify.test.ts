import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { GoogleGenerativeAI, GoogleGenerativeAIFetchError, type ErrorDetails, type RequestOptions } from '@google/generative-ai';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { freePort } from '@prompt-queue/shared/testing';
import type { ProviderError } from '@prompt-queue/shared';
import { classifyProviderError, retryDelayMs } from '../src/providers/gemini/classify.js';
import { MODEL } from './helpers.js';

const PROMPT = 'A prompt that must never appear in an error message: SECRET-PROMPT-42';

// Real SDK errors, produced by the real SDK talking HTTP to the emulator.
describe('classifyProviderError (real SDK errors from the emulator)', () => {
  let emulator: EmulatorProcess;

  beforeAll(async () => {
    emulator = await startEmulatorProcess();
  });
  afterAll(async () => {
    await emulator?.stop();
  });
  beforeEach(async () => {
    await emulator.client.reset();
  });

  /** Calls the SDK directly and returns what it threw. */
  async function sdkError(options: { key?: string; model?: string; requestOptions?: RequestOptions; baseUrl?: string } = {}): Promise<unknown> {
    const model = new GoogleGenerativeAI(options.key ?? emulator.apiKey).getGenerativeModel(
      { model: options.model ?? MODEL },
      { baseUrl: options.baseUrl ?? emulator.url, ...options.requestOptions },
    );
    try {
      await model.generateContent(PROMPT);
    } catch (error) {
      return error;
    }
    throw new Error('the call succeeded');
  }

  function expectClean(error: ProviderError, ...secrets: string[]): void {
    for (const secret of ['SECRET-PROMPT-42', ...secrets]) expect(error.message).not.toContain(secret);
  }

  it('400 → PROVIDER_BAD_REQUEST, fail now', async () => {
    await emulator.client.addFault({ kind: 'badRequest', count: 1 });
    const error = classifyProviderError(await sdkError());
    expect(error).toMatchObject({ code: 'PROVIDER_BAD_REQUEST', disposition: 'fail', httpStatus: 400 });
    expect(error.message).toMatch(/^Gemini answered 400 Bad Request: Request contains an invalid argument\.$/);
    expectClean(error);
  });

  it('400 API_KEY_INVALID → PROVIDER_AUTH_FAILED, and the key is not in the message', async () => {
    const key = 'AIzaSyWrongKeyWrongKeyWrongKeyWrongKey12';
    const raw = await sdkError({ key });
    expect(raw).toBeInstanceOf(GoogleGenerativeAIFetchError);
    const error = classifyProviderError(raw);
    expect(error).toMatchObject({ code: 'PROVIDER_AUTH_FAILED', disposition: 'fail', httpStatus: 400 });
    expect(error.message).toContain('API key not valid');
    expectClean(error, key);
  });

  it('403 (no key) → PROVIDER_AUTH_FAILED', async () => {
    const error = classifyProviderError(await sdkError({ key: '' }));
    expect(error).toMatchObject({ code: 'PROVIDER_AUTH_FAILED', disposition: 'fail', httpStatus: 403 });
  });

  it('404 → PROVIDER_MODEL_NOT_FOUND', async () => {
    const error = classifyProviderError(await sdkError({ model: 'gemini-0.1-nonexistent' }));
    expect(error).toMatchObject({ code: 'PROVIDER_MODEL_NOT_FOUND', disposition: 'fail', httpStatus: 404 });
    expect(error.message).toContain('models/gemini-0.1-nonexistent is not found');
  });

  it('429 → PROVIDER_RATE_LIMITED with RetryInfo.retryDelay', async () => {
    await emulator.client.addFault({ kind: 'rateLimit', count: 1, retryDelaySeconds: 26 });
    const error = classifyProviderError(await sdkError());
    expect(error).toMatchObject({ code: 'PROVIDER_RATE_LIMITED', disposition: 'rate-limit', httpStatus: 429, retryAfterMs: 26_000 });
    expect(error.message).toContain('You exceeded your current quota');
    expect(error.message).not.toContain('google.rpc');
    // An injected fault with no quota configured reports quotaValue "0": nothing to learn.
    expect(error.reportedQuota).toBeUndefined();
  });

  it('429 with a fractional retryDelay', async () => {
    await emulator.client.addFault({ kind: 'rateLimit', count: 1, retryDelaySeconds: 0.5 });
    expect(classifyProviderError(await sdkError()).retryAfterMs).toBe(500);
  });

  it('429 from a real quota window', async () => {
    await emulator.client.setQuotas({ [MODEL]: { rpm: 1, tpm: 1_000_000 } });
    try {
      const model = new GoogleGenerativeAI(emulator.apiKey).getGenerativeModel({ model: MODEL }, { baseUrl: emulator.url });
      await model.generateContent('first');
      const error = classifyProviderError(await sdkError());
      expect(error.code).toBe('PROVIDER_RATE_LIMITED');
      expect(error.retryAfterMs).toBeGreaterThan(50_000);
      expect(error.retryAfterMs).toBeLessThanOrEqual(60_000);
      // QuotaFailure: quotaId GenerateRequestsPerMinutePerProjectPerModel, quotaValue "1".
      expect(error.reportedQuota).toEqual({ dimension: 'rpm', limit: 1 });
    } finally {
      await emulator.client.setQuotas({ [MODEL]: null });
    }
  });

  it('429 from a token quota reports the TPM limit', async () => {
    await emulator.client.setQuotas({ [MODEL]: { rpm: 1000, tpm: 5 } });
    try {
      const error = classifyProviderError(await sdkError());
      expect(error).toMatchObject({ code: 'PROVIDER_RATE_LIMITED', reportedQuota: { dimension: 'tpm', limit: 5 } });
    } finally {
      await emulator.client.setQuotas({ [MODEL]: null });
    }
  });

  it('429 from an injected fault under a configured RPM reports it', async () => {
    await emulator.client.setQuotas({ [MODEL]: { rpm: 120, tpm: 1_000_000 } });
    try {
      await emulator.client.addFault({ kind: 'rateLimit', count: 1, retryDelaySeconds: 1 });
      expect(classifyProviderError(await sdkError()).reportedQuota).toEqual({ dimension: 'rpm', limit: 120 });
    } finally {
      await emulator.client.setQuotas({ [MODEL]: null });
    }
  });

  it.each([
    ['unavailable', 503, 'PROVIDER_UNAVAILABLE'],
    ['internal', 500, 'PROVIDER_UNAVAILABLE'],
    ['deadline', 504, 'PROVIDER_TIMEOUT'],
  ] as const)('%s (%i) → %s, back off', async (kind, status, code) => {
    await emulator.client.addFault({ kind, count: 1 });
    const error = classifyProviderError(await sdkError());
    expect(error).toMatchObject({ code, disposition: 'backoff', httpStatus: status });
  });

  it('SDK timeout (GoogleGenerativeAIAbortError) → PROVIDER_TIMEOUT, back off', async () => {
    await emulator.client.addFault({ kind: 'slow', count: 1, delayMs: 2_000 });
    const raw = await sdkError({ requestOptions: { timeout: 100 } });
    expect((raw as Error).constructor.name).toBe('GoogleGenerativeAIAbortError');
    expect(classifyProviderError(raw)).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff' });
  });

  it('connection refused → PROVIDER_NETWORK_ERROR, back off', async () => {
    const port = await freePort();
    const error = classifyProviderError(await sdkError({ baseUrl: `http://127.0.0.1:${port}` }));
    expect(error).toMatchObject({ code: 'PROVIDER_NETWORK_ERROR', disposition: 'backoff' });
    expect(error.message).toMatch(/^Cannot reach Gemini: /);
  });
});

describe('classifyProviderError (edge cases)', () => {
  const fetchError = (status: number, message: string, details?: ErrorDetails[]) =>
    new GoogleGenerativeAIFetchError(`Error fetching from http://x/v1beta/models/m:generateContent: [${status} Too Many Requests] ${message}`, status, 'Too Many Requests', details);

  it('reads "Please retry in …s." when there is no RetryInfo', () => {
    expect(classifyProviderError(fetchError(429, 'Quota exceeded. Please retry in 47.17s.')).retryAfterMs).toBe(47_170);
  });

  it('names no delay when the 429 names none (the call chain backs off)', () => {
    expect(classifyProviderError(fetchError(429, 'Resource exhausted.')).retryAfterMs).toBeUndefined();
  });

  it('never asks for a zero-length pause', () => {
    const details = [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '0s' }];
    expect(classifyProviderError(fetchError(429, 'x', details)).retryAfterMs).toBe(100);
  });

  it('reads the limit from QuotaFailure: a per-day quota first, else the first usable per-minute one', () => {
    const quotaFailure = (...violations: Record<string, unknown>[]) => [{ '@type': 'type.googleapis.com/google.rpc.QuotaFailure', violations }];
    const read = (details: unknown[]) => classifyProviderError(fetchError(429, 'x', details as ErrorDetails[])).reportedQuota;
    const tokensPerMinute = { quotaId: 'GenerateContentInputTokensPerModelPerMinute-FreeTier', quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_input_token_count', quotaValue: '250000' };
    const perDay = { quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier', quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests', quotaValue: '250' };
    // The daily quota outlasts any minute: it decides, wherever it is listed.
    expect(read(quotaFailure(tokensPerMinute, perDay))).toEqual({ dimension: 'rpd', limit: 250 });
    expect(read(quotaFailure({ quotaId: 'GenerateRequestsPerDayPerProjectPerModel' }))).toEqual({ dimension: 'rpd', limit: 0 });
    expect(read(quotaFailure(
      { quotaId: 'GenerateRequestsPerHourPerProjectPerModel', quotaValue: '250' },
      { quotaId: 'GenerateContentInputTokensPerModelPerMinute-FreeTier', quotaValue: 'many' },
      { quotaId: 'GenerateContentInputTokensPerModelPerMinute-FreeTier', quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_input_token_count', quotaValue: '250000' },
    ))).toEqual({ dimension: 'tpm', limit: 250_000 });
    expect(read(quotaFailure({ quotaMetric: 'generativelanguage.googleapis.com/generate_content_paid_tier_requests', quotaValue: 2000 })))
      .toEqual({ dimension: 'rpm', limit: 2000 });
    expect(read(quotaFailure({ quotaId: 'Something', quotaValue: '5' }))).toBeUndefined();
    expect(read(quotaFailure({ quotaId: 'GenerateRequestsPerMinutePerProjectPerModel', quotaValue: '0' }))).toBeUndefined();
    expect(read(quotaFailure({ quotaId: 'GenerateRequestsPerMinutePerProjectPerModel', quotaValue: '1.5' }))).toBeUndefined();
    expect(read([])).toBeUndefined();
    expect(classifyProviderError(fetchError(503, 'x', quotaFailure({ quotaId: 'GenerateRequestsPerMinute', quotaValue: '5' }) as ErrorDetails[])).reportedQuota)
      .toBeUndefined();
  });

  it('parses Duration strings and objects', () => {
    const info = (retryDelay: unknown) => [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay }];
    expect(retryDelayMs(info('26s'), '')).toBe(26_000);
    expect(retryDelayMs(info('0.25s'), '')).toBe(250);
    expect(retryDelayMs(info({ seconds: 2, nanos: 500_000_000 }), '')).toBe(2_500);
    expect(retryDelayMs([], 'Please retry in 1.5s.')).toBe(1_500);
    expect(retryDelayMs([], 'nothing')).toBeUndefined();
  });

  it('other 4xx fail, other 5xx back off', () => {
    expect(classifyProviderError(fetchError(413, 'too large'))).toMatchObject({ code: 'PROVIDER_BAD_REQUEST', disposition: 'fail' });
    expect(classifyProviderError(fetchError(502, 'bad gateway'))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', disposition: 'backoff' });
  });

  it('an unknown error is INTERNAL and retryable', () => {
    expect(classifyProviderError(new TypeError('x is not a function'))).toMatchObject({ code: 'INTERNAL', disposition: 'backoff' });
  });

  it('a plain AbortError (body read aborted) is a timeout', () => {
    const abort = new DOMException('This operation was aborted', 'AbortError');
    expect(classifyProviderError(abort)).toMatchObject({ code: 'PROVIDER_TIMEOUT', disposition: 'backoff' });
  });
});
