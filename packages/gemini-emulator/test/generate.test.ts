import { GoogleGenerativeAIResponseError } from '@google/generative-ai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { answerText, textTokens } from '../src/index.js';
import { promptLatencyMs } from '../src/gemini.js';
import { fetchError, detail, KEY, startHarness, type Harness } from './helpers.js';

let h: Harness;
beforeAll(async () => {
  h = await startHarness();
});
afterAll(() => h.close());
beforeEach(() => h.emulator.reset());

describe('generateContent through the real SDK', () => {
  it('answers deterministically with usageMetadata including thoughts', async () => {
    const model = h.model('gemini-2.5-flash');
    const a = await model.generateContent('What is a queue?');
    const b = await model.generateContent('What is a queue?');
    const text = a.response.text();
    expect(text).toMatch(/^Emulated answer from gemini-2\.5-flash: .+ \([0-9a-f]{8}\)\.$/);
    expect(b.response.text()).toBe(text);
    const usage = a.response.usageMetadata!;
    const prompt = textTokens('What is a queue?');
    const out = textTokens(text);
    expect(usage.promptTokenCount).toBe(prompt);
    expect(usage.candidatesTokenCount).toBe(out);
    const thoughts = (usage as unknown as { thoughtsTokenCount: number }).thoughtsTokenCount;
    expect(thoughts).toBe(2 * out);
    expect(usage.totalTokenCount).toBe(prompt + out + thoughts);
    expect((usage as unknown as Record<string, unknown>).promptTokensDetails).toEqual([{ modality: 'TEXT', tokenCount: prompt }]);
    const c = a.response.candidates![0]!;
    expect(c.finishReason).toBe('STOP');
    expect(c.index).toBe(0);
    expect(c.safetyRatings?.length).toBe(4);
    const extra = a.response as unknown as { modelVersion: string; responseId: string };
    expect(extra.modelVersion).toBe('gemini-2.5-flash');
    expect(extra.responseId).toMatch(/^[\w-]{22}$/);
  });

  it('counts systemInstruction and images, and thinkingBudget 0 gives no thoughts', async () => {
    const model = h.genAI.getGenerativeModel(
      { model: 'gemini-3.6-flash', systemInstruction: 'Be brief.', generationConfig: { thinkingConfig: { thinkingBudget: 0 } } as never },
      { baseUrl: h.url },
    );
    const r = await model.generateContent(['Describe', { inlineData: { mimeType: 'image/png', data: 'iVBORw0KGgo=' } }]);
    const usage = r.response.usageMetadata! as unknown as Record<string, unknown>;
    const textIn = textTokens('Describe') + textTokens('Be brief.');
    expect(usage.promptTokenCount).toBe(textIn + 258);
    expect(usage.promptTokensDetails).toEqual([
      { modality: 'TEXT', tokenCount: textIn },
      { modality: 'IMAGE', tokenCount: 258 },
    ]);
    expect(usage.thoughtsTokenCount).toBeUndefined();
    expect(usage.totalTokenCount).toBe((usage.promptTokenCount as number) + (usage.candidatesTokenCount as number));
  });

  it('truncates at maxOutputTokens with MAX_TOKENS (text() returns the partial text)', async () => {
    const model = h.genAI.getGenerativeModel({ model: 'gemini-2.5-flash-lite', generationConfig: { maxOutputTokens: 3 } }, { baseUrl: h.url });
    const r = await model.generateContent('Say something long');
    expect(r.response.candidates![0]!.finishReason).toBe('MAX_TOKENS');
    expect(r.response.text()).toBe('Emulated ans');
    expect(r.response.usageMetadata!.candidatesTokenCount).toBe(3);
  });

  it('streams 2-3 chunks whose text concatenates to the full answer, with final usage', async () => {
    const model = h.model('gemini-3.5-flash');
    const chat = model.startChat();
    const result = await chat.sendMessageStream('Stream please');
    const chunks: string[] = [];
    const finishes: (string | undefined)[] = [];
    for await (const chunk of result.stream) {
      chunks.push(chunk.text());
      finishes.push(chunk.candidates?.[0]?.finishReason);
      expect(chunk.usageMetadata?.promptTokenCount).toBe(textTokens('Stream please'));
    }
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    expect(chunks.length).toBeLessThanOrEqual(3);
    expect(finishes.slice(0, -1).every((f) => f === undefined)).toBe(true);
    expect(finishes.at(-1)).toBe('STOP');
    const final = await result.response;
    const full = final.text();
    expect(chunks.join('')).toBe(full);
    const nonStream = await h.model('gemini-3.5-flash').generateContent('Stream please');
    expect(full).toBe(nonStream.response.text());
    expect(final.usageMetadata).toEqual(nonStream.response.usageMetadata);
    // The chat session kept the turn, so a second message goes through with history.
    // History keeps one part per chunk, and every part counts on its own (min 1 token each).
    const history = await chat.getHistory();
    expect(history).toHaveLength(2);
    const expected = await model.countTokens({ contents: [...history, { role: 'user', parts: [{ text: 'And again' }] }] });
    const second = await chat.sendMessage('And again');
    expect(second.response.usageMetadata!.promptTokenCount).toBe(expected.totalTokens);
  });

  it('blocked prompt: HTTP 200, no candidates, text() throws, blockReason SAFETY', async () => {
    const r = await h.model('gemini-2.5-flash').generateContent('please [[block]] this');
    expect(r.response.candidates).toBeUndefined();
    expect(r.response.promptFeedback?.blockReason).toBe('SAFETY');
    expect(() => r.response.text()).toThrow(GoogleGenerativeAIResponseError);
    expect(() => r.response.text()).toThrow(/Response was blocked due to SAFETY/);
  });

  it('SAFETY and RECITATION finishes make text() throw', async () => {
    const s = await h.model('gemini-2.5-flash').generateContent('[[safety]]');
    expect(s.response.candidates![0]!.finishReason).toBe('SAFETY');
    expect(s.response.candidates![0]!.content).toBeUndefined();
    expect(() => s.response.text()).toThrow(/Candidate was blocked due to SAFETY/);
    const r = await h.model('gemini-2.5-flash').generateContent('[[recitation]]');
    expect(r.response.candidates![0]!.finishReason).toBe('RECITATION');
    expect(() => r.response.text()).toThrow(/RECITATION/);
  });

  it('[[slow:<ms>]] holds that call alone: a plain call sent after it answers first', async () => {
    const order: string[] = [];
    const slow = h.model('gemini-2.5-flash').generateContent('take your time [[slow:1500]]').then(() => order.push('slow'));
    const fast = h.model('gemini-2.5-flash').generateContent('no hurry needed').then(() => order.push('fast'));
    await Promise.all([slow, fast]);
    expect(order).toEqual(['fast', 'slow']);
    expect(promptLatencyMs('x [[slow:250]] y')).toBe(250);
    expect(promptLatencyMs('[[slow:9999999]]')).toBeUndefined();
    expect(promptLatencyMs('[[slow:900000]]')).toBe(600_000);
    expect(promptLatencyMs('[[slow]]')).toBeUndefined();
  });

  it('a blocked prompt in a stream surfaces promptFeedback on the aggregated response', async () => {
    const result = await h.model('gemini-2.5-flash').generateContentStream('[[block]]');
    const final = await result.response;
    expect(final.promptFeedback?.blockReason).toBe('SAFETY');
    expect(() => final.text()).toThrow(GoogleGenerativeAIResponseError);
  });

  it('includeThoughts adds a thought part (the SDK text() concatenates it)', async () => {
    const model = h.genAI.getGenerativeModel(
      { model: 'gemini-3.1-pro-preview', generationConfig: { thinkingConfig: { includeThoughts: true, thinkingBudget: 5 } } as never },
      { baseUrl: h.url },
    );
    const r = await model.generateContent('think');
    const parts = r.response.candidates![0]!.content.parts as { text: string; thought?: boolean }[];
    expect(parts[0]!.thought).toBe(true);
    expect(r.response.text()).toBe(parts.map((p) => p.text).join(''));
    expect((r.response.usageMetadata as unknown as { thoughtsTokenCount: number }).thoughtsTokenCount).toBe(5);
  });

  it('the answer formula is exported and stable', () => {
    expect(answerText('m', 'deadbeef00')).toContain('(deadbeef)');
  });
});

