// The Batch API through @google/genai 2.32.0 (Gemini API mode) over HTTP. The emulator's
// clock is a FakeClock, so batch states move only when the test says so.

import { ApiError, GoogleGenAI, type InlinedRequest } from '@google/genai';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createEmulator, EmulatorClient, textTokens, type Emulator } from '../src/index.js';
import { FakeClock, KEY } from './helpers.js';

const MODEL = 'gemini-2.5-flash';

/** Inlined responses come back as plain objects in 2.32.0 (no `.text` getter). */
function textOf(response: { candidates?: { content?: { parts?: { text?: string }[] } }[] } | undefined): string | undefined {
  return response?.candidates?.[0]?.content?.parts?.map((p) => p.text ?? '').join('');
}

let emu: Emulator;
let url: string;
let clock: FakeClock;
let client: EmulatorClient;
let ai: GoogleGenAI;

beforeEach(async () => {
  clock = new FakeClock();
  emu = createEmulator({ now: clock.now, batch: { pendingMs: 100, completeAfterMs: 1000 } });
  url = await emu.listen(0);
  client = new EmulatorClient(url);
  ai = new GoogleGenAI({ apiKey: KEY, httpOptions: { baseUrl: url } });
});

afterEach(() => emu.close());

function requests(n: number): InlinedRequest[] {
  return Array.from({ length: n }, (_, i) => ({ contents: [{ role: 'user', parts: [{ text: `prompt number ${i}` }] }], metadata: { key: `job-${i}` } }));
}

