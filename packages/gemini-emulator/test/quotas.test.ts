import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { QuotaManager, textTokens } from '../src/index.js';
import { detail, fetchError, FakeClock, startHarness, type Harness } from './helpers.js';

describe('QuotaManager (injected clock)', () => {
  it('RPM rolls: the call fits once the oldest leaves the 60 s window', () => {
    const clock = new FakeClock(0);
    const q = new QuotaManager(clock.now);
    q.setLimits({ m: { rpm: 2 } });
    expect(q.tryConsume('m', 1).ok).toBe(true);
    clock.advance(10_000);
    expect(q.tryConsume('m', 1).ok).toBe(true);
    clock.advance(5_000);
    const rejected = q.tryConsume('m', 1);
    expect(rejected).toEqual({ ok: false, kind: 'rpm', limit: 2, retryAfterMs: 45_000 });
    // Rejected calls consume nothing.
    expect(q.usage('m').requests).toBe(2);
    clock.advance(44_999);
    expect(q.tryConsume('m', 1).ok).toBe(false);
    clock.advance(1);
    expect(q.tryConsume('m', 1).ok).toBe(true);
  });

  it('TPM waits until enough tokens have left the window', () => {
    const clock = new FakeClock(0);
    const q = new QuotaManager(clock.now);
    q.setLimits({ m: { tpm: 100 } });
    expect(q.tryConsume('m', 60).ok).toBe(true);
    clock.advance(1_000);
    expect(q.tryConsume('m', 30).ok).toBe(true);
    clock.advance(1_000);
    // 90 used; 50 more needs the first (60) entry gone: at t=60000.
    expect(q.tryConsume('m', 50)).toEqual({ ok: false, kind: 'tpm', limit: 100, retryAfterMs: 58_000 });
    expect(q.tryConsume('m', 10).ok).toBe(true);
    // Larger than the whole limit: never fits; a full window is reported.
    expect(q.tryConsume('m', 101)).toMatchObject({ ok: false, kind: 'tpm', retryAfterMs: 60_000 });
  });

  it('models are independent and null removes a limit', () => {
    const q = new QuotaManager(() => 0);
    q.setLimits({ a: { rpm: 1 }, b: { rpm: 1 } });
    expect(q.tryConsume('a', 1).ok).toBe(true);
    expect(q.tryConsume('b', 1).ok).toBe(true);
    expect(q.tryConsume('a', 1).ok).toBe(false);
    q.setLimits({ a: null });
    expect(q.tryConsume('a', 1).ok).toBe(true);
    expect(q.getLimits()).toEqual({ b: { rpm: 1 } });
  });
});

describe('quota 429s through the SDK', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());
  beforeEach(() => h.emulator.reset());

  it('RPM: 429 with QuotaFailure and RetryInfo; the window frees after time passes', async () => {
    h.emulator.setQuotas({ 'gemini-3.6-flash': { rpm: 2 } });
    const model = h.model('gemini-3.6-flash');
    await model.generateContent('one');
    h.clock.advance(12_345);
    await model.generateContent('two');
    const err = await fetchError(() => model.generateContent('three'));
    expect(err.status).toBe(429);
    expect(err.message).toContain('You exceeded your current quota');
    expect(err.message).toContain('Please retry in 47.655000s.');
    expect(detail(err, 'QuotaFailure')).toEqual({
      '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
      violations: [
        {
          quotaMetric: 'generativelanguage.googleapis.com/generate_content_free_tier_requests',
          quotaId: 'GenerateRequestsPerMinutePerProjectPerModel',
          quotaDimensions: { location: 'global', model: 'gemini-3.6-flash' },
          quotaValue: '2',
        },
      ],
    });
    expect(detail(err, 'RetryInfo')?.retryDelay).toBe('48s');
    expect(detail(err, 'Help')).toBeDefined();
    // Other models are not affected.
    await h.model('gemini-2.5-flash').generateContent('elsewhere');
    h.clock.advance(47_655);
    const ok = await model.generateContent('three');
    expect(ok.response.text()).toContain('gemini-3.6-flash');
    const c = h.emulator.counters().byModel['gemini-3.6-flash']!;
    expect(c).toMatchObject({ calls: 4, successes: 3, rateLimited: 1, quota429: 1, injected429: 0 });
  });

  it('TPM: input tokens per window, and embedding calls use the embedding model quota', async () => {
    const prompt = 'x'.repeat(40); // 10 tokens
    h.emulator.setQuotas({ 'gemini-2.5-flash-lite': { tpm: 25 }, 'text-embedding-004': { rpm: 1 } });
    const model = h.model('gemini-2.5-flash-lite');
    await model.generateContent(prompt);
    await model.generateContent(prompt);
    const err = await fetchError(() => model.generateContent(prompt));
    expect(err.status).toBe(429);
    const violation = (detail(err, 'QuotaFailure')?.violations as Record<string, unknown>[])[0];
    expect(violation).toMatchObject({ quotaId: 'GenerateContentInputTokensPerModelPerMinute', quotaValue: '25' });
    expect(detail(err, 'RetryInfo')?.retryDelay).toBe('60s');
    // countTokens is free of quota.
    expect((await model.countTokens(prompt)).totalTokens).toBe(textTokens(prompt));

    const emb = h.model('text-embedding-004');
    await emb.embedContent('a');
    const embErr = await fetchError(() => emb.batchEmbedContents({ requests: [{ content: { role: 'user', parts: [{ text: 'b' }] } }] }));
    expect(embErr.status).toBe(429);
    expect((detail(embErr, 'QuotaFailure')?.violations as Record<string, unknown>[])[0]).toMatchObject({ quotaDimensions: { location: 'global', model: 'text-embedding-004' } });
    // Generative models are unaffected by the embedding model's quota.
    h.clock.advance(60_000);
    await model.generateContent(prompt);
  });
});
