// Liveness, readiness, and behaviour while Redis is down. Each test owns its Redis, since one of
// them stops it.
import { afterEach, describe, expect, it } from 'vitest';
import { startTestRedis, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import { ACME, startHarness, type Harness } from './harness.js';

let server: TestRedis | undefined;
let h: Harness | undefined;

afterEach(async () => {
  await h?.close();
  await server?.stop();
  h = undefined;
  server = undefined;
});

describe('health', () => {
  it('/healthz and /readyz answer without auth while Redis is up', async () => {
    server = await startTestRedis();
    h = await startHarness(server.url);
    expect((await h.http.get('/healthz')).body).toEqual({ status: 'ok' });
    const ready = await h.http.get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ready' });
  });

  it('answers 503 REDIS_UNAVAILABLE quickly while Redis is down, and keeps serving /healthz', async () => {
    server = await startTestRedis();
    h = await startHarness(server.url);
    const { body } = await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'before the outage' });
    expect(body.status).toBe('queued');

    await server.stop();
    await waitFor(() => h!.redis.status !== 'ready', { what: 'the client to notice' });

    const ready = await h.http.get('/readyz');
    expect(ready.status).toBe(503);
    expect(ready.body.error.code).toBe('REDIS_UNAVAILABLE');

    const started = Date.now();
    const post = await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'during the outage' });
    expect(post.status).toBe(503);
    expect(post.body.error.code).toBe('REDIS_UNAVAILABLE');
    const get = await h.http.get(`/v1/jobs/${body.id}?wait=5`).set(ACME);
    expect(get.status).toBe(503);
    const del = await h.http.delete(`/v1/jobs/${body.id}`).set(ACME);
    expect(del.status).toBe(503);
    const bulk = await h.http.post('/v1/jobs/bulk').set(ACME).send({ jobs: [{ prompt: 'x' }] });
    expect(bulk.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(3_000);

    // Bad input is still a 400, not a 503: validation needs no Redis.
    expect((await h.http.post('/v1/jobs').set(ACME).send({})).status).toBe(400);
    expect((await h.http.get('/healthz')).status).toBe(200);
  });
});
