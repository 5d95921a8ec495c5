import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import {
  costNanoUsd,
  createLogger,
  createRedis,
  jobView,
  promptJobOptions,
  promptJobResultSchema,
  QueueName,
  type Config,
  type PromptJobData,
  type PromptJobResult,
} from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import type { BatchApi } from '../src/tiers/batch-api.js';
import { batchApis } from '../src/tiers/batch-link.js';
import { createPromptWorker, type PromptWorker } from '../src/worker.js';
import { MODEL, promptData, testConfig, waitForJob } from './helpers.js';

/**
 * Deadline-aware tiers (issue 11, item 4) through real Redis, the emulator process and the real
 * @google/genai 2.32.0 SDK. Deadlines are checked against Date.now: the 24 h and 2 min deadlines are
 * real; the "deadline comes near" case scales the thresholds down through config instead of waiting.
 */
describe('deadline-aware tiers (real Redis, emulator process, @google/genai)', () => {
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
    await emulator.client.setBatchConfig({ pendingMs: 0, completeAfterMs: 50, expireAfterMs: null, requestErrorEvery: null });
    await emulator.client.setFlex({ latencyMs: 0, jitterMs: 0, shedProbability: 0, maxConcurrent: null });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function setup(
    tiers: { batch?: Partial<Config['tiers']['batch']>; flex?: Partial<Config['tiers']['flex']> } = {},
    options: { batchApiFor?: (model: string) => BatchApi; env?: Record<string, string>; tenants?: Config['tenants'] } = {},
  ) {
    const config: Config = testConfig({
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('tier'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      WORKER_CONCURRENCY: '200',
      BATCH_SIZE: '64',
      ...options.env,
    });
    config.tiers.batch = { ...config.tiers.batch, pollIntervalMs: 100, maxCollectMs: 500, minJobs: 10_000, ...tiers.batch };
    config.tiers.flex = { ...config.tiers.flex, ...tiers.flex };
    if (options.tenants) config.tenants = options.tenants;
    const worker: PromptWorker = createPromptWorker({
      config,
      logger: createLogger({ service: 'worker-test', level: (process.env.TIER_LOG as 'info') ?? 'error' }),
      ...(options.batchApiFor ? { batchApiFor: options.batchApiFor } : {}),
    });
    cleanups.push(() => worker.close(2_000));
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    return { config, queue, worker };
  }

  async function enqueueMany(queue: Queue, config: Config, count: number, deadline: number, text = (i: number) => `Tier job ${i}: say something.`): Promise<string[]> {
    const jobs = Array.from({ length: count }, (_, i) => {
      const id = `tier-${i}-${Math.random().toString(36).slice(2, 10)}`;
      const data: PromptJobData = promptData({ text: text(i), deadline, generationConfig: { maxOutputTokens: 64 } });
      return { name: 'generate', data, opts: promptJobOptions(config, id, 'normal') };
    });
    await queue.addBulk(jobs);
    return jobs.map((job) => job.opts.jobId!);
  }

  async function allFinished(queue: Queue, ids: readonly string[], timeoutMs: number): Promise<void> {
    await waitFor(
      async () => {
        const counts = await queue.getJobCounts('completed', 'failed');
        return (counts.completed ?? 0) + (counts.failed ?? 0) >= ids.length ? true : undefined;
      },
      { timeoutMs, intervalMs: 100, what: `${ids.length} jobs to finish` },
    );
  }

  async function results(queue: Queue, ids: readonly string[]): Promise<PromptJobResult[]> {
    const jobs = await Promise.all(ids.map((id) => queue.getJob(id)));
    return jobs.map((job) => promptJobResultSchema.parse(job!.returnvalue));
  }

  it('1,000 jobs with a 24 h deadline go through a few batches, each at exactly half the standard cost', async () => {
    const { config, queue, worker } = setup({ batch: { minJobs: 400, maxCollectMs: 1_000 } });
    const deadline = Date.now() + 24 * 3600_000;
    const started = Date.now();
    const ids = await enqueueMany(queue, config, 1_000, deadline);

    // While waiting: status says tier batch and waiting-in-batch.
    const { job: waiting } = await waitForJob(queue, ids[0]!, ['delayed', 'completed'], 20_000);
    if ((await queue.getJobState(ids[0]!)) === 'delayed') {
      const view = jobView(waiting, 'queued', { model: MODEL });
      expect(view.tier).toBe('batch');
      expect(view.waiting?.reason).toBe('waiting-in-batch');
    }

    await allFinished(queue, ids, 90_000);
    const elapsedMs = Date.now() - started;
    const counters = await emulator.client.counters();
    const out = await results(queue, ids);
    expect(out).toHaveLength(1_000);
    const price = config.prices[MODEL]!;
    let standardTotal = 0;
    let batchTotal = 0;
    for (const result of out) {
      expect(result.tier).toBe('batch');
      const standard = costNanoUsd(result.usage, price);
      expect(standard % 2).toBe(0);
      expect(result.costNanoUsd).toBe(standard / 2);
      standardTotal += standard;
      batchTotal += result.costNanoUsd!;
    }
    expect(counters.batches.created).toBeGreaterThanOrEqual(1);
    expect(counters.batches.created).toBeLessThanOrEqual(5);
    expect(counters.batches.requests).toBe(1_000);
    // Not one standard generateContent call.
    expect(counters.byTier?.['standard']?.calls ?? 0).toBe(0);
    const usage = await worker.ledger.tenantUsage('acme');
    expect(usage.today.batchCostNanoUsd).toBe(batchTotal);
    expect(usage.today.batchSavedNanoUsd).toBe(standardTotal - batchTotal);
    expect(usage.today.costNanoUsd).toBe(batchTotal);
    console.info(`[tiers] 1,000 jobs: ${counters.batches.created} batches, ${elapsedMs} ms, standard ${standardTotal} nano-USD, batch ${batchTotal} nano-USD`);
  }, 120_000);

  it('five jobs whose deadline is 2 minutes never wait for a batch', async () => {
    const { config, queue } = setup({ batch: { minJobs: 1, maxCollectMs: 1 } });
    const started = Date.now();
    const ids = await enqueueMany(queue, config, 5, Date.now() + 120_000);
    await allFinished(queue, ids, 10_000);
    const servedMs = Date.now() - started;
    for (const result of await results(queue, ids)) expect(result.tier).toBe('standard');
    for (const id of ids) expect((await queue.getJob(id))!.progress).toBe(0);
    expect((await emulator.client.counters()).batches.created).toBe(0);
    expect(servedMs).toBeLessThan(5_000);
    console.info(`[tiers] 5 jobs with a 2 min deadline served standard in ${servedMs} ms`);
  });

  it('Flex: jobs that may wait an hour are sent Flex and priced at exactly half the standard cost', async () => {
    const { config, queue, worker } = setup({ flex: { enabled: true } });
    await emulator.client.setFlex({ latencyMs: 300, jitterMs: 200, shedProbability: 0, maxConcurrent: null });
    const ids = await enqueueMany(queue, config, 10, Date.now() + 3600_000);
    await allFinished(queue, ids, 20_000);
    const price = config.prices[MODEL]!;
    let flexTotal = 0;
    let standardTotal = 0;
    for (const result of await results(queue, ids)) {
      expect(result.tier).toBe('flex');
      const standard = costNanoUsd(result.usage, price);
      expect(result.costNanoUsd).toBe(standard / 2);
      flexTotal += result.costNanoUsd!;
      standardTotal += standard;
    }
    const counters = await emulator.client.counters();
    expect(counters.byTier?.['flex']).toMatchObject({ calls: 10, served: 10, shed: 0 });
    const usage = await worker.ledger.tenantUsage('acme');
    expect(usage.today).toMatchObject({ costNanoUsd: flexTotal, flexCostNanoUsd: flexTotal, flexSavedNanoUsd: standardTotal - flexTotal });
  });

  it('Flex shed: each shed job is sent standard at once on the same link, same attempt, and the breaker stays closed', async () => {
    const { config, queue, worker } = setup({ flex: { enabled: true } });
    await emulator.client.setFlex({ latencyMs: 0, jitterMs: 0, shedProbability: 1, maxConcurrent: null });
    const ids = await enqueueMany(queue, config, 10, Date.now() + 3600_000);
    await allFinished(queue, ids, 20_000);
    for (const result of await results(queue, ids)) expect(result.tier).toBe('standard');
    for (const id of ids) expect((await queue.getJob(id))!.attemptsMade).toBe(1);
    const counters = await emulator.client.counters();
    expect(counters.byTier?.['flex']).toMatchObject({ calls: 10, shed: 10, served: 0 });
    expect(counters.totals.successes).toBe(10);
    // Ten sheds are more than the breaker's volume threshold: counted, they would have opened it.
    const [link] = worker.chains.linksFor('generate', MODEL);
    expect(link!.breaker.state.state).toBe('closed');
  });

  it("Flex late: a Flex call that has not answered when only a standard call's time is left goes standard, before the deadline", async () => {
    // Flex call timeout = time to the deadline − GEMINI_TIMEOUT_MS: 9 s − 4 s.
    const { config, queue } = setup({ flex: { enabled: true, minRemainingMs: 5_000 } }, { env: { GEMINI_TIMEOUT_MS: '4000' } });
    // A fresh key carries one probe call at a time (key-ring.ts), and a timeout proves nothing: prove it first.
    const warm = await enqueueMany(queue, config, 1, Date.now() + 60_000, () => 'Warm-up: prove the key.');
    await allFinished(queue, warm, 5_000);
    await emulator.client.reset();
    await emulator.client.setFlex({ latencyMs: 60_000, jitterMs: 0, shedProbability: 0, maxConcurrent: null });
    const deadline = Date.now() + 9_000;
    const ids = await enqueueMany(queue, config, 3, deadline);
    await allFinished(queue, [...warm, ...ids], 15_000);
    for (const result of await results(queue, ids)) expect(result.tier).toBe('standard');
    for (const id of ids) {
      const job = (await queue.getJob(id))!;
      expect(job.attemptsMade).toBe(1);
      expect(job.finishedOn!).toBeLessThan(deadline);
    }
    const counters = await emulator.client.counters();
    expect(counters.byTier?.['flex']).toMatchObject({ calls: 3, served: 0 });
    expect(counters.totals.successes).toBe(3);
  });

  it('a batch forced to EXPIRED falls back to standard before the deadline, no job is lost, and the budget its jobs held is freed', async () => {
    await emulator.client.setBatchConfig({ completeAfterMs: 3_600_000 });
    const { config, queue, worker } = setup({ batch: { minJobs: 20, maxCollectMs: 60_000 } }, { tenants: { acme: { dailyUsd: 100, onExceeded: 'fail' } } });
    const deadline = Date.now() + 24 * 3600_000;
    const ids = await enqueueMany(queue, config, 20, deadline);
    const batch = await waitFor(async () => (await emulator.client.listBatches()).find((b) => b.state === 'PENDING' || b.state === 'RUNNING'), {
      timeoutMs: 10_000,
      what: 'an unfinished batch',
    });
    // While the batch runs, its jobs hold their estimated batch cost of the tenant's budget.
    expect((await worker.budgets.remaining('acme')).daily!.reservedNanoUsd).toBeGreaterThan(0);
    const forcedAt = Date.now();
    await emulator.client.forceBatchState(batch!.name, 'EXPIRED');
    await allFinished(queue, ids, 15_000);
    const fellBackMs = Date.now() - forcedAt;
    const jobs = await Promise.all(ids.map((id) => queue.getJob(id)));
    expect(await queue.getJobCounts('completed')).toMatchObject({ completed: 20 });
    for (const job of jobs) {
      expect(promptJobResultSchema.parse(job!.returnvalue).tier).toBe('standard');
      expect(job!.finishedOn!).toBeLessThan(deadline);
    }
    // Released at the fallback; the standard calls reserved and settled their own.
    const standardCost = jobs.reduce((sum, job) => sum + promptJobResultSchema.parse(job!.returnvalue).costNanoUsd!, 0);
    expect((await worker.budgets.remaining('acme')).daily).toMatchObject({ reservedNanoUsd: 0, spentNanoUsd: standardCost });
    console.info(`[tiers] EXPIRED batch: 20 jobs served standard ${fellBackMs} ms after the expiry`);
  });

  it('a batch that has not answered when the deadline comes near falls back in time (thresholds scaled down)', async () => {
    await emulator.client.setBatchConfig({ completeAfterMs: 3_600_000 });
    // Scaled: batch when ≥ 2 s are left, fall back 1.5 s before the deadline.
    const { config, queue } = setup({ batch: { minJobs: 1, maxCollectMs: 1, minRemainingMs: 2_000, fallbackMarginMs: 1_500 } });
    const deadline = Date.now() + 4_000;
    const ids = await enqueueMany(queue, config, 3, deadline);
    await allFinished(queue, ids, 10_000);
    expect((await emulator.client.counters()).batches.created).toBeGreaterThanOrEqual(1);
    for (const id of ids) {
      const job = await queue.getJob(id);
      expect(promptJobResultSchema.parse(job!.returnvalue).tier).toBe('standard');
      expect(job!.finishedOn!).toBeLessThan(deadline);
    }
    // Nobody waits for the batch any more: it is cancelled, so Google stops (and bills no more).
    await waitFor(async () => ((await emulator.client.counters()).batches.cancelled === 1 ? true : undefined), { what: 'the batch cancelled' });
  });

  it('an answer that comes back after its job fell back is billed twice: recorded as spend (ledger and budget), not counted as a job', async () => {
    // One batch of two jobs: A's deadline comes near before the batch answers, B's does not.
    await emulator.client.setBatchConfig({ completeAfterMs: 3_000 });
    const { config, queue, worker } = setup(
      { batch: { minJobs: 2, maxCollectMs: 60_000, minRemainingMs: 2_000, fallbackMarginMs: 1_500 } },
      { tenants: { acme: { dailyUsd: 1, onExceeded: 'fail' } } },
    );
    const [a] = await enqueueMany(queue, config, 1, Date.now() + 3_000, () => 'Job A: in a hurry.');
    const [b] = await enqueueMany(queue, config, 1, Date.now() + 60_000, () => 'Job B: can wait.');
    await allFinished(queue, [a!, b!], 15_000);
    const [resultA, resultB] = await results(queue, [a!, b!]);
    expect(resultA!.tier).toBe('standard');
    expect(resultB!.tier).toBe('batch');
    // A's batch answer has the usage of its standard call (same request), at half the price.
    const orphaned = costNanoUsd(resultA!.usage, config.prices[MODEL]!) / 2;
    const spent = resultA!.costNanoUsd! + resultB!.costNanoUsd! + orphaned;
    const usage = await waitFor(async () => {
      const today = (await worker.ledger.tenantUsage('acme')).today;
      return today.orphanedCostNanoUsd > 0 ? today : undefined;
    }, { what: "A's orphaned answer recorded" });
    expect(usage).toMatchObject({ jobs: 2, orphanedCostNanoUsd: orphaned, costNanoUsd: spent, batchCostNanoUsd: resultB!.costNanoUsd! + orphaned });
    expect((await worker.budgets.remaining('acme')).daily).toMatchObject({ spentNanoUsd: spent, reservedNanoUsd: 0 });
  });

  it("Batch API answers count against the tenant's budget, and a tenant whose budget is spent is not batched", async () => {
    const { config, queue, worker } = setup({ batch: { minJobs: 20, maxCollectMs: 60_000 } }, { tenants: { acme: { dailyUsd: 1, onExceeded: 'fail' } } });
    const ids = await enqueueMany(queue, config, 20, Date.now() + 24 * 3600_000);
    await allFinished(queue, ids, 15_000);
    const out = await results(queue, ids);
    for (const result of out) expect(result.tier).toBe('batch');
    const spent = out.reduce((sum, result) => sum + result.costNanoUsd!, 0);
    expect((await worker.budgets.remaining('acme')).daily).toMatchObject({ spentNanoUsd: spent, reservedNanoUsd: 0 });

    // Spend the rest of the day's budget: the next jobs are refused, not collected for a batch.
    await worker.budgets.charge([{ tenant: 'acme', nanoUsd: 1_000_000_000 - spent }]);
    const refused = await enqueueMany(queue, config, 3, Date.now() + 24 * 3600_000, (i) => `After the budget ${i}`);
    await allFinished(queue, [...ids, ...refused], 15_000);
    for (const id of refused) expect((await queue.getJob(id))!.failedReason).toMatch(/^\[BUDGET_EXCEEDED\] /);
    const counters = await emulator.client.counters();
    expect(counters.batches.requests).toBe(20);
    expect(counters.byTier?.['standard']?.calls ?? 0).toBe(0);
  });

  it("money in open batches counts: a budgeted tenant's batch jobs hold their cost from collection, so its spend stays within the budget", async () => {
    // The cost of 20 such jobs at the batch tier, from a tenant without a budget.
    const probe = setup({ batch: { minJobs: 20, maxCollectMs: 60_000 } });
    const probeIds = await enqueueMany(probe.queue, probe.config, 20, Date.now() + 24 * 3600_000);
    await allFinished(probe.queue, probeIds, 15_000);
    const twentyJobs = (await results(probe.queue, probeIds)).reduce((sum, result) => sum + result.costNanoUsd!, 0);

    // A budget of 30% of that. Before, every job was collected while nothing was settled yet, and
    // the tenant spent 100%.
    const limitNanoUsd = Math.floor(twentyJobs * 0.3);
    const { config, queue, worker } = setup({}, { tenants: { acme: { dailyUsd: limitNanoUsd / 1e9, onExceeded: 'fail' } } });
    const ids = await enqueueMany(queue, config, 20, Date.now() + 24 * 3600_000, (i) => `Tier job ${i}: say something!`);
    await allFinished(queue, ids, 30_000);
    const jobs = await Promise.all(ids.map((id) => queue.getJob(id)));
    const completed = jobs.filter((job) => job!.returnvalue).map((job) => promptJobResultSchema.parse(job!.returnvalue));
    const refused = jobs.filter((job) => job!.failedReason);
    expect(completed.length).toBeGreaterThan(0);
    expect(refused.length).toBeGreaterThan(0);
    for (const job of refused) expect(job!.failedReason).toMatch(/^\[BUDGET_EXCEEDED\] /);
    for (const result of completed) expect(result.tier).toBe('batch');
    const spent = completed.reduce((sum, result) => sum + result.costNanoUsd!, 0);
    const { daily } = await worker.budgets.remaining('acme');
    expect(daily).toMatchObject({ spentNanoUsd: spent, reservedNanoUsd: 0 });
    expect(spent).toBeLessThanOrEqual(limitNanoUsd);
  });

  it("a per-request error in a batch decides that job's fate only", async () => {
    await emulator.client.setBatchConfig({ requestErrorEvery: 3, requestError: { code: 400, status: 'INVALID_ARGUMENT', message: 'Request contains an invalid argument.' } });
    const { config, queue } = setup({ batch: { minJobs: 6, maxCollectMs: 60_000 } });
    const ids = await enqueueMany(queue, config, 6, Date.now() + 24 * 3600_000);
    await allFinished(queue, ids, 15_000);
    const jobs = await Promise.all(ids.map((id) => queue.getJob(id)));
    const failed = jobs.filter((job) => job!.failedReason);
    const completed = jobs.filter((job) => job!.returnvalue);
    expect(failed).toHaveLength(2);
    for (const job of failed) {
      expect(job!.failedReason).toMatch(/^\[PROVIDER_BAD_REQUEST\] /);
      expect(job!.attemptsMade).toBe(1);
    }
    expect(completed).toHaveLength(4);
    for (const job of completed) expect(promptJobResultSchema.parse(job!.returnvalue).tier).toBe('batch');
    expect((await emulator.client.counters()).batches.created).toBe(1);
  });

  it('a submitter killed between create and its record: the next lease holder adopts the batch, nothing is lost or sent twice', async () => {
    let killed = false;
    const wrap = (config: Config) => {
      const real = batchApis(config);
      return (model: string): BatchApi => {
        const api = real(model);
        return {
          ...api,
          async create(...args) {
            const name = await api.create(...args);
            if (!killed) {
              killed = true;
              throw new Error('worker killed right after create');
            }
            return name;
          },
        };
      };
    };
    // The wrapped API needs the config setup() builds: set once setup() returns.
    const wrapped: { apiFor?: (model: string) => BatchApi } = {};
    const { config, queue } = setup({ batch: { minJobs: 8, maxCollectMs: 60_000 } }, { batchApiFor: (model) => wrapped.apiFor!(model) });
    wrapped.apiFor = wrap(config);
    const ids = await enqueueMany(queue, config, 8, Date.now() + 24 * 3600_000);
    await allFinished(queue, ids, 15_000);
    expect(killed).toBe(true);
    expect((await emulator.client.counters()).batches.created).toBe(1);
    for (const result of await results(queue, ids)) expect(result.tier).toBe('batch');
  });
});
