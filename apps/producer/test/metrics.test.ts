// GET /metrics (issue 4, point 8): what the producer counts, and `promtool check metrics` on the
// real output when promtool is installed (Debian: `apt-get install prometheus`).
import { spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTestRedis, type TestRedis } from '@prompt-queue/shared/testing';
import { ACME, GLOBEX, startHarness, type Harness } from './harness.js';

let server: TestRedis;
let h: Harness | undefined;

beforeAll(async () => {
  server = await startTestRedis();
});
afterAll(async () => {
  await server?.stop();
});
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** The value of one series, e.g. `sample(text, 'x_total{a="b"}')`. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

async function exercise(harness: Harness): Promise<void> {
  await harness.http.post('/v1/jobs').set(ACME).send({ prompt: 'a' }).expect(202);
  await harness.http.post('/v1/jobs').set(ACME).send({ prompt: 'b', priority: 'high' }).expect(202);
  await harness.http.post('/v1/jobs/bulk').set(GLOBEX).send({ jobs: [{ prompt: 'c' }, { prompt: 'd', priority: 'low' }] }).expect(202);
  await harness.http.post('/v1/jobs').set(ACME).send({ prompt: 'a', idempotencyKey: 'k' }).expect(202);
  await harness.http.post('/v1/jobs').set(ACME).send({ prompt: 'a', idempotencyKey: 'k' }).expect(202); // replay: not counted
  await harness.http.post('/v1/jobs').set(ACME).send({ promt: 'typo' }).expect(400);
  await harness.http.get('/v1/usage').expect(401);
  await harness.http.get('/nowhere').expect(404);
}

describe('GET /metrics', () => {
  it('counts requests by route, enqueued jobs by tenant and priority, rejections by code, and reads queue depth', async () => {
    h = await startHarness(server.url);
    await exercise(h);
    const response = await h.http.get('/metrics');
    expect(response.status).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = response.text;

    expect(sample(text, 'prompt_queue_http_requests_total{route="/v1/jobs",method="POST",status="202"}')).toBe(4);
    expect(sample(text, 'prompt_queue_http_requests_total{route="/v1/jobs",method="POST",status="400"}')).toBe(1);
    expect(sample(text, 'prompt_queue_http_requests_total{route="/v1/jobs/bulk",method="POST",status="202"}')).toBe(1);
    expect(sample(text, 'prompt_queue_http_requests_total{route="(unmatched)",method="GET",status="404"}')).toBe(1);
    expect(sample(text, 'prompt_queue_http_request_duration_seconds_count{route="/v1/jobs",method="POST",status="202"}')).toBe(4);
    expect(sample(text, 'prompt_queue_jobs_enqueued_total{tenant="acme",priority="normal"}')).toBe(2);
    expect(sample(text, 'prompt_queue_jobs_enqueued_total{tenant="acme",priority="high"}')).toBe(1);
    expect(sample(text, 'prompt_queue_jobs_enqueued_total{tenant="globex",priority="normal"}')).toBe(1);
    expect(sample(text, 'prompt_queue_jobs_enqueued_total{tenant="globex",priority="low"}')).toBe(1);
    expect(sample(text, 'prompt_queue_http_rejections_total{code="VALIDATION_FAILED"}')).toBe(1);
    expect(sample(text, 'prompt_queue_http_rejections_total{code="UNAUTHORIZED"}')).toBe(1);
    expect(sample(text, 'prompt_queue_http_rejections_total{code="NOT_FOUND"}')).toBe(1);
    // Every job has a priority, so they wait in BullMQ's `prioritized` state.
    expect(sample(text, 'prompt_queue_queue_jobs{queue="prompts",state="prioritized"}')).toBe(5);
    expect(sample(text, 'prompt_queue_queue_jobs{queue="prompts",state="active"}')).toBe(0);
    expect(text).toContain('\nprocess_cpu_seconds_total ');
    expect(text).toContain('\nnodejs_eventloop_lag_seconds ');
    expect(text).not.toMatch(/key-a|key-b/);
  });

  it('passes `promtool check metrics` when promtool is installed', async (ctx) => {
    const version = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
    if (version.error) {
      ctx.skip('promtool is not on PATH (Debian: apt-get install --no-install-recommends prometheus); .ci/run installs it');
    }
    h = await startHarness(server.url);
    await exercise(h);
    const { text } = await h.http.get('/metrics').expect(200);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect(`${check.stdout}${check.stderr}`.trim()).toBe('');
    expect(check.status).toBe(0);
  });

  it('answers without a tenant key, or requires METRICS_TOKEN when it is set', async () => {
    const token = 'scrape-token-0123456789';
    h = await startHarness(server.url, { METRICS_TOKEN: token });
    const refused = await h.http.get('/metrics');
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe('UNAUTHORIZED');
    expect((await h.http.get('/metrics').set({ authorization: 'Bearer wrong' })).status).toBe(401);
    expect((await h.http.get('/metrics').set(ACME)).status).toBe(401);
    expect((await h.http.get('/metrics').set({ authorization: `Bearer ${token}` })).status).toBe(200);
    expect((await h.http.post('/metrics')).status).toBe(405);
  });

  it('still answers while Redis is down, without the queue-depth series', async () => {
    const own = await startTestRedis();
    try {
      h = await startHarness(own.url);
      await own.stop();
      const started = Date.now();
      const { status, text } = await h.http.get('/metrics');
      expect(status).toBe(200);
      expect(Date.now() - started).toBeLessThan(3_000);
      expect(text).not.toContain('prompt_queue_queue_jobs{');
      expect(text).toContain('prompt_queue_http_requests_total');
    } finally {
      await own.stop();
    }
  });
});
