import { GoogleGenerativeAIAbortError } from '@google/generative-ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FaultRegistry } from '../src/index.js';
import { detail, eventually, fetchError, FakeClock, startHarness, type Harness } from './helpers.js';

describe('FaultRegistry', () => {
  it('share is deterministic: 0.25 fires on every 4th matching call', () => {
    const r = new FaultRegistry(() => 0);
    r.add({ kind: 'unavailable', share: 0.25 });
    const fired = Array.from({ length: 12 }, () => r.match('m', 'generateContent') !== undefined);
    expect(fired.map((f) => (f ? 1 : 0)).join('')).toBe('000100010001');
  });

  it('count, durationMs, model and first-match-wins', () => {
    const clock = new FakeClock(0);
    const r = new FaultRegistry(clock.now);
    r.add({ kind: 'internal', model: 'a', count: 1 });
    r.add({ kind: 'unavailable', durationMs: 1000 });
    expect(r.match('a', 'x')?.kind).toBe('internal');
    expect(r.match('a', 'x')?.kind).toBe('unavailable');
    expect(r.match('b', 'x')?.kind).toBe('unavailable');
    clock.advance(1000);
    expect(r.match('a', 'x')).toBeUndefined();
    expect(r.list()).toEqual([]);
  });
});

describe('faults through the SDK', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(() => h.close());
  beforeEach(() => h.emulator.reset());

  it('503 for the next N calls, then success', async () => {
    h.emulator.addFault({ kind: 'unavailable', count: 2, model: 'gemini-2.5-flash' });
    const model = h.model('gemini-2.5-flash');
    for (let i = 0; i < 2; i++) {
      const err = await fetchError(() => model.generateContent('hi'));
      expect(err.status).toBe(503);
      expect(err.message).toContain('The model is overloaded. Please try again later.');
    }
    expect((await model.generateContent('hi')).response.text()).toContain('Emulated answer');
    expect(h.emulator.counters().byModel['gemini-2.5-flash']).toMatchObject({ calls: 3, successes: 1, errors5xx: 2, faultsInjected: 2 });
  });

  it('share 0.5 fails exactly every second call', async () => {
    h.emulator.addFault({ kind: 'internal', share: 0.5 });
    const model = h.model('gemini-3.5-flash-lite');
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) {
      try {
        await model.generateContent(`call ${i}`);
        statuses.push(200);
      } catch (e) {
        statuses.push((e as { status: number }).status);
      }
    }
    expect(statuses).toEqual([200, 500, 200, 500, 200, 500]);
  });

  it('rateLimit fault: 429 in quota shape with the given retry delay', async () => {
    h.emulator.addFault({ kind: 'rateLimit', retryDelaySeconds: 7, count: 1 });
    const err = await fetchError(() => h.model('gemini-2.5-pro').generateContent('hi'));
    expect(err.status).toBe(429);
    expect(detail(err, 'RetryInfo')?.retryDelay).toBe('7s');
    expect(detail(err, 'QuotaFailure')).toBeDefined();
    expect(h.emulator.counters().byModel['gemini-2.5-pro']).toMatchObject({ rateLimited: 1, injected429: 1, quota429: 0 });
  });

  it('deadline and badRequest faults', async () => {
    h.emulator.addFault({ kind: 'deadline', count: 1 });
    h.emulator.addFault({ kind: 'badRequest', count: 1 });
    expect((await fetchError(() => h.model('gemini-2.5-flash').generateContent('a'))).status).toBe(504);
    expect((await fetchError(() => h.model('gemini-2.5-flash').generateContent('b'))).status).toBe(400);
  });

  it('slow fault makes an SDK timeout abort, and the server drops the pending call', async () => {
    h.emulator.addFault({ kind: 'slow', delayMs: 60_000, count: 1 });
    const model = h.model('gemini-2.5-flash', { timeout: 100 });
    await expect(model.generateContent('slow please')).rejects.toBeInstanceOf(GoogleGenerativeAIAbortError);
    await eventually(() => h.emulator.counters().byModel['gemini-2.5-flash']?.aborted === 1);
    // The fault was used up, so the next call is fast.
    const fast = await h.model('gemini-2.5-flash').generateContent('fast');
    expect(fast.response.text()).toContain('Emulated answer');
  });

  it('faults can be managed over the control API', async () => {
    const { EmulatorClient } = await import('../src/index.js');
    const client = new EmulatorClient(h.url);
    const id = await client.addFault({ kind: 'unavailable' });
    expect((await client.listFaults()).map((f) => f.id)).toEqual([id]);
    expect((await fetchError(() => h.model('gemini-2.5-flash').generateContent('x'))).status).toBe(503);
    await client.removeFault(id);
    await h.model('gemini-2.5-flash').generateContent('x');
    await client.addFault({ kind: 'internal' });
    await client.clearFaults();
    expect(await client.listFaults()).toEqual([]);
    await expect(client.addFault({ kind: 'nope' } as never)).rejects.toThrow(/fault kind must be one of/);
  });
});