describe('countTokens and embeddings', () => {
  it('countTokens via the SDK (generateContentRequest) and plain contents', async () => {
    const model = h.genAI.getGenerativeModel({ model: 'gemini-2.5-pro', systemInstruction: 'sys' }, { baseUrl: h.url });
    const r = await model.countTokens('count these tokens please');
    expect(r.totalTokens).toBe(textTokens('count these tokens please') + textTokens('sys'));
    expect((r as unknown as Record<string, unknown>).promptTokensDetails).toEqual([{ modality: 'TEXT', tokenCount: r.totalTokens }]);
    const raw = await fetch(`${h.url}/v1beta/models/gemini-2.5-pro:countTokens`, {
      method: 'POST',
      headers: { 'x-goog-api-key': KEY, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: '12345678' }] }] }),
    });
    expect(await raw.json()).toEqual({ totalTokens: 2, promptTokensDetails: [{ modality: 'TEXT', tokenCount: 2 }] });
  });

  it('embedContent and batchEmbedContents are deterministic and honour outputDimensionality', async () => {
    const model = h.model('gemini-embedding-001');
    const one = await model.embedContent('hello world');
    expect(one.embedding.values).toHaveLength(768);
    const again = await model.embedContent('hello world');
    expect(again.embedding.values).toEqual(one.embedding.values);
    const norm = Math.sqrt(one.embedding.values.reduce((s, x) => s + x * x, 0));
    expect(norm).toBeCloseTo(1, 5);
    const batch = await model.batchEmbedContents({
      requests: [
        { content: { role: 'user', parts: [{ text: 'hello world' }] } },
        { content: { role: 'user', parts: [{ text: 'other text' }] }, outputDimensionality: 256 } as never,
      ],
    });
    expect(batch.embeddings).toHaveLength(2);
    expect(batch.embeddings[0]!.values).toEqual(one.embedding.values);
    expect(batch.embeddings[1]!.values).toHaveLength(256);
    const c = h.emulator.counters().byModel['gemini-embedding-001']!;
    expect(c.calls).toBe(3);
    expect(c.byMethod).toEqual({ embedContent: 2, batchEmbedContents: 1 });
    expect(c.inputTokens).toBe(2 * textTokens('hello world') + textTokens('hello world') + textTokens('other text'));
  });
});

