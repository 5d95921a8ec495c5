import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EmulatorClient, keyFingerprint, maxInWindow, textTokens } from '../src/index.js';
import { KEY, startHarness, type Harness } from './helpers.js';

describe('maxInWindow', () => {
  it('finds the busiest sliding window exactly', () => {
    const entries = [
      { t: 0, tokens: 5 },
      { t: 30_000, tokens: 5 },
      { t: 59_999, tokens: 5 },
      { t: 60_000, tokens: 50 },
      { t: 200_000, tokens: 1 },
    ];
    // (0, 60000] holds 30000, 59999, 60000 -> 3 calls / 60 tokens; [0, 59999] also 3 calls.
    expect(maxInWindow(entries, 60_000)).toEqual({ calls: 3, tokens: 60 });
    expect(maxInWindow([], 60_000)).toEqual({ calls: 0, tokens: 0 });
  });
});

describe('counters over HTTP', () => {
  let h: Harness;
  let client: EmulatorClient;
  beforeAll(async () => {
    h = await startHarness({ apiKeys: [KEY, 'second-key'] });
    client = new EmulatorClient(h.url);
  });
  afterAll(() => h.close());

  it('count calls, outcomes, tokens, keys and windows', async () => {
    await client.reset();
    const model = h.model('gemini-3-flash-preview');
    const r1 = await model.generateContent('abcd');
    h.clock.advance(30_000);
    await model.generateContent('abcdefgh');
    h.clock.advance(40_000);
    await model.generateContent('abcd');
    await fetch(`${h.url}/v1beta/models/gemini-3-flash-preview:generateContent`, { method: 'POST', headers: { 'x-goog-api-key': 'bad-key' }, body: '{}' });
    await fetch(`${h.url}/v1beta/models/gemini-3-flash-preview:countTokens`, {
      method: 'POST',
      headers: { 'x-goog-api-key': 'second-key' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
    });

    const snap = await client.counters();
    expect(snap.totalCalls).toBe(5);
    const m = snap.byModel['gemini-3-flash-preview']!;
    const out = r1.response.usageMetadata!;
    expect(m).toMatchObject({ calls: 5, successes: 4, errors4xx: 1 });
    expect(m.inputTokens).toBe(textTokens('abcd') * 2 + textTokens('abcdefgh'));
    expect(m.byMethod).toEqual({ generateContent: 4, countTokens: 1 });
    expect(m.outputTokens).toBeGreaterThanOrEqual(3 * (out.candidatesTokenCount ?? 0));
    expect(m.byStatus).toEqual({ '200': 4, '400': 1 });
    const fp = (k: string): string => createHash('sha256').update(k).digest('hex').slice(0, 8);
    expect(snap.byKey).toEqual({ [fp(KEY)]: 3, [fp('bad-key')]: 1, [fp('second-key')]: 1 });
    expect(keyFingerprint(KEY)).toBe(fp(KEY));
    expect(JSON.stringify(snap)).not.toContain(KEY);
    // countTokens is not a quota-consuming call, so the window log holds the 3 generate calls.
    expect(snap.windows['gemini-3-flash-preview']).toEqual({
      windowMs: 60_000, acceptedCalls: 3, maxCallsInWindow: 2, maxInputTokensInWindow: 3, truncated: false,
    });
    const wide = await client.windows(120_000);
    expect(wide['gemini-3-flash-preview']).toMatchObject({ maxCallsInWindow: 3, maxInputTokensInWindow: 4 });

    await client.setLatency(5);
    await client.setQuotas({ 'gemini-2.5-flash': { rpm: 3 } });
    expect(h.emulator.getLatency()).toEqual({ ms: 5, jitterMs: 0 });
    expect(h.emulator.getQuotas()).toEqual({ 'gemini-2.5-flash': { rpm: 3 } });
    await client.setQuotas({ 'gemini-2.5-flash': null });
    await client.setLatency(0);
    expect(await client.healthz()).toBe(true);
    await client.reset();
    expect((await client.counters()).totalCalls).toBe(0);
  });
});
