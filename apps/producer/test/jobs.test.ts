// The job lifecycle through the API against real Redis and BullMQ: enqueue, idempotency, bulk,
// priorities, views of finished jobs (a real BullMQ Worker plays the worker), long-poll, cancel.
import { UnrecoverableError } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { blobKey, cancelledJobKey, fairPriority, promptJobDataSchema, sha256Hex } from '@prompt-queue/shared';
import { waitFor } from '@prompt-queue/shared/testing';
import { ACME, IMAGES, RESULT, totalJobs, useHarness, type Harness } from './harness.js';

let h: Harness;
useHarness((harness) => (h = harness));

const post = (body: object, headers: Record<string, string> = {}) => h.http.post('/v1/jobs').set(ACME).set(headers).send(body);
const get = (id: string, query = '') => h.http.get(`/v1/jobs/${id}${query}`).set(ACME);

describe('POST /v1/jobs', () => {
  it('enqueues a normalized payload with images stored beside the job, not in it', async () => {
    const pngBase64 = IMAGES.png.toString('base64');
    const response = await post({
      prompt: 'What is in this picture?',
      systemInstruction: 'Answer briefly.',
      generationConfig: { temperature: 0.2, maxOutputTokens: 256 },
      images: [{ mimeType: 'image/png', data: pngBase64 }],
      cache: { ttlSeconds: 60 },
      metadata: { order: 'A-1', attempt: 2, urgent: false, note: null },
    });
    expect(response.status).toBe(202);
    expect(response.body).toEqual({ id: expect.stringMatching(/^j[0-9a-f]{32}$/), status: 'queued' });

    const job = await h.queue.getJob(response.body.id);
    const data = promptJobDataSchema.parse(job!.data);
    const sha = sha256Hex(IMAGES.png);
    expect(data).toMatchObject({
      v: 1,
      kind: 'generate',
      tenant: 'acme',
      model: h.config.gemini.defaultModel,
      systemInstruction: 'Answer briefly.',
      generationConfig: { temperature: 0.2, maxOutputTokens: 256 },
      cache: { ttlSeconds: 60 },
      metadata: { order: 'A-1', attempt: 2, urgent: false, note: null },
      requestHash: expect.stringMatching(/^[0-9a-f]{64}$/),
      enqueuedAt: expect.any(Number),
    });
    expect(data.contents).toEqual([
      { role: 'user', parts: [{ text: 'What is in this picture?' }, { blob: { mimeType: 'image/png', sha256: sha, bytes: IMAGES.png.length } }] },
    ]);
    expect(data.estimatedInputTokens).toBeGreaterThan(258);

    expect(await h.redis.getBuffer(blobKey(h.config.redis.prefix, sha))).toEqual(IMAGES.png);
    expect(await h.redis.ttl(blobKey(h.config.redis.prefix, sha))).toBeGreaterThan(0);
    const hash = await h.redis.hgetall(h.queue.toKey(response.body.id));
    expect(JSON.stringify(hash)).not.toContain(pngBase64);
    expect(job!.opts.attempts).toBe(h.config.worker.attempts);
  });

  it('takes Gemini-shaped contents and appends images to the last user turn', async () => {
    const response = await post({
      contents: [
        { role: 'user', parts: [{ text: 'Hi' }] },
        { role: 'model', parts: [{ text: 'Hello' }] },
        { parts: [{ text: 'And this?' }, { fileData: { mimeType: 'image/png', fileUri: 'https://generativelanguage.googleapis.com/v1beta/files/a-png' } }] },
      ],
      images: [{ mimeType: 'image/jpeg', data: IMAGES.jpeg.toString('base64') }],
      model: 'gemini-2.5-flash',
    });
    expect(response.status).toBe(202);
    const data = promptJobDataSchema.parse((await h.queue.getJob(response.body.id))!.data);
    expect(data.model).toBe('gemini-2.5-flash');
    expect(data.contents.map((content) => content.role)).toEqual(['user', 'model', 'user']);
    expect(data.contents[2]!.parts).toHaveLength(3);
    expect(data.contents[2]!.parts[2]).toMatchObject({ blob: { mimeType: 'image/jpeg' } });
  });

  it('gives each job a fair BullMQ priority: its place in the tenant\'s line, levels counted from high down', async () => {
    // Places: high 0; normal after 1 high; low after 1 high + 1 normal; the default (normal) after 1 high + 1 normal.
    const expected = { high: fairPriority('high', 0), normal: fairPriority('normal', 1), low: fairPriority('low', 2), default: fairPriority('normal', 2) };
    for (const priority of ['high', 'normal', 'low', undefined] as const) {
      const { body } = await post({ prompt: 'p', ...(priority ? { priority } : {}) });
      const job = await h.queue.getJob(body.id);
      expect(job!.priority, String(priority)).toBe(expected[priority ?? 'default']);
      expect(job!.data.priority).toBe(priority);
    }
  });
});