describe('Batch API through @google/genai 2.32.0', () => {
  it('create -> PENDING -> RUNNING -> SUCCEEDED with one response per request, in order, with metadata keys', async () => {
    const created = await ai.batches.create({ model: MODEL, src: requests(3), config: { displayName: 'nightly' } });
    expect(created.name).toMatch(/^batches\/\w+$/);
    expect(created.state).toBe('JOB_STATE_PENDING');
    expect(created.displayName).toBe('nightly');
    expect(created.model).toBe(`models/${MODEL}`);

    clock.advance(100);
    expect((await ai.batches.get({ name: created.name! })).state).toBe('JOB_STATE_RUNNING');
    clock.advance(900);
    const done = await ai.batches.get({ name: created.name! });
    expect(done.state).toBe('JOB_STATE_SUCCEEDED');
    expect(done.endTime).toBe(new Date(clock.t).toISOString());
    const inlined = done.dest?.inlinedResponses ?? [];
    expect(inlined.map((r) => (r.metadata as { key: string }).key)).toEqual(['job-0', 'job-1', 'job-2']);
    for (let i = 0; i < 3; i++) {
      const response = inlined[i]?.response;
      expect(textOf(response)).toMatch(/^Emulated answer from gemini-2\.5-flash/);
      // The same tokenizer as generateContent.
      expect(response?.usageMetadata?.promptTokenCount).toBe(textTokens(`prompt number ${i}`));
    }
    // The same request through generateContent gives the same answer.
    const direct = await ai.models.generateContent({ model: MODEL, contents: [{ role: 'user', parts: [{ text: 'prompt number 1' }] }] });
    expect(textOf(inlined[1]?.response)).toBe(direct.text);

    const counters = await client.counters();
    expect(counters.batches).toMatchObject({ created: 1, requests: 3, failedRequests: 0 });
    expect(counters.batches.inputTokens).toBe([0, 1, 2].reduce((s, i) => s + textTokens(`prompt number ${i}`), 0));
  });

  it('the raw wire shape: an Operation whose metadata carries BATCH_STATE_*, string batchStats and the output', async () => {
    const created = await ai.batches.create({ model: MODEL, src: requests(2) });
    clock.advance(1000);
    const res = await fetch(`${url}/v1beta/${created.name}`, { headers: { 'x-goog-api-key': KEY } });
    const op = (await res.json()) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    expect(op).toMatchObject({
      name: created.name,
      done: true,
      metadata: {
        '@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch',
        state: 'BATCH_STATE_SUCCEEDED',
        batchStats: { requestCount: '2', successfulRequestCount: '2' },
      },
    });
    expect(op.metadata.output.inlinedResponses.inlinedResponses).toHaveLength(2);
    expect(op.response.inlinedResponses.inlinedResponses[0].metadata).toEqual({ key: 'job-0' });
  });

  it('every k-th request fails with the configured error; the others succeed', async () => {
    await client.setBatchConfig({ requestErrorEvery: 2, requestError: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'Quota exceeded.' } });
    const created = await ai.batches.create({ model: MODEL, src: requests(5) });
    clock.advance(1000);
    const done = await ai.batches.get({ name: created.name! });
    const inlined = done.dest?.inlinedResponses ?? [];
    expect(inlined.map((r) => (r.error ? 'error' : 'ok'))).toEqual(['ok', 'error', 'ok', 'error', 'ok']);
    expect(inlined[1]?.error).toMatchObject({ code: 429, message: 'Quota exceeded.' });
    expect((await client.counters()).batches.failedRequests).toBe(2);
  });

  it('a request the model would refuse is a per-request error, not a failed batch', async () => {
    const created = await ai.batches.create({
      model: 'gemini-2.5-pro',
      src: [{ contents: 'fine' }, { contents: 'no thinking', config: { thinkingConfig: { thinkingBudget: 0 } } }],
    });
    clock.advance(1000);
    const inlined = (await ai.batches.get({ name: created.name! })).dest?.inlinedResponses ?? [];
    expect(textOf(inlined[0]?.response)).toMatch(/^Emulated/);
    expect(inlined[1]?.error).toMatchObject({ code: 400, message: expect.stringMatching(/thinking mode/) });
  });

  it('cancel, delete and list', async () => {
    const a = await ai.batches.create({ model: MODEL, src: requests(1), config: { displayName: 'a' } });
    clock.advance(1);
    const b = await ai.batches.create({ model: MODEL, src: requests(2), config: { displayName: 'b' } });
    await ai.batches.cancel({ name: a.name! });
    expect((await ai.batches.get({ name: a.name! })).state).toBe('JOB_STATE_CANCELLED');
    clock.advance(5000);
    expect((await ai.batches.get({ name: a.name! })).state).toBe('JOB_STATE_CANCELLED');

    const listed: string[] = [];
    for await (const job of await ai.batches.list({ config: { pageSize: 1 } })) listed.push(job.displayName ?? '');
    expect(listed).toEqual(['b', 'a']);

    await ai.batches.delete({ name: b.name! });
    const err = await ai.batches.get({ name: b.name! }).then(() => undefined, (e: unknown) => e);
    expect((err as ApiError).status).toBe(404);
    expect((await client.counters()).batches).toMatchObject({ created: 2, requests: 3, cancelled: 1, deleted: 1 });
  });

  it('a batch can be forced to expire or fail, and expires by itself after expireAfterMs', async () => {
    const a = await ai.batches.create({ model: MODEL, src: requests(1) });
    await client.forceBatchState(a.name!, 'EXPIRED');
    expect((await ai.batches.get({ name: a.name! })).state).toBe('JOB_STATE_EXPIRED');
    await client.forceBatchState(a.name!, 'FAILED');
    expect((await ai.batches.get({ name: a.name! })).state).toBe('JOB_STATE_FAILED');

    await client.setBatchConfig({ completeAfterMs: 10_000, expireAfterMs: 2_000 });
    const b = await ai.batches.create({ model: MODEL, src: requests(1) });
    clock.advance(1_999);
    expect((await ai.batches.get({ name: b.name! })).state).toBe('JOB_STATE_RUNNING');
    clock.advance(1);
    const expired = await ai.batches.get({ name: b.name! });
    expect(expired.state).toBe('JOB_STATE_EXPIRED');
    expect(expired.dest).toBeUndefined();
    expect((await client.listBatches()).map((s) => s.state)).toEqual(['FAILED', 'EXPIRED']);
  });

  it('an inline payload over the size limit gets 400 like Google, and nothing is created', async () => {
    await client.setBatchConfig({ maxInlineBytes: 2_000 });
    const big = [{ contents: 'x'.repeat(3_000) }];
    const err = await ai.batches.create({ model: MODEL, src: big }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(400);
    expect((err as ApiError).message).toMatch(/Request payload size exceeds the limit: 2000 bytes/);
    expect((await client.counters()).batches.created).toBe(0);
  });

  it('needs an API key, and an unknown model is 404', async () => {
    const res = await fetch(`${url}/v1beta/models/${MODEL}:batchGenerateContent`, { method: 'POST', body: '{}' });
    expect(res.status).toBe(403);
    const err = await ai.batches.create({ model: 'gemini-0-nope', src: requests(1) }).then(() => undefined, (e: unknown) => e);
    expect((err as ApiError).status).toBe(404);
  });
});
