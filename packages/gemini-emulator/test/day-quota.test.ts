import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { EmulatorClient, nextPacificMidnight, pacificDate, parseQuotaConfig, QuotaManager, readConfig } from '../src/index.js';
import { detail, fetchError, FakeClock, KEY, startHarness, type Harness } from './helpers.js';

const at = (iso: string): number => Date.parse(iso);

describe('nextPacificMidnight', () => {
  it('PST is UTC-8 and PDT is UTC-7', () => {
    expect(nextPacificMidnight(at('2026-01-15T20:00:00.250Z'))).toBe(at('2026-01-16T08:00:00Z'));
    expect(nextPacificMidnight(at('2026-07-15T20:00:00Z'))).toBe(at('2026-07-16T07:00:00Z'));
  });

  it('across the DST switches (2026-03-08 and 2026-11-01)', () => {
    // 23:30 PST the night before clocks spring forward.
    expect(nextPacificMidnight(at('2026-03-08T07:30:00Z'))).toBe(at('2026-03-08T08:00:00Z'));
    // Noon PDT on the 23-hour day: the next midnight is PDT.
    expect(nextPacificMidnight(at('2026-03-08T19:00:00Z'))).toBe(at('2026-03-09T07:00:00Z'));
    // One second before midnight PDT.
    expect(nextPacificMidnight(at('2026-11-01T06:59:59Z'))).toBe(at('2026-11-01T07:00:00Z'));
    // 04:00 PST on the 25-hour day: 28 hours until midnight PST.
    expect(nextPacificMidnight(at('2026-11-01T12:00:00Z'))).toBe(at('2026-11-02T08:00:00Z'));
  });

  it('at midnight exactly the next day has begun; year ends roll over', () => {
    expect(nextPacificMidnight(at('2026-01-16T08:00:00Z'))).toBe(at('2026-01-17T08:00:00Z'));
    expect(nextPacificMidnight(at('2026-12-31T20:00:00Z'))).toBe(at('2027-01-01T08:00:00Z'));
    expect(pacificDate(at('2026-01-16T07:59:59.999Z'))).toBe('2026-01-15');
    expect(pacificDate(at('2026-01-16T08:00:00Z'))).toBe('2026-01-16');
  });
});

describe('QuotaManager rpd (injected clock)', () => {
  it('counts a Pacific day; rejected calls consume nothing; midnight starts a new day', () => {
    const clock = new FakeClock(at('2026-01-15T20:00:00Z'));
    const q = new QuotaManager(clock.now);
    q.setLimits({ m: { rpd: 2 } });
    expect(q.tryConsume('m', 1).ok).toBe(true);
    clock.advance(3 * 3_600_000);
    expect(q.tryConsume('m', 1).ok).toBe(true);
    expect(q.tryConsume('m', 1)).toEqual({ ok: false, kind: 'rpd', limit: 2, retryAfterMs: 9 * 3_600_000 });
    expect(q.dayUsage('m')).toEqual({ date: '2026-01-15', requests: 2, resetsAt: at('2026-01-16T08:00:00Z') });
    clock.t = at('2026-01-16T07:59:59.999Z');
    expect(q.tryConsume('m', 1)).toMatchObject({ ok: false, retryAfterMs: 1 });
    clock.advance(1);
    expect(q.tryConsume('m', 1).ok).toBe(true);
    expect(q.dayUsage('m')).toEqual({ date: '2026-01-16', requests: 1, resetsAt: at('2026-01-17T08:00:00Z') });
  });

  it('rpd is checked before rpm, and a call rejected by rpm does not count for the day', () => {
    const clock = new FakeClock(at('2026-07-15T20:00:00Z'));
    const q = new QuotaManager(clock.now);
    q.setLimits({ m: { rpm: 1, rpd: 3 } });
    expect(q.tryConsume('m', 1).ok).toBe(true);
    expect(q.tryConsume('m', 1)).toMatchObject({ ok: false, kind: 'rpm' });
    expect(q.dayUsage('m').requests).toBe(1);
    clock.advance(60_000);
    expect(q.tryConsume('m', 1).ok).toBe(true);
    clock.advance(60_000);
    expect(q.tryConsume('m', 1).ok).toBe(true);
    // Both limits are now exhausted; the day is reported.
    expect(q.tryConsume('m', 1)).toMatchObject({ ok: false, kind: 'rpd', limit: 3 });
    q.reset();
    expect(q.dayUsage('m').requests).toBe(0);
    expect(q.tryConsume('m', 1).ok).toBe(true);
  });

  it('parseQuotaConfig accepts rpd and rejects bad values', () => {
    expect(parseQuotaConfig({ m: { rpm: 1, tpm: 2, rpd: 3 } }, false)).toEqual({ m: { rpm: 1, tpm: 2, rpd: 3 } });
    expect(() => parseQuotaConfig({ m: { rpd: 0 } }, false)).toThrow('quota m.rpd must be a positive integer');
    expect(() => parseQuotaConfig({ m: { rph: 1 } }, false)).toThrow('(use rpm, tpm, rpd)');
    expect(readConfig({ EMULATOR_QUOTAS: '{"gemini-2.5-flash":{"rpd":500}}' }).quotas).toEqual({ 'gemini-2.5-flash': { rpd: 500 } });
  });
});