describe('idempotency', () => {
  it('returns the same job for the same key (body or header) and adds nothing', async () => {
    const first = await post({ prompt: 'Summarise', idempotencyKey: 'order-42' });
    const second = await post({ prompt: 'Summarise', idempotencyKey: 'order-42', metadata: { retry: true }, priority: 'high' });
    const third = await post({ prompt: 'Summarise' }, { 'Idempotency-Key': 'order-42' });
    expect(first.status).toBe(202);
    expect(second.body).toEqual({ id: first.body.id, status: 'queued' });
    expect(third.body.id).toBe(first.body.id);
    expect(await totalJobs(h.queue)).toBe(1);

    // Same key, other tenant: another job.
    const globex = await h.http.post('/v1/jobs').set({ authorization: 'Bearer key-b' }).send({ prompt: 'Summarise', idempotencyKey: 'order-42' });
    expect(globex.body.id).not.toBe(first.body.id);
  });

  it('refuses the same key for a different request with 409', async () => {
    await post({ prompt: 'one', idempotencyKey: 'k' });
    const conflict = await post({ prompt: 'two', idempotencyKey: 'k' });
    expect(conflict.status).toBe(409);
    expect(conflict.body.error.code).toBe('IDEMPOTENCY_CONFLICT');
    const otherModel = await post({ prompt: 'one', idempotencyKey: 'k', model: 'gemini-2.5-pro' });
    expect(otherModel.status).toBe(409);
    const headerAndBody = await post({ prompt: 'one', idempotencyKey: 'k' }, { 'Idempotency-Key': 'other' });
    expect(headerAndBody.status).toBe(400);
    expect(await totalJobs(h.queue)).toBe(1);
  });

  it('creates one job for concurrent identical requests', async () => {
    const responses = await Promise.all(Array.from({ length: 5 }, () => post({ prompt: 'race', idempotencyKey: 'concurrent' })));
    expect(new Set(responses.map((r) => r.status))).toEqual(new Set([202]));
    expect(new Set(responses.map((r) => r.body.id)).size).toBe(1);
    expect(await totalJobs(h.queue)).toBe(1);
  });

  it('answers "active" when a worker holds the job: with a key the answer is the current status, not "queued"', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    await h.startWorker(async () => {
      await held;
      return RESULT;
    });
    const { body } = await post({ prompt: 'take me', idempotencyKey: 'fast' });
    expect(['queued', 'active']).toContain(body.status);
    await waitFor(async () => (await h.queue.getJobState(body.id)) === 'active');
    expect((await post({ prompt: 'take me', idempotencyKey: 'fast' })).body).toEqual({ id: body.id, status: 'active' });
    release();
  });

  it('reports the current status of the job on replay', async () => {
    const { body } = await post({ prompt: 'finish me', idempotencyKey: 'done' });
    await h.startWorker(async () => RESULT);
    await waitFor(async () => (await h.queue.getJobState(body.id)) === 'completed');
    expect((await post({ prompt: 'finish me', idempotencyKey: 'done' })).body).toEqual({ id: body.id, status: 'completed' });
  });
});

