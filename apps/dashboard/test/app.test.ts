import { configSchema, createLogger, createRedis, QueueName, type ConfigInput } from '@prompt-queue/shared';
import { freePort, startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type Dashboard } from '../src/app.js';

const USER = 'admin';
const PASSWORD = 'pa:ss w0rd'; // a colon and a space: only the first colon separates user from password
const logger = createLogger({ service: 'dashboard-test', level: 'error' });

let redis: TestRedis;
const cleanups: Array<() => Promise<unknown>> = [];

beforeAll(async () => {
  redis = await startTestRedis();
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

afterAll(async () => {
  await redis?.stop();
});

/** A dashboard on a fresh key prefix, closed (and its keys removed) after the test. */
function dashboardWith(overrides: Partial<ConfigInput> = {}): { dashboard: Dashboard; prefix: string; connection: Redis } {
  const prefix = uniquePrefix('dash');
  const config = configSchema.parse({
    env: 'test',
    redis: { url: redis.url, prefix },
    dashboard: { user: USER, password: PASSWORD },
    ...overrides,
  });
  const connection = createRedis(redis.url, 'worker');
  const dashboard = createApp({ config, connection, logger });
  cleanups.push(async () => {
    await dashboard.close();
    const keys = await connection.keys(`${prefix}:*`);
    if (keys.length > 0) await connection.del(...keys);
    await connection.quit();
  });
  return { dashboard, prefix, connection };
}

describe('dashboard with credentials', () => {
  it('answers 401 with a Basic challenge without credentials', async () => {
    const { dashboard } = dashboardWith();
    const res = await request(dashboard.app).get('/queues');
    expect(res.status).toBe(401);
    expect(res.headers['www-authenticate']).toBe('Basic realm="prompt-queue"');
  });

  it('answers 401 to a wrong password or user, and to a malformed header', async () => {
    const { dashboard } = dashboardWith();
    expect((await request(dashboard.app).get('/queues').auth(USER, 'wrong')).status).toBe(401);
    expect((await request(dashboard.app).get('/queues').auth('root', PASSWORD)).status).toBe(401);
    expect((await request(dashboard.app).get('/queues').set('Authorization', 'Bearer abc')).status).toBe(401);
    expect((await request(dashboard.app).get('/queues').set('Authorization', 'Basic %%%')).status).toBe(401);
  });

  it('serves the bull-board UI with credentials', async () => {
    const { dashboard } = dashboardWith();
    const res = await request(dashboard.app).get('/queues').auth(USER, PASSWORD);
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/text\/html/);
    expect(res.text).toContain('<base href="/queues/"');
  });

  it("lists the prompts queue and its counts in bull-board's JSON API", async () => {
    const { dashboard, prefix, connection } = dashboardWith();
    const queue = new Queue(QueueName.Prompts, { connection, prefix });
    cleanups.push(() => queue.close());
    await queue.add('generate', { hello: 'world' });

    expect((await request(dashboard.app).get('/queues/api/queues')).status).toBe(401);
    const res = await request(dashboard.app).get('/queues/api/queues').auth(USER, PASSWORD);
    expect(res.status).toBe(200);
    const prompts = (res.body as { queues: Array<{ name: string; counts: Record<string, number> }> }).queues.find(
      (entry) => entry.name === QueueName.Prompts,
    );
    expect(prompts).toBeDefined();
    expect(prompts!.counts.waiting).toBe(1);
    expect(prompts!.counts.failed).toBe(0);
  });

  it('protects static assets too', async () => {
    const { dashboard } = dashboardWith();
    for (const asset of ['/queues/static/favicon-32x32.png', '/queues/static/images/logo.svg']) {
      expect((await request(dashboard.app).get(asset)).status, asset).toBe(401);
      expect((await request(dashboard.app).get(asset).auth(USER, PASSWORD)).status, asset).toBe(200);
    }
  });

  it('protects the root and unknown paths, and redirects / to the board', async () => {
    const { dashboard } = dashboardWith();
    expect((await request(dashboard.app).get('/')).status).toBe(401);
    expect((await request(dashboard.app).get('/nope')).status).toBe(401);
    const res = await request(dashboard.app).get('/').auth(USER, PASSWORD);
    expect(res.status).toBe(302);
    expect(res.headers.location).toBe('/queues/');
  });

  it('answers /healthz and /readyz without credentials', async () => {
    const { dashboard, connection } = dashboardWith();
    await connection.ping();
    const health = await request(dashboard.app).get('/healthz');
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: 'ok' });
    const ready = await request(dashboard.app).get('/readyz');
    expect(ready.status).toBe(200);
    expect(ready.body).toEqual({ status: 'ok', redis: 'up' });
  });

  it('is not ready while Redis is unreachable, but still alive', async () => {
    // Nothing listens on a fresh free port: the connection keeps reconnecting.
    const connection = createRedis(`redis://127.0.0.1:${await freePort()}`, 'worker');
    connection.on('error', () => {});
    const config = configSchema.parse({ env: 'test', dashboard: { user: USER, password: PASSWORD } });
    const dashboard = createApp({ config, connection, logger });
    cleanups.push(async () => {
      connection.disconnect();
      await dashboard.close();
    });
    expect((await request(dashboard.app).get('/readyz')).status).toBe(503);
    expect((await request(dashboard.app).get('/healthz')).status).toBe(200);
  });
});

describe('dashboard without credentials', () => {
  it('serves without auth outside production', async () => {
    const { dashboard } = dashboardWith({ dashboard: {} });
    expect((await request(dashboard.app).get('/queues')).status).toBe(200);
    expect((await request(dashboard.app).get('/queues/api/queues')).status).toBe(200);
  });

  it('refuses to be built in production', () => {
    const config = configSchema.parse({ env: 'production', redis: { url: redis.url } });
    const connection = createRedis(redis.url, 'worker');
    cleanups.push(() => connection.quit());
    expect(() => createApp({ config, connection, logger })).toThrow(/DASHBOARD_USER and DASHBOARD_PASSWORD/);
  });
});
