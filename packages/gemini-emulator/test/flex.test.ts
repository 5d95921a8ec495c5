// The Flex tier through @google/genai 2.32.0 (`config.serviceTier`, sent as a top-level
// "serviceTier": "flex") and raw JSON (`service_tier`). Real clock: latency is measured.

import { ApiError, GoogleGenAI, ServiceTier } from '@google/genai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createEmulator, EmulatorClient, type Emulator } from '../src/index.js';
import { KEY } from './helpers.js';

const MODEL = 'gemini-2.5-flash';

let emu: Emulator;
let url: string;
let client: EmulatorClient;
let ai: GoogleGenAI;

beforeEach(async () => {
  emu = createEmulator();
  url = await emu.listen(0);
  client = new EmulatorClient(url);
  ai = new GoogleGenAI({ apiKey: KEY, httpOptions: { baseUrl: url } });
});

afterEach(() => emu.close());

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  const value = await fn();
  return { value, ms: performance.now() - start };
}

async function raw(body: Record<string, unknown>): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}/v1beta/models/${MODEL}:generateContent`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-goog-api-key': KEY },
    body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }], ...body }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

describe('Flex tier', () => {
  it('the SDK sends serviceTier: flex; Flex has its own latency; standard calls are unaffected', async () => {
    await client.setFlex({ latencyMs: 400 });
    const flex = await timed(() => ai.models.generateContent({ model: MODEL, contents: 'hi', config: { serviceTier: ServiceTier.FLEX } }));
    expect(flex.ms).toBeGreaterThanOrEqual(390);
    expect(flex.value.text).toMatch(/^Emulated/);
    // The Gemini API records the tier in usageMetadata.serviceTier (a field the SDK's UsageMetadata type declares).
    expect((flex.value.usageMetadata as Record<string, unknown>).serviceTier).toBe('flex');

    const standard = await timed(() => ai.models.generateContent({ model: MODEL, contents: 'hi' }));
    expect(standard.ms).toBeLessThan(300);
    expect((standard.value.usageMetadata as Record<string, unknown>).serviceTier).toBeUndefined();

    expect((await client.counters()).byTier).toEqual({ flex: { calls: 1, served: 1, shed: 0 }, standard: { calls: 1, served: 1, shed: 0 } });
  });

  it('shedProbability 1 sheds every Flex call with 503 UNAVAILABLE, and standard still serves', async () => {
    await client.setFlex({ shedProbability: 1 });
    const err = await ai.models.generateContent({ model: MODEL, contents: 'hi', config: { serviceTier: ServiceTier.FLEX } }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(503);
    expect(JSON.parse((err as ApiError).message)).toMatchObject({ error: { code: 503, status: 'UNAVAILABLE' } });
    expect((await ai.models.generateContent({ model: MODEL, contents: 'hi' })).text).toMatch(/^Emulated/);
    expect((await client.counters()).byTier.flex).toEqual({ calls: 1, served: 0, shed: 1 });
    // A shed call consumes no quota.
    expect((await client.quotaUsage())[MODEL]?.window.requests).toBe(1);
  });

  it('over maxConcurrent Flex calls in flight, the next one is shed', async () => {
    await client.setFlex({ latencyMs: 300, maxConcurrent: 1 });
    const results = await Promise.allSettled([raw({ serviceTier: 'flex' }), new Promise((r) => setTimeout(r, 50)).then(() => raw({ service_tier: 'FLEX' }))]);
    const statuses = results.map((r) => (r.status === 'fulfilled' ? r.value.status : 0));
    expect(statuses).toEqual([200, 503]);
    expect((await raw({ serviceTier: 'flex' })).status).toBe(200);
  });

  it('raw JSON: service_tier and upper case are accepted, a named standard tier is echoed, a bad tier is 400', async () => {
    const snake = await raw({ service_tier: 'FLEX' });
    expect(snake.status).toBe(200);
    expect((snake.json.usageMetadata as Record<string, unknown>).serviceTier).toBe('flex');
    const std = await raw({ serviceTier: 'standard' });
    expect((std.json.usageMetadata as Record<string, unknown>).serviceTier).toBe('standard');
    const bad = await raw({ serviceTier: 'cheap' });
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.json)).toMatch(/service_tier/);
  });

  it('flex settings are validated and reported whole', async () => {
    expect(await client.setFlex({ latencyMs: 60_000, jitterMs: 1000 })).toEqual({ latencyMs: 60_000, jitterMs: 1000, shedProbability: 0, maxConcurrent: null });
    await expect(client.setFlex({ shedProbability: 2 })).rejects.toThrow(/shedProbability/);
    expect((await client.getFlex()).latencyMs).toBe(60_000);
  });
});
