import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createLogger, createRedis, promptJobResultSchema, QueueName, type AuditLog } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import { createPromptWorker, type PromptWorker } from '../src/worker.js';
import { enqueue, promptData, testConfig, waitForJob } from './helpers.js';

/**
 * Defect 10 of issue 14: a cache hit (`cached: true`, `costUsd: 0`) tells its tenant that someone
 * already sent the same prompt. The response cache, its in-flight claims and the dedupe of a batch
 * are per tenant unless RESPONSE_CACHE_SHARED opts in.
 */
describe('response cache across tenants (real Redis, worker, emulator process)', () => {
  let redisServer: TestRedis;
  let emulator: EmulatorProcess;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    [redisServer, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess()]);
  });
  afterAll(async () => {
    await Promise.all([emulator?.stop(), redisServer?.stop()]);
  });
  beforeEach(async () => {
    await emulator.client.reset();
    await emulator.client.setLatency(0);
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function setup(env: Record<string, string> = {}) {
    const config = testConfig({
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('tcache'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      ...env,
    });
    const audit: AuditLog = { write: () => {}, close: async () => {} };
    const worker: PromptWorker = createPromptWorker({ config, logger: createLogger({ service: 'worker-test', level: 'error' }), audit });
    cleanups.push(() => worker.close(1_000));
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    return { config, queue, worker };
  }

  const calls = async () => (await emulator.client.counters()).totalCalls;
  const PROMPT = 'What did tenant A ask?';

  /** A's prompt, then B's identical one; B's result. */
  async function aThenB(env: Record<string, string> = {}) {
    const { config, queue, worker } = setup(env);
    const a = await waitForJob(queue, await enqueue(queue, config, promptData({ tenant: 'acme', text: PROMPT })), ['completed']);
    expect(promptJobResultSchema.parse(a.job.returnvalue).cached).toBe(false);
    const b = await waitForJob(queue, await enqueue(queue, config, promptData({ tenant: 'globex', text: PROMPT })), ['completed']);
    return { result: promptJobResultSchema.parse(b.job.returnvalue), worker, config, queue };
  }

  it("by default, B sending A's prompt is not served A's answer: B makes its own call and pays for it", async () => {
    const { result, worker, config, queue } = await aThenB();
    expect(result.cached).toBe(false);
    expect(result.costNanoUsd).toBeGreaterThan(0);
    expect(await calls()).toBe(2);
    expect((await worker.ledger.tenantUsage('globex')).today).toMatchObject({ jobs: 1, cacheHits: 0 });
    // Each tenant still has its own cache: B's repeat is a hit.
    const again = await waitForJob(queue, await enqueue(queue, config, promptData({ tenant: 'globex', text: PROMPT })), ['completed']);
    expect(promptJobResultSchema.parse(again.job.returnvalue)).toMatchObject({ cached: true, costNanoUsd: 0 });
    expect(await calls()).toBe(2);
  });

  it("RESPONSE_CACHE_SHARED=true: B is served A's answer from the cache, no call", async () => {
    const { result, worker } = await aThenB({ RESPONSE_CACHE_SHARED: 'true' });
    expect(result).toMatchObject({ cached: true, costUsd: 0, costNanoUsd: 0 });
    expect(await calls()).toBe(1);
    expect((await worker.ledger.tenantUsage('globex')).today).toMatchObject({ jobs: 1, cacheHits: 1 });
  });

  /** Identical jobs of two tenants gathered into one batch (behind a slow primer call). */
  async function oneBatch(env: Record<string, string> = {}) {
    const { config, queue } = setup({ BATCH_MAX_WAIT_MS: '5000', BATCH_SIZE: '16', ...env });
    await emulator.client.setLatency(300);
    const primer = await enqueue(queue, config, promptData({ text: 'primer' }));
    await waitFor(async () => (await calls()) === 1, { what: 'the primer call' });
    const ids = await Promise.all(
      ['acme', 'globex', 'acme', 'globex'].map((tenant) => enqueue(queue, config, promptData({ tenant, text: 'same question, one batch' }))),
    );
    await waitForJob(queue, primer, ['completed']);
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'])));
    expect(done.map((d) => d.state)).toEqual(ids.map(() => 'completed'));
    return done.map((d) => ({ tenant: (d.job.data as { tenant: string }).tenant, cached: promptJobResultSchema.parse(d.job.returnvalue).cached }));
  }

  it('identical jobs of two tenants in one batch: one call per tenant, never one for both', async () => {
    const results = await oneBatch();
    for (const tenant of ['acme', 'globex']) {
      expect(results.filter((r) => r.tenant === tenant && !r.cached), tenant).toHaveLength(1);
    }
    expect(await calls()).toBe(1 + 2);
  });

  it('RESPONSE_CACHE_SHARED=true: identical jobs of two tenants in one batch make one call', async () => {
    const results = await oneBatch({ RESPONSE_CACHE_SHARED: 'true' });
    expect(results.filter((r) => !r.cached)).toHaveLength(1);
    expect(await calls()).toBe(1 + 1);
  });
});