describe('POST /v1/jobs/bulk', () => {
  const bulk = (jobs: unknown[]) => h.http.post('/v1/jobs/bulk').set(ACME).send({ jobs });

  it('enqueues all jobs in order', async () => {
    const response = await bulk([{ prompt: 'a' }, { prompt: 'b', priority: 'high' }, { prompt: 'c', idempotencyKey: 'bulk-c' }]);
    expect(response.status).toBe(202);
    expect(response.body.jobs).toHaveLength(3);
    const jobs = await Promise.all(response.body.jobs.map(({ id }: { id: string }) => h.queue.getJob(id)));
    expect(jobs.map((job) => (job!.data.contents[0]!.parts[0] as { text: string }).text)).toEqual(['a', 'b', 'c']);
    expect(response.body.jobs.map((job: { status: string }) => job.status)).toEqual(['queued', 'queued', 'queued']);
    expect(jobs.map((job) => job!.priority)).toEqual([fairPriority('normal', 1), fairPriority('high', 0), fairPriority('normal', 2)]);

    const replay = await bulk([{ prompt: 'c', idempotencyKey: 'bulk-c' }]);
    expect(replay.body.jobs[0].id).toBe(response.body.jobs[2].id);
    expect(await totalJobs(h.queue)).toBe(3);
  });

  it('refuses the whole request when one item is invalid, naming its index', async () => {
    const response = await bulk([{ prompt: 'ok' }, { prompt: 'ok' }, { prompt: 'ok' }, { promt: 'typo' }, { prompt: 'x', model: 'nope' }]);
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('VALIDATION_FAILED');
    const paths = response.body.error.details.map((detail: { path: string }) => detail.path);
    expect(paths).toContain('jobs[3].prompt');
    expect(paths).toContain('jobs[3].promt');
    expect(response.body.error.details).toContainEqual({ path: 'jobs[4].model', message: expect.any(String), code: 'UNKNOWN_MODEL' });
    expect(response.body.error.message).toContain('jobs[3]');
    expect(await totalJobs(h.queue)).toBe(0);
  });

  it('takes 1 to 1000 jobs', async () => {
    expect((await bulk([])).status).toBe(400);
    const tooMany = await bulk(Array.from({ length: 1001 }, () => ({ prompt: 'x' })));
    expect(tooMany.status).toBe(400);
    expect(tooMany.body.error.details[0].path).toBe('jobs');
    expect((await h.http.post('/v1/jobs/bulk').set(ACME).send({ jobs: [{ prompt: 'x' }], extra: 1 })).status).toBe(400);
    const header = await h.http.post('/v1/jobs/bulk').set(ACME).set('Idempotency-Key', 'k').send({ jobs: [{ prompt: 'x' }] });
    expect(header.status).toBe(400);
    expect(header.body.error.details[0].path).toBe('Idempotency-Key');
    expect(await totalJobs(h.queue)).toBe(0);
  });

  it('refuses reused idempotency keys with different requests before enqueuing anything', async () => {
    await post({ prompt: 'original', idempotencyKey: 'taken' });
    const response = await bulk([{ prompt: 'new' }, { prompt: 'changed', idempotencyKey: 'taken' }]);
    expect(response.status).toBe(409);
    expect(response.body.error.details[0].path).toBe('jobs[1].idempotencyKey');
    const inBatch = await bulk([{ prompt: 'a', idempotencyKey: 'dup' }, { prompt: 'b', idempotencyKey: 'dup' }]);
    expect(inBatch.status).toBe(409);
    expect(await totalJobs(h.queue)).toBe(1);
  });
});

