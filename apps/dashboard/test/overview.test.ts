import {
  breakerStatesKey,
  createRedis,
  DEPTH_SAMPLE_MS,
  FleetLimiter,
  LATENCY_WINDOW_MS,
  publishLinks,
  QueueName,
  recordDepthSample,
  recordProviderLatencies,
  UsageLedger,
  type UsageEntry,
} from '@prompt-queue/shared';
import { MetricsTime, Worker } from 'bullmq';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { COST_DAYS, FAILURE_SAMPLE, usageSection, WAIT_SAMPLE } from '../src/overview/collect.js';
import type { Overview } from '../src/overview/types.js';
import { finishJobs } from './fixtures.js';
import { PASSWORD, USER, useDashboards } from './support.js';

const dashboards = useDashboards();

async function overviewOf(app: Parameters<typeof request>[0]): Promise<Overview> {
  const res = await request(app).get('/api/overview').auth(USER, PASSWORD);
  expect(res.status).toBe(200);
  expect(res.headers['cache-control']).toBe('no-store');
  return res.body as Overview;
}

const entry = (tenant: string, model: string, costNanoUsd: number, extra: Partial<UsageEntry> = {}): UsageEntry => ({
  tenant,
  model,
  provider: 'gemini',
  outcome: 'completed',
  usage: { inputTokens: 70, outputTokens: 9, thoughtsTokens: 0, cachedTokens: 0, totalTokens: 79 },
  costNanoUsd,
  cached: false,
  ...extra,
});

