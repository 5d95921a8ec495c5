import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, QueueName, readDepthHistory, readProviderLatencies } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { FleetHistory } from '../src/fleet-history.js';
import { createWorkerMetrics } from '../src/metrics.js';

const logger = createLogger({ service: 'worker-test', level: 'error' });

describe('FleetHistory (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  beforeAll(async () => {
    server = await startTestRedis();
    redis = new Redis(server.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.stop();
  });

  it("samples the queue's depth by state", async () => {
    const prefix = uniquePrefix('fh');
    const queue = new Queue(QueueName.Prompts, { connection: redis, prefix });
    try {
      await queue.add('generate', { n: 1 });
      await queue.add('generate', { n: 2 }, { priority: 5 });
      await queue.add('generate', { n: 3 }, { delay: 60_000 });
      await new FleetHistory({ redis, prefix, queue, logger }).sampleDepth();
      expect(await readDepthHistory(redis, prefix)).toEqual([{ at: expect.any(Number), waiting: 1, prioritized: 1, delayed: 1, active: 0 }]);
    } finally {
      await queue.close();
    }
  });

  it('records the latency of successful provider calls seen through the metrics, by provider:model', async () => {
    const prefix = uniquePrefix('fh');
    const history = new FleetHistory({ redis, prefix, queue: { name: 'x', getJobCounts: async () => ({}) }, logger });
    const metrics = history.observing(createWorkerMetrics(undefined, { defaultMetrics: false }));
    metrics.recordProviderCall('gemini', 'gemini-2.5-flash', 'success', 0.25);
    metrics.recordProviderCall('gemini', 'gemini-2.5-flash', 'success', 1.5);
    metrics.recordProviderCall('gemini', 'gemini-2.5-flash', 'timeout', 30);
    metrics.recordProviderCall('openai', 'gpt', 'success', 0.1);
    await history.stop();
    const byLink = await readProviderLatencies(redis, prefix);
    expect(Object.fromEntries(Object.entries(byLink).map(([link, values]) => [link, values.sort((a, b) => a - b)]))).toEqual({
      'gemini:gemini-2.5-flash': [250, 1_500],
      'openai:gpt': [100],
    });
    // The metrics themselves still see every call.
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/prompt_queue_provider_request_duration_seconds_count\{[^}]*outcome="timeout"[^}]*\} 1/);
  });
});
