// Bad requests: every one answers 4xx JSON with its code, and nothing reaches the queue.
import { createHash } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '@prompt-queue/shared/testing';
import { ACME, GLOBEX, IMAGES, startHarness, totalJobs, type Harness } from './harness.js';

let server: TestRedis;
let h: Harness;

beforeAll(async () => {
  server = await startTestRedis();
});
afterAll(async () => {
  await server?.stop();
});
beforeEach(async () => {
  h = await startHarness(server.url, { MAX_REQUEST_BYTES: '65536', MAX_IMAGE_BYTES: '1000' }, (config) => {
    config.models['tiny-model'] = { kind: 'generate', inputTokenLimit: 600, outputTokenLimit: 100 };
  });
});
afterEach(async () => {
  await h.close();
});

const post = (body: unknown) => h.http.post('/v1/jobs').set(ACME).send(body as object);
const png = (data = IMAGES.png) => ({ mimeType: 'image/png', data: data.toString('base64') });

async function expectError(response: { status: number; body: unknown; headers: Record<string, string> }, status: number, code: string) {
  expect(response.status).toBe(status);
  expect(response.headers['content-type']).toMatch(/application\/json/);
  expect(response.body).toMatchObject({ error: { code, message: expect.any(String) } });
  expect(await totalJobs(h.queue)).toBe(0);
}

