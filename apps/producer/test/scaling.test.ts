// GET /scaling (issue 12): the numbers KEDA scales the workers by, read from real BullMQ queues and
// a real limiter window on a private Redis.
import { FleetLimiter, QueueName, recordProviderLatencies } from '@prompt-queue/shared';
import { startTestRedis, type TestRedis } from '@prompt-queue/shared/testing';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
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

const MODEL = 'gemini-3.6-flash';

describe('GET /scaling', () => {
  it('counts the jobs fairness puts in `prioritized`, which a wait-list count misses', async () => {
    h = await startHarness(server.url, { WORKER_CONCURRENCY: '2' });
    await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'a' }).expect(202);
    await h.http.post('/v1/jobs').set(ACME).send({ prompt: 'b', priority: 'high' }).expect(202);
    await h.http.post('/v1/jobs/bulk').set(GLOBEX).send({ jobs: [{ prompt: 'c' }, { prompt: 'd', priority: 'low' }, { prompt: 'e' }] }).expect(202);

    const { body } = await h.http.get('/scaling').expect(200).expect('content-type', /json/);
    expect(await h.queue.getWaitingCount()).toBe(0); // what the usual KEDA recipe (LLEN wait) sees
    expect(body).toMatchObject({
      queue: QueueName.Prompts,
      backlog: 5,
      jobs: { waiting: 0, prioritized: 5, delayedDue: 0, delayedLater: 0, active: 0 },
      concurrency: 2,
      backlogWorkers: 3,
      quotaWorkers: null, // no limits configured
      recommendedWorkers: 3,
      capped: false,
      scopes: [],
    });
    expect(typeof body.at).toBe('number');
  });

  it('counts delayed jobs whose time has come, not those still in the future', async () => {
    h = await startHarness(server.url);
    await h.queue.add('generate', { kind: 'generate' } as never, { delay: 3_600_000 });
    await h.queue.add('generate', { kind: 'generate' } as never, { delay: 3_600_000 });
    await h.queue.add('generate', { kind: 'generate' } as never, { delay: 1 });
    // No worker runs, so nothing promotes the due job: it stays in `delayed` with a past score.
    await vi.waitFor(async () => {
      const { body } = await h!.http.get('/scaling').expect(200);
      expect(body.jobs).toEqual({ waiting: 0, prioritized: 0, delayedDue: 1, delayedLater: 2, active: 0 });
      expect(body.backlog).toBe(1);
      expect(body.recommendedWorkers).toBe(1);
    });
    expect(await h.queue.getDelayedCount()).toBe(3);
  });

  it('with a saturated quota recommends no more workers than the quota can feed', async () => {
    // 600 RPM at an assumed 2 s per call keeps 600 / 60.5 s × 2 s ≈ 19.8 calls in flight (the
    // limiter's window is 60 s plus its 500 ms guard): 5 workers of concurrency 4.
    h = await startHarness(server.url, { GEMINI_RPM: '600', GEMINI_MODEL: MODEL, WORKER_CONCURRENCY: '4', SCALING_LATENCY_MS: '2000' });
    await h.queue.addBulk(Array.from({ length: 100 }, (_, i) => ({ name: 'generate' as const, data: { kind: 'generate' } as never, opts: { priority: 1 + (i % 3) } })));
    const limiter = new FleetLimiter(h.redis, h.config.redis.prefix, { windowMs: h.config.limiter.windowMs + h.config.limiter.guardMs });
    const key = { provider: 'gemini', model: MODEL };
    const limits = { rpm: 600, tpm: 0 };
    const granted = await limiter.reserve(key, limits, Array.from({ length: 600 }, () => 500));
    expect(granted.granted).toHaveLength(600);
    expect((await limiter.reserve(key, limits, [500])).waitMs).toBeGreaterThan(0); // the fleet would wait

    const { body } = await h.http.get('/scaling').expect(200);
    expect(body).toMatchObject({ backlog: 100, backlogWorkers: 25, quotaWorkers: 5, recommendedWorkers: 5, capped: true, saturated: true });
    expect(body.scopes).toEqual([
      expect.objectContaining({
        scope: `gemini:${MODEL}:default`,
        rpmLimit: 600,
        requests: 600,
        tokens: 300_000,
        tokensPerRequest: 500,
        latencyMs: 2_000,
        latencySource: 'configured',
        saturated: true,
      }),
    ]);
    expect(body.scopes[0].callsInFlight).toBeCloseTo(19.83, 1);
  });

  it('uses the fleet’s observed latency once workers have reported enough calls', async () => {
    h = await startHarness(server.url, { GEMINI_RPM: '600', GEMINI_MODEL: MODEL, WORKER_CONCURRENCY: '4' });
    await h.queue.addBulk(Array.from({ length: 100 }, () => ({ name: 'generate' as const, data: { kind: 'generate' } as never, opts: { priority: 1 } })));
    const now = Date.now();
    await recordProviderLatencies(h.redis, h.config.redis.prefix, Array.from({ length: 12 }, (_, i) => ({ link: `gemini:${MODEL}`, latencyMs: i < 6 ? 3_000 : 5_000, at: now - i })));
    const { body } = await h.http.get('/scaling').expect(200);
    // Mean 4 s: 600 / 60.5 s × 4 s ≈ 39.7 calls in flight, 10 workers.
    expect(body.scopes[0]).toMatchObject({ latencyMs: 4_000, latencySource: 'observed', observedP50Ms: 3_000, saturated: false });
    expect(body).toMatchObject({ quotaWorkers: 10, recommendedWorkers: 10, saturated: false });
  });

  it('needs no tenant key, but the metrics token when one is set', async () => {
    const token = 'scaling-token-0123456789';
    h = await startHarness(server.url, { METRICS_TOKEN: token });
    await h.http.get('/scaling').expect(401).expect('www-authenticate', 'Bearer');
    await h.http.get('/scaling').set(ACME).expect(401); // a tenant key is not the metrics token
    await h.http.get('/scaling').set({ authorization: `Bearer ${token}` }).expect(200);
    await h.http.post('/scaling').set({ authorization: `Bearer ${token}` }).expect(405);
  });
});