describe('GET /v1/jobs/:id', () => {
  it('shows a queued job', async () => {
    const { body } = await post({ prompt: 'wait for me', model: 'gemini-2.5-pro', metadata: { ref: 'x' } });
    const response = await get(body.id);
    expect(response.status).toBe(200);
    expect(response.body).toEqual({
      id: body.id,
      status: 'queued',
      model: 'gemini-2.5-pro',
      attempts: 0,
      createdAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      finishedAt: null,
      metadata: { ref: 'x' },
    });
  });

  it('shows a completed job with its result', async () => {
    const { body } = await post({ prompt: 'complete me' });
    await h.startWorker(async () => RESULT);
    await waitFor(async () => (await h.queue.getJobState(body.id)) === 'completed');
    const response = await get(body.id);
    expect(response.body).toMatchObject({ id: body.id, status: 'completed', attempts: 1, finishedAt: expect.any(String) });
    const { latencyMs: _latency, ...shown } = RESULT;
    // costNanoUsd is the exact figure clients sum (costUsd is for display).
    expect(response.body.result).toEqual(shown);
    expect(response.body.error).toBeUndefined();
  });

  it('shows a failed job with the code the worker wrote', async () => {
    const { body } = await post({ prompt: 'fail me' });
    await h.startWorker(async () => {
      throw new UnrecoverableError('[PROVIDER_BAD_REQUEST] bad');
    });
    await waitFor(async () => (await h.queue.getJobState(body.id)) === 'failed');
    const response = await get(body.id);
    expect(response.body).toMatchObject({ status: 'failed', error: { code: 'PROVIDER_BAD_REQUEST', message: 'bad', retryable: false } });
    expect(response.body.result).toBeUndefined();
  });

  it('long-polls: answers as soon as the job completes', async () => {
    const { body } = await post({ prompt: 'long poll' });
    const started = Date.now();
    const pending = get(body.id, '?wait=20').then((response) => response);
    // The request is parked on the event stream before any worker exists.
    await waitFor(() => h.jobEvents.waiting(body.id) > 0, { what: 'a waiting request' });
    await h.startWorker(async () => RESULT);
    const response = await pending;
    expect(response.status).toBe(200);
    expect(response.body.status).toBe('completed');
    expect(response.body.result.text).toBe(RESULT.text);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(h.jobEvents.waiting(body.id)).toBe(0);
  });

  it('long-polls: answers the current state when the wait runs out', async () => {
    const { body } = await post({ prompt: 'nobody works' });
    const started = Date.now();
    const response = await get(body.id, '?wait=1');
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    expect(response.body.status).toBe('queued');
    expect(h.jobEvents.waiting(body.id)).toBe(0);
  });

  it('long-polls: a cancel wakes the waiter', async () => {
    const { body } = await post({ prompt: 'cancel me while waiting' });
    const pending = get(body.id, '?wait=20').then((response) => response);
    await waitFor(() => h.jobEvents.waiting(body.id) > 0);
    expect((await h.http.delete(`/v1/jobs/${body.id}`).set(ACME)).status).toBe(200);
    expect((await pending).body.status).toBe('cancelled');
  });
});

describe('DELETE /v1/jobs/:id', () => {
  it('cancels a queued job; GET and a second DELETE show it cancelled', async () => {
    const { body } = await post({ prompt: 'never mind', metadata: { a: 1 } });
    const cancelled = await h.http.delete(`/v1/jobs/${body.id}`).set(ACME);
    expect(cancelled.status).toBe(200);
    expect(cancelled.body).toMatchObject({ id: body.id, status: 'cancelled', metadata: { a: 1 }, finishedAt: expect.any(String) });
    expect(await h.queue.getJob(body.id)).toBeUndefined();
    expect(await h.redis.ttl(cancelledJobKey(h.config.redis.prefix, body.id))).toBeGreaterThan(0);

    expect((await get(body.id)).body).toEqual(cancelled.body);
    const again = await h.http.delete(`/v1/jobs/${body.id}`).set(ACME);
    expect(again.status).toBe(200);
    expect(again.body).toEqual(cancelled.body);
    expect((await h.http.get(`/v1/jobs/${body.id}`).set({ authorization: 'Bearer key-b' })).status).toBe(404);
  });

  it('refuses to cancel an active or finished job', async () => {
    const { body } = await post({ prompt: 'in progress' });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    await h.startWorker(async () => {
      await gate;
      return RESULT;
    });
    await waitFor(async () => (await h.queue.getJobState(body.id)) === 'active');
    const active = await h.http.delete(`/v1/jobs/${body.id}`).set(ACME);
    expect(active.status).toBe(409);
    expect(active.body.error.code).toBe('JOB_NOT_CANCELLABLE');
    expect((await get(body.id)).body.status).toBe('active');

    release();
    await waitFor(async () => (await h.queue.getJobState(body.id)) === 'completed');
    expect((await h.http.delete(`/v1/jobs/${body.id}`).set(ACME)).status).toBe(409);
    expect((await get(body.id)).body.status).toBe('completed');
  });

  it('keeps a cancelled idempotent request cancelled on replay', async () => {
    const { body } = await post({ prompt: 'cancel then retry', idempotencyKey: 'c1' });
    await h.http.delete(`/v1/jobs/${body.id}`).set(ACME);
    expect((await post({ prompt: 'cancel then retry', idempotencyKey: 'c1' })).body).toEqual({ id: body.id, status: 'cancelled' });
    expect((await post({ prompt: 'something else', idempotencyKey: 'c1' })).status).toBe(409);
    expect(await totalJobs(h.queue)).toBe(0);
  });
});