describe('POST /v1/jobs validation', () => {
  it('requires a prompt or contents, and not both', async () => {
    const missing = await post({ model: 'gemini-3.6-flash' });
    await expectError(missing, 400, 'VALIDATION_FAILED');
    expect(missing.body.error.message).toContain('prompt');
    expect(missing.body.error.details).toContainEqual({ path: 'prompt', message: expect.any(String) });

    const both = await post({ prompt: 'a', contents: [{ parts: [{ text: 'b' }] }] });
    await expectError(both, 400, 'VALIDATION_FAILED');
    expect(both.body.error.details[0].path).toBe('contents');
  });

  it('refuses unknown fields, bad types and bad nested shapes, naming the field', async () => {
    const unknown = await post({ prompt: 'hi', temperature: 1 });
    await expectError(unknown, 400, 'VALIDATION_FAILED');
    expect(unknown.body.error.details).toEqual([{ path: 'temperature', message: 'unknown field' }]);

    const badConfig = await post({ prompt: 'hi', generationConfig: { temperature: 5 } });
    await expectError(badConfig, 400, 'VALIDATION_FAILED');
    expect(badConfig.body.error.details[0].path).toBe('generationConfig.temperature');

    const badPart = await post({ contents: [{ parts: [{ video: 'x' }] }] });
    await expectError(badPart, 400, 'VALIDATION_FAILED');
    expect(badPart.body.error.details[0].path).toBe('contents[0].parts[0]');

    const badMetadata = await post({ prompt: 'hi', metadata: { nested: { no: true } } });
    await expectError(badMetadata, 400, 'VALIDATION_FAILED');
    const tooManyKeys = await post({ prompt: 'hi', metadata: Object.fromEntries(Array.from({ length: 21 }, (_, i) => [`k${i}`, i])) });
    await expectError(tooManyKeys, 400, 'VALIDATION_FAILED');

    await expectError(await post({ prompt: 'hi', priority: 'urgent' }), 400, 'VALIDATION_FAILED');
    await expectError(await post({ prompt: 'hi', idempotencyKey: 'tab\tkey' }), 400, 'VALIDATION_FAILED');
    await expectError(await post({ prompt: 'hi', idempotencyKey: 'x'.repeat(201) }), 400, 'VALIDATION_FAILED');
    await expectError(await post([{ prompt: 'hi' }]), 400, 'VALIDATION_FAILED');
  });

  it('refuses unknown models and output limits above the model', async () => {
    const unknown = await post({ prompt: 'hi', model: 'gemini-9-ultra' });
    await expectError(unknown, 400, 'UNKNOWN_MODEL');
    expect(unknown.body.error.message).toContain('gemini-9-ultra');
    // An embedding model is known but cannot generate.
    await expectError(await post({ prompt: 'hi', model: 'gemini-embedding-001' }), 400, 'UNKNOWN_MODEL');

    const tooLong = await post({ prompt: 'hi', model: 'tiny-model', generationConfig: { maxOutputTokens: 101 } });
    await expectError(tooLong, 400, 'VALIDATION_FAILED');
    expect(tooLong.body.error.details[0].path).toBe('generationConfig.maxOutputTokens');
  });

  it('bounds every numeric generation setting: a hostile thinkingBudget is a 400, not a worker crash', async () => {
    // Issue 14, defect 1: thinkingBudget 1e15 was accepted with 202 and failed other tenants' jobs.
    const hostile = await post({ prompt: 'hi', model: 'gemini-2.5-flash', generationConfig: { thinkingConfig: { thinkingBudget: 1e15 } } });
    await expectError(hostile, 400, 'VALIDATION_FAILED');
    expect(hostile.body.error.details[0].path).toBe('generationConfig.thinkingConfig.thinkingBudget');
    // Within the schema's bound but above the model's thinking limit (24,576 for Flash).
    const overModel = await post({ prompt: 'hi', model: 'gemini-2.5-flash', generationConfig: { thinkingConfig: { thinkingBudget: 24_577 } } });
    await expectError(overModel, 400, 'VALIDATION_FAILED');
    expect(overModel.body.error.details[0]).toEqual({ path: 'generationConfig.thinkingConfig.thinkingBudget', message: expect.stringContaining('24576') });
    // A model without a listed thinking limit is bounded by its output limit.
    await expectError(await post({ prompt: 'hi', model: 'tiny-model', generationConfig: { thinkingConfig: { thinkingBudget: 101 } } }), 400, 'VALIDATION_FAILED');
    for (const generationConfig of [
      { maxOutputTokens: 1e15 },
      { topK: 1e9 },
      { topK: 0 },
      { seed: 2 ** 31 },
      { seed: 1.5 },
      { presencePenalty: 1e308 },
      { frequencyPenalty: -3 },
      { temperature: -0.1 },
      { topP: 1.01 },
      { thinkingConfig: { thinkingBudget: -2 } },
    ]) {
      const response = await post({ prompt: 'hi', model: 'gemini-2.5-flash', generationConfig });
      await expectError(response, 400, 'VALIDATION_FAILED');
      expect(response.body.error.details[0].path).toMatch(/^generationConfig\./);
    }
    // In bounds: accepted.
    const fine = { temperature: 2, topP: 1, topK: 64, seed: -(2 ** 31), presencePenalty: -2, frequencyPenalty: 1.9, maxOutputTokens: 64, thinkingConfig: { thinkingBudget: 24_576 } };
    expect((await post({ prompt: 'hi', model: 'gemini-2.5-flash', generationConfig: fine })).status).toBe(202);
    expect((await post({ prompt: 'hi', model: 'gemini-2.5-pro', generationConfig: { thinkingConfig: { thinkingBudget: 32_768 } } })).status).toBe(202);
  });

  it('refuses prompts estimated above the model input limit with 413 PROMPT_TOO_LARGE', async () => {
    // 600 tokens ≈ 2400 bytes of text; the system instruction counts too, and each image 258.
    await expectError(await post({ prompt: 'x'.repeat(2500), model: 'tiny-model' }), 413, 'PROMPT_TOO_LARGE');
    await expectError(await post({ prompt: 'x'.repeat(1200), systemInstruction: 'y'.repeat(1300), model: 'tiny-model' }), 413, 'PROMPT_TOO_LARGE');
    await expectError(await post({ prompt: 'x'.repeat(400), images: [png(), png()], model: 'tiny-model' }), 413, 'PROMPT_TOO_LARGE');
    expect((await post({ prompt: 'x'.repeat(400), images: [png()], model: 'tiny-model' })).status).toBe(202);
  });

  it('checks images: type, bytes against the type, base64, total size', async () => {
    const gif = await post({ prompt: 'hi', images: [{ mimeType: 'image/gif', data: 'R0lGODlh' }] });
    await expectError(gif, 415, 'UNSUPPORTED_MEDIA_TYPE');
    expect(gif.body.error.details[0].path).toBe('images[0].mimeType');

    const lying = await post({ prompt: 'hi', images: [{ mimeType: 'image/png', data: IMAGES.jpeg.toString('base64') }] });
    await expectError(lying, 415, 'UNSUPPORTED_MEDIA_TYPE');
    expect(lying.body.error.details[0].path).toBe('images[0].data');

    const inContents = await post({ contents: [{ parts: [{ text: 'hi' }, { inlineData: { mimeType: 'image/webp', data: IMAGES.png.toString('base64') } }] }] });
    await expectError(inContents, 415, 'UNSUPPORTED_MEDIA_TYPE');
    expect(inContents.body.error.details[0].path).toBe('contents[0].parts[1].inlineData.data');

    const notBase64 = await post({ prompt: 'hi', images: [{ mimeType: 'image/png', data: 'not base64!' }] });
    await expectError(notBase64, 400, 'VALIDATION_FAILED');
    expect(notBase64.body.error.details[0].path).toBe('images[0].data');
    await expectError(await post({ prompt: 'hi', images: [{ mimeType: 'image/png', data: `data:image/png;base64,${png().data}` }] }), 400, 'VALIDATION_FAILED');

    // MAX_IMAGE_BYTES is 1000 here: two images of 600 bytes pass one by one, not together.
    const big = Buffer.concat([IMAGES.png, Buffer.alloc(600 - IMAGES.png.length)]);
    expect((await post({ prompt: 'hi', images: [png(big)] })).status).toBe(202);
    await h.queue.obliterate({ force: true });
    await expectError(await post({ prompt: 'hi', images: [png(big), png(big)] }), 413, 'PAYLOAD_TOO_LARGE');
  });

  it('accepts every supported image type, HEIC/HEIF brands under either MIME type', async () => {
    for (const [mimeType, data] of [
      ['image/png', IMAGES.png],
      ['image/jpeg', IMAGES.jpeg],
      ['image/webp', IMAGES.webp],
      ['image/heic', IMAGES.heic],
      ['image/heif', IMAGES.heic],
    ] as const) {
      const response = await post({ prompt: 'describe', images: [{ mimeType, data: data.toString('base64') }] });
      expect(response.status, mimeType).toBe(202);
    }
  });

  it('answers malformed JSON, other content types and oversized bodies with their codes', async () => {
    const malformed = await h.http.post('/v1/jobs').set(ACME).set('content-type', 'application/json').send('{"prompt": "hi"');
    await expectError(malformed, 400, 'INVALID_JSON');

    const text = await h.http.post('/v1/jobs').set(ACME).set('content-type', 'text/plain').send('hi');
    await expectError(text, 415, 'UNSUPPORTED_MEDIA_TYPE');
    const form = await h.http.post('/v1/jobs').set(ACME).type('form').send({ prompt: 'hi' });
    await expectError(form, 415, 'UNSUPPORTED_MEDIA_TYPE');

    const huge = await post({ prompt: 'x'.repeat(70_000) });
    await expectError(huge, 413, 'PAYLOAD_TOO_LARGE');
  });

  it('answers unknown routes, wrong methods and bad ids with JSON', async () => {
    const route = await h.http.get('/v2/nothing');
    expect(route.status).toBe(404);
    expect(route.body.error.code).toBe('NOT_FOUND');

    const method = await h.http.put('/v1/jobs').set(ACME);
    expect(method.status).toBe(405);
    expect(method.headers.allow).toBe('POST');
    expect(method.body.error.code).toBe('METHOD_NOT_ALLOWED');

    for (const id of ['nope', 'j123', `j${'0'.repeat(32)}`, '%E0%A4%A']) {
      const response = await h.http.get(`/v1/jobs/${id}`).set(ACME);
      expect(response.status, id).toBeGreaterThanOrEqual(400);
      expect(response.status, id).toBeLessThan(500);
      expect(response.body.error.code).toBeDefined();
    }
    const wait = await h.http.get(`/v1/jobs/j${'0'.repeat(32)}?wait=abc`).set(ACME);
    expect(wait.status).toBe(400);
    expect((await h.http.get(`/v1/jobs/j${'0'.repeat(32)}?wait=61`).set(ACME)).status).toBe(400);
  });
});

