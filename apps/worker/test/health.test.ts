import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { createRedis } from '@prompt-queue/shared';
import { freePort, startTestRedis, type TestRedis } from '@prompt-queue/shared/testing';
import { Registry } from 'prom-client';
import { createHealthApp } from '../src/health.js';
import { createWorkerMetrics, metricsHandler } from '../src/metrics.js';

describe('health endpoints (real Redis)', () => {
  let server: TestRedis;
  beforeAll(async () => {
    server = await startTestRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('/healthz is 200 and /readyz is 200 when Redis answers and the worker runs', async () => {
    const redis = createRedis(server.url, 'worker');
    try {
      const app = createHealthApp({ redis, isWorkerRunning: () => true });
      await request(app).get('/healthz').expect(200, { status: 'ok' });
      await request(app).get('/readyz').expect(200, { status: 'ready' });
    } finally {
      redis.disconnect();
    }
  });

  it('/readyz is 503 WORKER_NOT_RUNNING while the worker is not running', async () => {
    const redis = createRedis(server.url, 'worker');
    try {
      const res = await request(createHealthApp({ redis, isWorkerRunning: () => false })).get('/readyz').expect(503);
      expect(res.body.error.code).toBe('WORKER_NOT_RUNNING');
    } finally {
      redis.disconnect();
    }
  });

  it('METRICS_TOKEN guards /status like /metrics (both name tenants, links and key fingerprints); the probes stay open', async () => {
    const redis = createRedis(server.url, 'worker');
    try {
      const token = 'a-metrics-token-of-16+';
      const app = createHealthApp({
        redis,
        isWorkerRunning: () => true,
        status: async () => ({ apiKeys: [{ fingerprint: 'ba7816bf' }] }),
        metrics: metricsHandler(createWorkerMetrics(new Registry(), { defaultMetrics: false }).registry),
        token,
      });
      for (const path of ['/status', '/metrics']) {
        const refused = await request(app).get(path).expect(401);
        expect(refused.headers['www-authenticate'], path).toBe('Bearer');
        expect(refused.text, path).not.toContain('ba7816bf');
        await request(app).get(path).set('Authorization', 'Bearer wrong-token-xxxxxxxx').expect(401);
        await request(app).get(path).set('Authorization', `Bearer ${token}`).expect(200);
      }
      const status = await request(app).get('/status').set('Authorization', `Bearer ${token}`);
      expect(status.body).toEqual({ apiKeys: [{ fingerprint: 'ba7816bf' }] });
      const metricsText = await request(app).get('/metrics').set('Authorization', `Bearer ${token}`);
      expect(metricsText.text).toContain('# TYPE prompt_queue_jobs_total counter');
      await request(app).get('/healthz').expect(200);
      await request(app).get('/readyz').expect(200);

      // Without a token both stay open, as before.
      const open = createHealthApp({ redis, isWorkerRunning: () => true, status: async () => ({ ok: true }) });
      await request(open).get('/status').expect(200, { ok: true });
    } finally {
      redis.disconnect();
    }
  });

  it('/readyz is 503 REDIS_UNAVAILABLE when Redis does not answer; /healthz stays 200', async () => {
    const redis = createRedis(`redis://127.0.0.1:${await freePort()}`, 'worker');
    redis.on('error', () => {});
    try {
      const app = createHealthApp({ redis, isWorkerRunning: () => true });
      const res = await request(app).get('/readyz').expect(503);
      expect(res.body).toEqual({ error: { code: 'REDIS_UNAVAILABLE', message: expect.stringContaining('PING') } });
      await request(app).get('/healthz').expect(200);
    } finally {
      redis.disconnect();
    }
  });
});