describe('errors the SDK sees like Google', () => {
  it('bad key -> 400 with API_KEY_INVALID in errorDetails', async () => {
    const bad = new (await import('@google/generative-ai')).GoogleGenerativeAI('wrong-key');
    const err = await fetchError(() => bad.getGenerativeModel({ model: 'gemini-2.5-flash' }, { baseUrl: h.url }).generateContent('hi'));
    expect(err.status).toBe(400);
    expect(err.message).toContain('API key not valid. Please pass a valid API key.');
    expect(detail(err, 'ErrorInfo')).toMatchObject({ reason: 'API_KEY_INVALID', domain: 'googleapis.com', metadata: { service: 'generativelanguage.googleapis.com' } });
  });

  it('missing key -> 403 PERMISSION_DENIED', async () => {
    const res = await fetch(`${h.url}/v1beta/models/gemini-2.5-flash:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'hi' }] }] }),
    });
    expect(res.status).toBe(403);
    const body = (await res.json()) as { error: { status: string; message: string } };
    expect(body.error.status).toBe('PERMISSION_DENIED');
    expect(body.error.message).toMatch(/unregistered callers/);
  });

  it('unknown model and wrong model kind -> 404 NOT_FOUND naming version and method', async () => {
    const err = await fetchError(() => h.model('gemini-9-ultra').generateContent('hi'));
    expect(err.status).toBe(404);
    expect(err.message).toContain('models/gemini-9-ultra is not found for API version v1beta, or is not supported for generateContent.');
    const v1 = await fetchError(() => h.genAI.getGenerativeModel({ model: 'text-embedding-004' }, { baseUrl: h.url, apiVersion: 'v1' }).generateContent('hi'));
    expect(v1.status).toBe(404);
    expect(v1.message).toContain('models/text-embedding-004 is not found for API version v1, or is not supported for generateContent.');
    const emb = await fetchError(() => h.model('gemini-2.5-flash').embedContent('hi'));
    expect(emb.message).toContain('not supported for embedContent');
  });

  it('unknown field -> 400 with BadRequest fieldViolations', async () => {
    const err = await fetchError(() => h.model('gemini-2.5-flash').generateContent({ contents: [{ role: 'user', parts: [{ text: 'hi' }] }], foo: 1 } as never));
    expect(err.status).toBe(400);
    expect(detail(err, 'BadRequest')).toEqual({
      '@type': 'type.googleapis.com/google.rpc.BadRequest',
      fieldViolations: [{ description: 'Invalid JSON payload received. Unknown name "foo": Cannot find field.' }],
    });
  });

  it('rejects bad JSON, empty contents, bad inlineData and budget 0 on pro', async () => {
    const post = (body: string, model = 'gemini-2.5-flash'): Promise<Response> =>
      fetch(`${h.url}/v1beta/models/${model}:generateContent`, { method: 'POST', headers: { 'x-goog-api-key': KEY }, body });
    expect((await post('{not json')).status).toBe(400);
    expect((await post('{"contents":[]}')).status).toBe(400);
    const inline = await post(JSON.stringify({ contents: [{ parts: [{ inlineData: { data: '!!!' } }] }] }));
    expect(inline.status).toBe(400);
    const text = await inline.text();
    expect(text).toContain('mime_type');
    expect(text).toContain('Base64 decoding failed');
    const pro = await post(JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }], generationConfig: { thinkingConfig: { thinkingBudget: 0 } } }), 'gemini-2.5-pro');
    expect(pro.status).toBe(400);
  });

  it('lists models', async () => {
    const res = await fetch(`${h.url}/v1beta/models`, { headers: { 'x-goog-api-key': KEY } });
    const body = (await res.json()) as { models: { name: string }[] };
    expect(body.models.map((m) => m.name)).toContain('models/gemini-3.6-flash');
  });
});