describe('per-day 429s through the SDK', () => {
  let h: Harness;
  let client: EmulatorClient;
  beforeAll(async () => {
    h = await startHarness();
    client = new EmulatorClient(h.url);
  });
  afterAll(() => h.close());
  beforeEach(async () => {
    await client.reset();
    await client.setQuotas({ 'gemini-3.6-flash': null, 'gemini-embedding-001': null, 'gemini-2.5-flash': null });
  });

  async function exhaust(model: string, calls: number): Promise<Awaited<ReturnType<typeof fetchError>>> {
    const m = h.model(model);
    for (let i = 0; i < calls; i++) await m.generateContent(`call ${i}`);
    return fetchError(() => m.generateContent('one too many'));
  }

  it('PST: N calls, then 429 with the PerDay quotaId, quotaValue and seconds until Pacific midnight', async () => {
    h.clock.t = at('2026-01-15T20:00:00.250Z'); // 12:00:00.250 PST
    await client.setQuotas({ 'gemini-3.6-flash': { rpd: 3 } });
    const err = await exhaust('gemini-3.6-flash', 3);
    expect(err.status).toBe(429);
    expect(err.message).toContain('You exceeded your current quota');
    expect(err.message).toContain('Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_requests_per_day, limit: 3, model: gemini-3.6-flash');
    expect(err.message).toContain('Please retry in 43199.750000s.');
    expect(detail(err, 'QuotaFailure')).toEqual({
      '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
      violations: [
        {
          quotaMetric: 'generativelanguage.googleapis.com/generate_content_requests_per_day',
          quotaId: 'GenerateRequestsPerDayPerProjectPerModel',
          quotaDimensions: { location: 'global', model: 'gemini-3.6-flash' },
          quotaValue: '3',
        },
      ],
    });
    expect(detail(err, 'RetryInfo')?.retryDelay).toBe('43200s');
    expect(detail(err, 'Help')).toBeDefined();
  });

  it('PDT: the retry delay follows daylight time', async () => {
    h.clock.t = at('2026-07-15T20:00:00Z'); // 13:00 PDT
    await client.setQuotas({ 'gemini-3.6-flash': { rpd: 1 } });
    const err = await exhaust('gemini-3.6-flash', 1);
    expect(detail(err, 'RetryInfo')?.retryDelay).toBe('39600s');
    expect(err.message).toContain('Please retry in 39600.000000s.');
  });

  it('rejected calls consume nothing; counters, usage and reset; midnight lets calls through', async () => {
    h.clock.t = at('2026-03-08T07:30:00Z'); // 23:30 PST, the night before DST starts
    await client.setQuotas({ 'gemini-3.6-flash': { rpd: 2, tpm: 1000 } });
    const err = await exhaust('gemini-3.6-flash', 2);
    expect(detail(err, 'RetryInfo')?.retryDelay).toBe('1800s');
    await fetchError(() => h.model('gemini-3.6-flash').generateContent('and another'));
    const usage = (await client.quotaUsage())['gemini-3.6-flash'];
    expect(usage?.limits).toEqual({ rpd: 2, tpm: 1000 });
    expect(usage?.day).toEqual({ date: '2026-03-07', requests: 2, resetsAt: at('2026-03-08T08:00:00Z') });
    expect(usage?.window).toMatchObject({ windowMs: 60_000, requests: 2 });
    const c = (await client.counters()).byModel['gemini-3.6-flash'];
    expect(c).toMatchObject({ calls: 4, successes: 2, rateLimited: 2, quota429: 2, injected429: 0 });
    expect(c?.inputTokens).toBe((usage?.window.inputTokens ?? -1));
    // countTokens is free, per day as per minute.
    await h.model('gemini-3.6-flash').countTokens('free');
    expect((await client.quotaUsage())['gemini-3.6-flash']?.day.requests).toBe(2);

    // Pacific midnight: a new day.
    h.clock.t = at('2026-03-08T08:00:00Z');
    await h.model('gemini-3.6-flash').generateContent('new day');
    expect((await client.quotaUsage())['gemini-3.6-flash']?.day).toEqual({ date: '2026-03-08', requests: 1, resetsAt: at('2026-03-09T07:00:00Z') });

    // reset clears day counts (limits stay).
    await h.model('gemini-3.6-flash').generateContent('second');
    await fetchError(() => h.model('gemini-3.6-flash').generateContent('third'));
    await client.reset();
    expect((await client.quotaUsage())['gemini-3.6-flash']?.day.requests).toBe(0);
    await h.model('gemini-3.6-flash').generateContent('after reset');
    expect(h.emulator.getQuotas()).toEqual({ 'gemini-3.6-flash': { rpd: 2, tpm: 1000 } });
  });

  it('rpd is checked before rpm: with both exhausted the 429 names the day', async () => {
    h.clock.t = at('2026-07-15T20:00:00Z');
    await client.setQuotas({ 'gemini-2.5-flash': { rpm: 1, rpd: 1 } });
    const err = await exhaust('gemini-2.5-flash', 1);
    expect((detail(err, 'QuotaFailure')?.violations as Record<string, unknown>[])[0]?.quotaId).toBe('GenerateRequestsPerDayPerProjectPerModel');
  });

  it('embedding models report the EmbedContent per-day quota', async () => {
    h.clock.t = at('2026-01-15T20:00:00Z');
    await client.setQuotas({ 'gemini-embedding-001': { rpd: 1 } });
    const model = h.model('gemini-embedding-001');
    await model.embedContent('a');
    const err = await fetchError(() => model.batchEmbedContents({ requests: [{ content: { role: 'user', parts: [{ text: 'b' }] } }] }));
    expect(err.status).toBe(429);
    expect((detail(err, 'QuotaFailure')?.violations as Record<string, unknown>[])[0]).toEqual({
      quotaMetric: 'generativelanguage.googleapis.com/embed_content_requests_per_day',
      quotaId: 'EmbedContentRequestsPerDayPerProjectPerModel',
      quotaDimensions: { location: 'global', model: 'gemini-embedding-001' },
      quotaValue: '1',
    });
    expect(detail(err, 'RetryInfo')?.retryDelay).toBe('43200s');
  });

  it('the OpenAI route answers its own 429 shape with retry-after until midnight', async () => {
    h.clock.t = at('2026-01-15T20:00:00Z');
    await client.setQuotas({ 'gemini-2.5-flash': { rpd: 1 } });
    const chat = (): Promise<Response> =>
      fetch(`${h.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ model: 'gemini-2.5-flash', messages: [{ role: 'user', content: 'hi' }] }),
      });
    expect((await chat()).status).toBe(200);
    const res = await chat();
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('43200');
    const body = (await res.json()) as { error: { message: string; type: string; code: string } };
    expect(body.error).toMatchObject({ type: 'requests', code: 'rate_limit_exceeded' });
    expect(body.error.message).toContain('requests per day (RPD): Limit 1');
  });
});
