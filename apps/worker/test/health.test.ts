import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import request from 'supertest';
import { createRedis } from '@prompt-queue/shared';
import { freePort, startTestRedis, type TestRedis } from '@prompt-queue/shared/testing';
import { createHealthApp } from '../src/health.js';

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
