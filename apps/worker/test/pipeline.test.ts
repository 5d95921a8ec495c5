import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Queue } from 'bullmq';
import { startEmulatorProcess, embedText, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createLogger, createRedis, promptJobResultSchema, QueueName, type Config } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import { createPromptWorker, type PromptWorker } from '../src/worker.js';
import { enqueue, MODEL, promptData, testConfig, waitForJob } from './helpers.js';

const EMBED_MODEL = 'gemini-embedding-001';

/** The batch pipeline in-process (one worker, spies on real objects), against the emulator process. */
describe('batch pipeline (real Redis, emulator process)', () => {
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

  function setup(env: Record<string, string> = {}, tenants: Config['tenants'] = {}) {
    const config: Config = testConfig({
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('b'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      ...env,
    });
    config.tenants = tenants;
    const worker: PromptWorker = createPromptWorker({ config, logger: createLogger({ service: 'worker-test', level: 'error' }) });
    cleanups.push(() => worker.close(1_000));
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    return { config, queue, worker };
  }

  it('embed jobs of one model go out as ONE batchEmbedContents call', async () => {
    const { config, queue, worker } = setup({ BATCH_MAX_WAIT_MS: '5000' });
    await emulator.client.setLatency(300);
    // A lone job on an idle route goes out at once; the next ones gather while it is in flight.
    const primer = await enqueue(queue, config, promptData({ kind: 'embed', model: EMBED_MODEL, text: 'primer' }));
    await waitFor(async () => (await emulator.client.counters()).totalCalls === 1, { what: 'the primer call' });
    const texts = Array.from({ length: 10 }, (_, i) => `document number ${i}`);
    const ids: string[] = [];
    for (const text of texts) ids.push(await enqueue(queue, config, promptData({ kind: 'embed', model: EMBED_MODEL, text, outputDimensionality: 64 })));
    await waitForJob(queue, primer, ['completed']);
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'])));

    expect(done.map((d) => d.state)).toEqual(texts.map(() => 'completed'));
    done.forEach((d, i) => {
      const result = promptJobResultSchema.parse(d.job.returnvalue);
      expect(result).toMatchObject({ text: '', provider: 'gemini', model: EMBED_MODEL });
      expect(result.embedding).toEqual(embedText(texts[i]!, 64));
      expect(result.costUsd).toBeGreaterThan(0);
    });
    const counters = await emulator.client.counters();
    expect(counters.byModel[EMBED_MODEL]!.byMethod).toEqual({ batchEmbedContents: 2 });
    expect(worker.stats.snapshot().batches.bySize).toEqual({ 1: 1, 10: 1 });
  });

  it('Redis bookkeeping is a constant number of round trips per batch or settle step, not one per job (limiter, budget, cache, usage)', async () => {
    const { config, queue, worker } = setup({ BATCH_SIZE: '16', BATCH_MAX_WAIT_MS: '200', GEMINI_RPM: '1000', GEMINI_TPM: '1000000', GEMINI_MODEL: MODEL });
    const calls: Record<string, number> = {};
    const spy = <T extends object>(target: T, methods: (keyof T & string)[], label: string) => {
      for (const method of methods) {
        calls[`${label}.${method}`] = 0;
        const original = (target[method] as (...args: unknown[]) => unknown).bind(target);
        vi.spyOn(target, method as never).mockImplementation(((...args: unknown[]) => {
          calls[`${label}.${method}`]! += 1;
          return original(...args);
        }) as never);
      }
    };
    spy(worker.limiter, ['reserve', 'settle', 'release', 'pause', 'observeRateLimit'], 'limiter');
    spy(worker.budgets, ['reserve', 'settle'], 'budget');
    spy(worker.cache!, ['lookupAndClaim', 'appendStore', 'appendRelease'], 'cache');
    spy(worker.ledger, ['record'], 'usage');
    await emulator.client.setLatency(200);
    const ids = await Promise.all(Array.from({ length: 49 }, (_, i) => enqueue(queue, config, promptData({ text: `job ${i}` }))));
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'])));
    expect(done.every((d) => d.state === 'completed')).toBe(true);

    const { batches } = worker.stats.snapshot();
    console.log('bookkeeping', JSON.stringify({ jobs: 49, batches, calls }));
    expect(batches.jobs).toBe(49);
    expect(batches.largest).toBeGreaterThan(1);
    // Before the calls, per batch: one cache pipeline (MGET + in-flight claims), one budget script
    // call, one limiter reserve (one link); after them, the batch's claims are released once.
    for (const name of ['limiter.reserve', 'budget.reserve', 'cache.lookupAndClaim', 'cache.appendRelease']) {
      expect(calls[name], name).toBe(batches.count);
    }
    // Served jobs settle as they come back, gathered across batches (for 25 ms at most): each
    // settle step writes limiter settle, budget settle, cache store and usage together.
    const settles = calls['usage.record']!;
    for (const name of ['limiter.settle', 'budget.settle', 'cache.appendStore']) expect(calls[name], name).toBe(settles);
    expect(calls['limiter.release']).toBe(0);
    expect(calls['limiter.reserve']).toBeLessThan(49);
    expect(settles).toBeLessThan(49);
  });

  it('the budget reserve and settle go to Redis once per batch for a budgeted tenant', async () => {
    const { config, queue, worker } = setup({ BATCH_SIZE: '16', BATCH_MAX_WAIT_MS: '200' }, { acme: { dailyUsd: 1000, onExceeded: 'fail' } });
    const evals = { count: 0 };
    const settle = vi.spyOn(worker.budgets, 'settle');
    const connection = (worker.budgets as unknown as { redis: { evalsha: (...args: unknown[]) => Promise<unknown> } }).redis;
    const original = connection.evalsha.bind(connection);
    vi.spyOn(connection, 'evalsha').mockImplementation((...args: unknown[]) => {
      // The budget scripts name the tenant's reserved counter first.
      if (String(args[2]).includes(':budget:')) evals.count += 1;
      return original(...args);
    });
    await emulator.client.setLatency(200);
    const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => enqueue(queue, config, promptData({ text: `budgeted ${i}`, generationConfig: { maxOutputTokens: 64 } }))));
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'])));
    expect(done.every((d) => d.state === 'completed')).toBe(true);
    const { batches } = worker.stats.snapshot();
    console.log('budget round trips', JSON.stringify({ jobs: 40, batches: batches.count, budgetScriptCalls: evals.count, settleSteps: settle.mock.calls.length }));
    // One reserve per batch, one settle per settle step (served jobs gathered across batches).
    expect(evals.count).toBe(batches.count + settle.mock.calls.length);
    expect(settle.mock.calls.length).toBeLessThan(40);
    const remaining = await worker.budgets.remaining('acme');
    expect(remaining.daily!.reservedNanoUsd).toBe(0);
    const usage = await worker.ledger.tenantUsage('acme');
    expect(remaining.daily!.spentNanoUsd).toBe(usage.today.costNanoUsd);
  });

  it('when every link of the chain is open, jobs wait (no attempt spent) and complete after the outage', async () => {
    const { config, queue, worker } = setup({
      BREAKER_VOLUME_THRESHOLD: '2',
      BREAKER_RESET_TIMEOUT_MS: '700',
      JOB_ATTEMPTS: '3',
    });
    await emulator.client.addFault({ kind: 'unavailable', model: MODEL, durationMs: 2_500 });
    const ids: string[] = [];
    for (let i = 0; i < 8; i++) {
      ids.push(await enqueue(queue, config, promptData({ text: `during outage ${i}` })));
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await waitFor(() => worker.chains.all()[0]?.breaker.state.state === 'open', { what: 'the breaker to open' });
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'], 15_000)));
    expect(done.map((d) => d.state)).toEqual(ids.map(() => 'completed'));
    // Only the calls that opened the breaker spent attempts; waiting for it spent none.
    expect(Math.max(...done.map((d) => d.job.attemptsMade))).toBeLessThanOrEqual(3);
  });
});