describe('GET /api/overview', () => {
  it('answers with empty sections on an empty Redis', async () => {
    const { dashboard } = dashboards.create();
    const view = await overviewOf(dashboard.app);
    expect(view.errors).toEqual([]);
    expect(view.queues.map((q) => q.name)).toEqual(Object.values(QueueName));
    expect(view.queues[0]!.depth).toBe(0);
    expect(view.throughput.completed).toHaveLength(60);
    expect(view.throughput.perMinute).toBe(0);
    expect(view.failures).toEqual({ sampled: 0, limit: FAILURE_SAMPLE, byCode: [] });
    expect(view.usage!.today.totals.jobs).toBe(0);
    expect(view.usage!.daily).toHaveLength(COST_DAYS);
    expect(view.usage!.hourly).toHaveLength(24);
    expect(view.usage!.cacheHitRateToday).toBeNull();
    expect(view.breakers).toEqual([]);
    expect(view.workers).toEqual({ count: 0, list: [] });
    expect(view.budgets).toEqual([]);
    expect(view.depthHistory).toEqual({ sampleMs: DEPTH_SAMPLE_MS, samples: [] });
    expect(view.queueWait).toEqual({ oldestWaitingMs: null, sampled: 0, limit: WAIT_SAMPLE, p50Ms: null, p95Ms: null });
    expect(view.providerLatency).toEqual({ windowMs: LATENCY_WINDOW_MS, links: [] });
    expect(view.readOnly).toBe(false);
    // No limits configured: the default model still shows, without limits.
    expect(view.limits).toEqual([
      expect.objectContaining({ model: 'gemini-3.6-flash', provider: 'gemini', requests: 0, rpmLimit: 0, tpmLimit: 0, rpmUtilization: null, configured: false }),
    ]);
  });

  it('shows what the ledger, the queue, the limiter and the breaker hash say', async () => {
    const { dashboard, connection, queue, prefix } = dashboards.create({ tenants: { acme: { dailyUsd: 1, monthlyUsd: 10 } } });
    const redisUrl = dashboards.redis().url;

    // Finished jobs: two completed, two failed with a code, one unclassified crash.
    const ids = await finishJobs(queue, redisUrl, prefix, [
      { tenant: 'acme', model: 'gemini-3.6-flash' },
      { tenant: 'globex', model: 'gemini-3.5-flash-lite' },
      { tenant: 'acme', model: 'gemini-3.6-flash', fail: '[PROVIDER_UNAVAILABLE] The model is overloaded.' },
      { tenant: 'acme', model: 'gemini-3.6-flash', fail: '[PROVIDER_UNAVAILABLE] Still overloaded.' },
      { tenant: 'globex', model: 'gemini-3.6-flash', fail: 'TypeError: boom' },
    ]);
    // And two still waiting.
    await queue.add('generate', { v: 1, tenant: 'acme', model: 'gemini-3.6-flash' });
    await queue.add('generate', { v: 1, tenant: 'acme', model: 'gemini-3.6-flash' }, { delay: 60_000 });

    const ledger = new UsageLedger(connection, prefix);
    await ledger.record([
      entry('acme', 'gemini-3.6-flash', 520_000),
      entry('globex', 'gemini-3.5-flash-lite', 130_000),
      entry('acme', 'gemini-3.6-flash', 0, { cached: true, savedNanoUsd: 520_000 }),
      entry('acme', 'gemini-3.6-flash', 0, { outcome: 'failed', usage: undefined }),
    ]);

    const limiter = new FleetLimiter(connection, prefix);
    const scope = { provider: 'gemini', model: 'gemini-3.6-flash' };
    await limiter.reserve(scope, { rpm: 0, tpm: 0 }, [100, 200, 300]);
    await limiter.pause(scope, 30_000);

    const since = Date.now() - 5_000;
    await connection.hset(breakerStatesKey(prefix), {
      'gemini:gemini-3.6-flash': JSON.stringify({ state: 'open', since, retryAt: since + 30_000, updatedAt: since, workerId: 'w1' }),
      'openai:gpt': JSON.stringify({ state: 'closed', since: new Date(since).toISOString(), updatedAt: since, workerId: 'w2' }),
      broken: 'not json',
    });

    const view = await overviewOf(dashboard.app);
    expect(view.errors).toEqual([]);

    // Queue counts: exactly getJobCounts().
    const prompts = view.queues.find((q) => q.name === QueueName.Prompts)!;
    expect(prompts.counts).toEqual(await queue.getJobCounts());
    expect(prompts.counts).toMatchObject({ completed: 2, failed: 3, waiting: 1, delayed: 1 });
    expect(prompts.depth).toBe(2);

    // Throughput from the finished sets (the worker records no metrics): all five in the last hour.
    expect(view.throughput.source).toBe('finished-sets');
    expect(view.throughput.completed.reduce((a, b) => a + b, 0)).toBe(2);
    expect(view.throughput.failed.reduce((a, b) => a + b, 0)).toBe(3);
    expect(view.throughput.perMinute).toBeCloseTo(5 / 60);

    // Failures grouped by code, the newest message of each.
    expect(view.failures.sampled).toBe(3);
    expect(view.failures.byCode.map((g) => [g.code, g.count])).toEqual([
      ['PROVIDER_UNAVAILABLE', 2],
      ['INTERNAL', 1],
    ]);
    const unavailable = view.failures.byCode[0]!;
    expect(['The model is overloaded.', 'Still overloaded.']).toContain(unavailable.lastMessage);
    expect(ids).toContain(unavailable.lastJobId);
    expect(unavailable.lastAt).toBeGreaterThan(Date.now() - 60_000);

    // Usage: the ledger's own overview, number for number.
    const expected = usageSection(await ledger.overview({ days: COST_DAYS }));
    expect(view.usage).toEqual(JSON.parse(JSON.stringify(expected)));
    expect(view.usage!.today.totals).toMatchObject({ jobs: 4, failures: 1, cacheHits: 1, costNanoUsd: 650_000, savedNanoUsd: 520_000 });
    expect(view.usage!.today.byTenant.acme!.costNanoUsd).toBe(520_000);
    expect(view.usage!.today.byModel['gemini-3.5-flash-lite']!.costNanoUsd).toBe(130_000);
    expect(view.usage!.cacheHitRateToday).toBe(0.25);
    expect(view.usage!.daily.at(-1)!.costByModel).toEqual({ 'gemini-3.6-flash': 520_000, 'gemini-3.5-flash-lite': 130_000 });
    expect(view.usage!.hourly.at(-1)!.costNanoUsd).toBe(650_000);

    // Limits: the window's usage and the fleet-wide pause.
    const flash = view.limits.find((l) => l.model === 'gemini-3.6-flash')!;
    expect(flash).toMatchObject({ requests: 3, tokens: 600, rpmLimit: 0, tpmLimit: 0, configured: false });
    expect(flash.pausedUntil).toBeGreaterThan(Date.now() + 20_000);
    expect(flash.pauseReason).toBe('rate-limited');

    // Breakers, with an unreadable entry shown as unknown rather than dropped.
    expect(view.breakers).toEqual([
      { link: 'broken', state: 'unknown', since: null, retryAt: null, updatedAt: null, workerId: null },
      { link: 'gemini:gemini-3.6-flash', state: 'open', since, retryAt: since + 30_000, updatedAt: since, workerId: 'w1' },
      { link: 'openai:gpt', state: 'closed', since, retryAt: null, updatedAt: since, workerId: 'w2' },
    ]);

    // Budgets of configured tenants.
    expect(view.budgets).toEqual([
      { tenant: 'acme', remaining: expect.objectContaining({ daily: expect.objectContaining({ limitNanoUsd: 1e9 }), monthly: expect.objectContaining({ limitNanoUsd: 1e10 }) }) },
    ]);
  });

  it('uses BullMQ metrics for throughput when the worker records them, and lists live workers', async () => {
    const { dashboard, queue, prefix } = dashboards.create();
    const redisUrl = dashboards.redis().url;
    await finishJobs(queue, redisUrl, prefix, [
      { tenant: 'acme', model: 'm' },
      { tenant: 'acme', model: 'm' },
      { tenant: 'acme', model: 'm', fail: '[PROVIDER_BAD_REQUEST] no' },
    ], { metrics: true });

    const connection = createRedis(redisUrl, 'worker');
    const worker = new Worker(QueueName.Prompts, async () => null, {
      connection,
      prefix,
      name: 'box-7:4242',
      metrics: { maxDataPoints: MetricsTime.ONE_HOUR },
    });
    await worker.waitUntilReady();
    try {
      const view = await overviewOf(dashboard.app);
      expect(view.throughput.source).toBe('metrics');
      expect(view.throughput.completed.reduce((a, b) => a + b, 0)).toBe(2);
      expect(view.throughput.failed.reduce((a, b) => a + b, 0)).toBe(1);
      expect(view.workers.count).toBe(1);
      expect(view.workers.list[0]).toMatchObject({ name: 'box-7:4242' });
    } finally {
      await worker.close();
      await connection.quit();
    }
  });

  it('shows the workers\' depth history, the queue wait and provider latency per link', async () => {
    const { dashboard, connection, queue, prefix } = dashboards.create();
    const now = Date.now();
    // What workers write (apps/worker/src/fleet-history.ts): two depth samples, and call latencies.
    await recordDepthSample(connection, prefix, { waiting: 3, prioritized: 4, delayed: 1, active: 2 }, now - 20_000);
    await recordDepthSample(connection, prefix, { waiting: 0, prioritized: 1, delayed: 0, active: 1 }, now);
    await recordProviderLatencies(connection, prefix, [
      ...[100, 200, 300, 400, 5_000].map((latencyMs) => ({ link: 'gemini:gemini-3.6-flash', latencyMs, at: now })),
      { link: 'openai:gpt', latencyMs: 80, at: now },
    ]);
    // Completed jobs (their wait: timestamp → processedOn), then two still waiting.
    await finishJobs(queue, dashboards.redis().url, prefix, [{ tenant: 'acme', model: 'm' }, { tenant: 'acme', model: 'm' }]);
    const oldest = await queue.add('generate', { v: 1, tenant: 'acme', model: 'm' }, { priority: 9, timestamp: now - 90_000 });
    await queue.add('generate', { v: 1, tenant: 'globex', model: 'm' }, { priority: 1 });

    const view = await overviewOf(dashboard.app);
    expect(view.errors).toEqual([]);
    expect(view.depthHistory.samples.map(({ waiting, prioritized, delayed, active }) => [waiting, prioritized, delayed, active])).toEqual([
      [3, 4, 1, 2],
      [0, 1, 0, 1],
    ]);
    expect(oldest.id).toBeDefined();
    expect(view.queueWait.oldestWaitingMs).toBeGreaterThanOrEqual(90_000);
    expect(view.queueWait.oldestWaitingMs).toBeLessThan(120_000);
    expect(view.queueWait.sampled).toBe(2);
    expect(view.queueWait.p50Ms).toBeGreaterThanOrEqual(0);
    expect(view.queueWait.p95Ms).toBeGreaterThanOrEqual(view.queueWait.p50Ms!);
    expect(view.providerLatency.links).toEqual([
      { link: 'gemini:gemini-3.6-flash', calls: 5, p50Ms: 300, p95Ms: 5_000 },
      { link: 'openai:gpt', calls: 1, p50Ms: 80, p95Ms: 80 },
    ]);
  });

  it('reports a section that cannot be read and still answers the rest', async () => {
    const { dashboard, connection, prefix } = dashboards.create();
    // A breaker key of the wrong type makes HGETALL fail.
    await connection.set(breakerStatesKey(prefix), 'oops');
    const view = await overviewOf(dashboard.app);
    expect(view.errors).toEqual([{ section: 'breakers', message: expect.stringMatching(/WRONGTYPE/) }]);
    expect(view.queues[0]!.counts).toBeDefined();
  });

  it('shows the links the workers publish, whatever their provider, and their limiter scopes', async () => {
    const { dashboard, connection, prefix } = dashboards.create();
    const now = Date.now();
    const toy = {
      id: 'toy:toy-model:default',
      provider: 'toy',
      name: 'toy',
      model: 'toy-model',
      limitKey: { provider: 'toy-pool', model: 'toy-model', project: 'default' },
      limits: { rpm: 7, tpm: 0 },
      credentials: [{ fingerprint: 'sha256:0123abcd', state: 'ok' as const }],
      updatedAt: now,
      workerId: 'host:1',
    };
    // A link published longer ago than the TTL has faded out.
    await publishLinks(connection, prefix, [toy, { ...toy, id: 'old:toy-model:default', updatedAt: now - 10 * 60_000 }]);
    const view = await overviewOf(dashboard.app);
    expect(view.links).toEqual([toy]);
    expect(view.limits).toContainEqual(expect.objectContaining({ provider: 'toy-pool', model: 'toy-model', project: 'default', rpmLimit: 7, configured: true }));
  });
});