describe('authentication', () => {
  it('answers 401 with WWW-Authenticate without a key or with a wrong one', async () => {
    for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: 'key-a' }, { authorization: 'Basic a2V5LWE=' }]) {
      const response = await h.http.post('/v1/jobs').set(headers).send({ prompt: 'hi' });
      expect(response.status).toBe(401);
      expect(response.headers['www-authenticate']).toBe('Bearer');
      expect(response.body.error.code).toBe('UNAUTHORIZED');
    }
    expect((await h.http.get(`/v1/jobs/j${'0'.repeat(32)}`)).status).toBe(401);
    expect(await totalJobs(h.queue)).toBe(0);
  });

  it('accepts keys configured as sha256:<hex>', async () => {
    const hashed = `sha256:${createHash('sha256').update('s3cret').digest('hex')}`;
    const other = await startHarness(h.config.redis.url, { API_KEYS: `initech:${hashed}` });
    try {
      const ok = await other.http.post('/v1/jobs').set({ authorization: 'Bearer s3cret' }).send({ prompt: 'hi' });
      expect(ok.status).toBe(202);
      expect((await other.queue.getJob(ok.body.id))?.data.tenant).toBe('initech');
      // The hash itself is not a key.
      expect((await other.http.post('/v1/jobs').set({ authorization: `Bearer ${hashed}` }).send({ prompt: 'hi' })).status).toBe(401);
    } finally {
      await other.close();
    }
  });

  it("hides another tenant's jobs: 404 exactly like an unknown id", async () => {
    const { body } = await post({ prompt: 'mine', metadata: { order: 7 } });
    const theirs = await h.http.get(`/v1/jobs/${body.id}`).set(GLOBEX);
    const unknown = await h.http.get(`/v1/jobs/j${'f'.repeat(32)}`).set(GLOBEX);
    expect(theirs.status).toBe(404);
    expect(theirs.body).toEqual(unknown.body);
    expect((await h.http.delete(`/v1/jobs/${body.id}`).set(GLOBEX)).status).toBe(404);
    expect((await h.http.get(`/v1/jobs/${body.id}`).set(ACME)).body.status).toBe('queued');
  });

  it('uses the development key when no API_KEYS are configured', async () => {
    const dev = await startHarness(h.config.redis.url, { API_KEYS: '' });
    try {
      const response = await dev.http.post('/v1/jobs').set({ authorization: 'Bearer dev-key' }).send({ prompt: 'hi' });
      expect(response.status).toBe(202);
      expect((await dev.queue.getJob(response.body.id))?.data.tenant).toBe('dev');
    } finally {
      await dev.close();
    }
  });
});
