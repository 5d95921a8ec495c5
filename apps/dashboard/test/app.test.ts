import { configSchema, createLogger, createRedis, queuePrefix, QueueName, waitForRedis, type ConfigInput } from '@prompt-queue/shared';
import { freePort, startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createApp, type Dashboard } from '../src/app.js';
import type { DashboardAuth } from '../src/auth.js';

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
function dashboardWith(
  overrides: Partial<ConfigInput> = {},
  auth?: DashboardAuth,
): { dashboard: Dashboard; prefix: string; connection: Redis; reader: Redis } {
  // Tagged as the config reads it, so the test's BullMQ queue and the app's are the same.
  const prefix = queuePrefix(uniquePrefix('dash'));
  const config = configSchema.parse({
    env: 'test',
    redis: { url: redis.url, prefix },
    dashboard: { user: USER, password: PASSWORD },
    ...overrides,
  });
  const connection = createRedis(redis.url, 'worker');
  const reader = createRedis(redis.url, 'reader');
  const dashboard = createApp({ config, connection: reader, logger, ...(auth ? { auth } : {}) });
  cleanups.push(async () => {
    await dashboard.close();
    const keys = await connection.keys(`${prefix}:*`);
    if (keys.length > 0) await connection.del(...keys);
    await connection.quit();
    await reader.quit();
  });
  return { dashboard, prefix, connection, reader };
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
    // Nothing from another origin (bull-board's template links Google Fonts): it works offline.
    expect(res.text).not.toMatch(/<(link|script)\b[^>]*\b(href|src)="(https?:)?\/\//);
    expect(res.text).toMatch(/<link href="static\/css\/main\.\w+\.css" rel="stylesheet">/);
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

  it('protects every route: the overview, its API and assets, the board and unknown paths', async () => {
    const { dashboard } = dashboardWith();
    const paths = [
      '/',
      '/api/overview',
      '/assets/overview.js',
      '/assets/overview.css',
      '/assets/vendor/chart.umd.min.js',
      '/assets/favicon.svg',
      '/favicon.ico',
      '/queues',
      '/queues/',
      '/queues/api/queues',
      '/queues/static/images/logo.svg',
      '/nope',
    ];
    for (const path of paths) {
      const res = await request(dashboard.app).get(path);
      expect(res.status, path).toBe(401);
      expect(res.text, path).toBe('Authentication required');
    }
    for (const method of ['put', 'post', 'delete'] as const) {
      expect((await request(dashboard.app)[method]('/queues/api/queues/prompts/retry/failed')).status, method).toBe(401);
    }
  });

  it('serves the overview page, its client and Chart.js from the app itself', async () => {
    const { dashboard } = dashboardWith();
    const page = await request(dashboard.app).get('/').auth(USER, PASSWORD);
    expect(page.status).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.text).toContain('src="assets/vendor/chart.umd.min.js"');
    expect(page.text).not.toMatch(/https?:\/\//);
    const chart = await request(dashboard.app).get('/assets/vendor/chart.umd.min.js').auth(USER, PASSWORD);
    expect(chart.status).toBe(200);
    expect(chart.headers['content-type']).toMatch(/javascript/);
    expect(chart.text).toContain('Chart');
    const client = await request(dashboard.app).get('/assets/overview.js').auth(USER, PASSWORD);
    expect(client.status, 'build the dashboard first: dist/public/client/overview.js').toBe(200);
    expect(client.text).toContain('api/overview');
    expect((await request(dashboard.app).get('/assets/overview.css').auth(USER, PASSWORD)).status).toBe(200);
    // An icon, linked by the page and at /favicon.ico (it used to be a 404).
    expect(page.text).toContain('<link rel="icon" type="image/svg+xml" href="assets/favicon.svg">');
    for (const path of ['/assets/favicon.svg', '/favicon.ico']) {
      const icon = await request(dashboard.app).get(path).auth(USER, PASSWORD);
      expect(icon.status, path).toBe(200);
      expect(icon.headers['content-type'], path).toMatch(/^image\/svg\+xml/);
      expect(String(icon.body), path).toMatch(/^<svg /);
    }
  });

  it('refuses to be framed', async () => {
    const { dashboard } = dashboardWith();
    for (const path of ['/', '/queues/']) {
      expect((await request(dashboard.app).get(path).auth(USER, PASSWORD)).headers['x-frame-options'], path).toBe('DENY');
    }
  });

  it('answers /healthz and /readyz without credentials', async () => {
    const { dashboard, reader } = dashboardWith();
    await waitForRedis(reader);
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

describe('dashboard without configured credentials', () => {
  it('refuses to be built, in any environment: there is no anonymous mode', () => {
    for (const env of ['development', 'production', 'test'] as const) {
      const config = configSchema.parse({ env, redis: { url: redis.url } });
      const connection = createRedis(redis.url, 'worker');
      cleanups.push(() => connection.quit());
      expect(() => createApp({ config, connection, logger }), env).toThrow(/DASHBOARD_USER and DASHBOARD_PASSWORD/);
    }
  });

  it('accepts credentials passed in (generated by main.ts in development)', async () => {
    const { dashboard } = dashboardWith({ dashboard: {} }, { basic: { user: 'admin', password: 'generated' } });
    expect((await request(dashboard.app).get('/queues/api/queues')).status).toBe(401);
    expect((await request(dashboard.app).get('/queues/api/queues').auth('admin', 'generated')).status).toBe(200);
  });
});

describe('dashboard with a token', () => {
  const TOKEN = 'a-long-enough-dashboard-token';

  it('accepts the bearer token and nothing else, and sends no Basic challenge', async () => {
    const { dashboard } = dashboardWith({ dashboard: { token: TOKEN } });
    const anonymous = await request(dashboard.app).get('/api/overview');
    expect(anonymous.status).toBe(401);
    expect(anonymous.headers['www-authenticate']).toBeUndefined();
    expect((await request(dashboard.app).get('/api/overview').set('Authorization', 'Bearer wrong-token-of-some-length')).status).toBe(401);
    expect((await request(dashboard.app).get('/api/overview').set('Authorization', `Bearer ${TOKEN}`)).status).toBe(200);
  });

  it('accepts either the token or basic auth when both are configured', async () => {
    const { dashboard } = dashboardWith({ dashboard: { user: USER, password: PASSWORD, token: TOKEN } });
    expect((await request(dashboard.app).get('/queues/api/queues').set('Authorization', `Bearer ${TOKEN}`)).status).toBe(200);
    expect((await request(dashboard.app).get('/queues/api/queues').auth(USER, PASSWORD)).status).toBe(200);
  });
});
