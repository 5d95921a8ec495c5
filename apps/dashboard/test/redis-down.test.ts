// The dashboard while its Redis is gone or hangs: a private redis-server per test, stopped or
// frozen (SIGSTOP) by the test. Every answer must come within 2 s and say since when Redis is
// unavailable; before the fix the overview and bull-board's API hung for more than 60 s.
import { configSchema, createLogger, createRedis, waitForRedis } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, type Dashboard } from '../src/app.js';
import type { Overview } from '../src/overview/types.js';
import { PASSWORD, USER } from './support.js';

const logger = createLogger({ service: 'dashboard-test', level: 'error' });
const ANSWER_WITHIN_MS = 2_000;

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function dashboardOnOwnRedis(): Promise<{ redis: TestRedis; dashboard: Dashboard; reader: Redis }> {
  const redis = await startTestRedis();
  const config = configSchema.parse({ env: 'test', redis: { url: redis.url, prefix: uniquePrefix('down') }, dashboard: { user: USER, password: PASSWORD } });
  const reader = createRedis(redis.url, 'reader');
  reader.on('error', () => {});
  const dashboard = createApp({ config, connection: reader, logger });
  cleanups.push(async () => {
    await redis.stop();
    await dashboard.close();
    reader.disconnect();
  });
  await waitForRedis(reader);
  return { redis, dashboard, reader };
}

/** A GET with credentials, and how long its answer took. */
async function timed(dashboard: Dashboard, path: string): Promise<{ res: request.Response; ms: number }> {
  const started = Date.now();
  const res = await request(dashboard.app).get(path).auth(USER, PASSWORD);
  return { res, ms: Date.now() - started };
}

describe('dashboard while Redis is unavailable (a private redis-server the test stops)', () => {
  it('the overview says "Redis unavailable since …" within 2 s of asking, bull-board\'s API answers 503, /readyz 503', async () => {
    const { redis, dashboard } = await dashboardOnOwnRedis();
    const before = await timed(dashboard, '/api/overview');
    expect((before.res.body as Overview).redis).toEqual({ status: 'up' });
    expect((before.res.body as Overview).errors).toEqual([]);

    const stoppedAt = Date.now();
    await redis.stop();

    const overview = await timed(dashboard, '/api/overview');
    expect(overview.res.status).toBe(200);
    expect(overview.ms).toBeLessThan(ANSWER_WITHIN_MS);
    const view = overview.res.body as Overview;
    expect(view.redis).toEqual({ status: 'unavailable', since: expect.any(Number), reason: expect.any(String) });
    if (view.redis.status !== 'unavailable') throw new Error('unreachable');
    expect(view.redis.since).toBeGreaterThanOrEqual(stoppedAt - 50);
    expect(view.redis.since).toBeLessThanOrEqual(Date.now());
    expect(view.errors[0]).toEqual({ section: 'redis', message: expect.stringMatching(/^Redis unavailable since \d{4}-\d\d-\d\dT/) });
    // Empty, not zero: nothing could be read.
    expect(view.usage).toBeNull();
    expect(view.queues).toEqual([]);

    const board = await timed(dashboard, '/queues/api/queues');
    expect(board.ms).toBeLessThan(ANSWER_WITHIN_MS);
    expect(board.res.status).toBe(503);
    expect(board.res.body).toEqual({ error: { code: 'REDIS_UNAVAILABLE', message: expect.stringMatching(/^Redis unavailable since /) } });

    // The same outage: `since` does not move while it lasts.
    const again = await timed(dashboard, '/api/overview');
    expect((again.res.body as Overview).redis).toMatchObject({ status: 'unavailable', since: view.redis.since });
    expect((await request(dashboard.app).get('/readyz')).status).toBe(503);
    console.log(`[redis-down] overview answered in ${overview.ms} ms, bull-board API in ${board.ms} ms`);
  });

  it('a Redis that holds the connection but does not answer (SIGSTOP): answers within 2 s, and recovers when it resumes', async () => {
    const { redis, dashboard } = await dashboardOnOwnRedis();
    redis.pause!();
    try {
      const overview = await timed(dashboard, '/api/overview');
      const seen = JSON.stringify(overview.res.body);
      expect(overview.res.status, seen).toBe(200);
      expect(overview.ms, seen).toBeLessThan(ANSWER_WITHIN_MS);
      expect((overview.res.body as Overview).redis, seen).toMatchObject({ status: 'unavailable', reason: expect.stringMatching(/timed out|did not answer/) });

      const board = await timed(dashboard, '/queues/api/queues');
      expect(board.ms).toBeLessThan(ANSWER_WITHIN_MS);
      expect(board.res.status).toBe(503);
      expect(board.res.body).toEqual({ error: { code: 'REDIS_UNAVAILABLE', message: expect.stringMatching(/^Redis did not answer \(Command timed out\); retry shortly\.$/) } });
      console.log(`[redis-down] frozen Redis: overview answered in ${overview.ms} ms, bull-board API in ${board.ms} ms`);
    } finally {
      redis.resume!();
    }
    // The first reads after SIGCONT may still time out behind the backlog; the next ones answer.
    const after = await waitFor(
      async () => {
        const view = (await timed(dashboard, '/api/overview')).res.body as Overview;
        return view.redis.status === 'up' ? view : undefined;
      },
      { timeoutMs: 10_000, what: 'the overview to see Redis up again' },
    );
    expect(after.errors).toEqual([]);
    expect((await timed(dashboard, '/queues/api/queues')).res.status).toBe(200);
  });
});
