import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { keyFingerprint, startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createLogger, createRedis, promptJobOptions, promptJobResultSchema, QueueName, readBacklog, type AuditLog, type AuditRecord, type Config } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import { createPromptWorker, type PromptWorker } from '../src/worker.js';
import { enqueue, promptData, testConfig, waitForJob } from './helpers.js';

/** Budgets, the response cache, dedupe, usage, audit and key rotation wired into the batch path. */
describe('batch accounting (real Redis, emulator process)', () => {
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
      REDIS_PREFIX: uniquePrefix('acc'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      ...env,
    });
    config.tenants = tenants;
    const audited: AuditRecord[] = [];
    const audit: AuditLog = { write: (record) => void audited.push(record), close: async () => {} };
    const worker: PromptWorker = createPromptWorker({ config, logger: createLogger({ service: 'worker-test', level: 'error' }), audit });
    cleanups.push(() => worker.close(1_000));
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    return { config, queue, worker, audited, connection };
  }

  const calls = async () => (await emulator.client.counters()).totalCalls;

  it("a job over its tenant's budget fails with BUDGET_EXCEEDED without a provider call", async () => {
    const { config, queue, worker, audited } = setup({}, { acme: { dailyUsd: 0.000001, onExceeded: 'fail' } });
    const id = await enqueue(queue, config, promptData({ generationConfig: { maxOutputTokens: 100 } }));
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
    expect(state).toBe('failed');
    expect(job.failedReason).toMatch(/^\[BUDGET_EXCEEDED\] /);
    expect(job.attemptsMade).toBe(1);
    expect(await calls()).toBe(0);
    const usage = await worker.ledger.tenantUsage('acme');
    expect(usage.today).toMatchObject({ jobs: 1, failures: 1, costNanoUsd: 0 });
    expect(audited).toEqual([expect.objectContaining({ jobId: id, outcome: 'failed', errorCode: 'BUDGET_EXCEEDED', cached: false })]);
    // Nothing stays reserved: the budget is whole again.
    expect((await worker.budgets.remaining('acme')).daily?.reservedNanoUsd).toBe(0);
  });

  it("onExceeded 'wait': the job waits in delayed until the next UTC day, no attempt spent, no call", async () => {
    const { config, queue, worker } = setup({}, { acme: { dailyUsd: 0.01, onExceeded: 'wait' } });
    // Spend the whole day's budget.
    const [decision] = await worker.budgets.reserve([{ tenant: 'acme', amountNanoUsd: 10_000_000 }]);
    if (!decision?.ok) throw new Error('could not spend the budget');
    await worker.budgets.settle([{ reservation: decision.reservation, actualNanoUsd: 10_000_000 }]);

    const id = await enqueue(queue, config, promptData({ generationConfig: { maxOutputTokens: 100 } }));
    const { job } = await waitForJob(queue, id, ['delayed']);
    expect(job.attemptsMade).toBe(0);
    const nextDay = new Date();
    nextDay.setUTCHours(24, 0, 0, 0);
    expect(Math.abs(job.timestamp + job.delay - nextDay.getTime())).toBeLessThan(5_000);
    expect(await calls()).toBe(0);
  });

  it("one tenant's hostile job fails alone (INVALID_JOB): the other tenants' jobs in its batch complete", async () => {
    // Issue 14, defect 1: thinkingBudget 1e15 overflowed the batch's cost math and failed every
    // tenant's job in the batch (INTERNAL after 5 attempts), with or without budgets. Both hostile
    // jobs are written straight to the queue, as an older producer (or another writer) would have.
    const { config, queue, worker } = setup({ BATCH_SIZE: '7', BATCH_MAX_WAIT_MS: '5000' }, { acme: { dailyUsd: 1 } });
    const job = (tenant: string, text: string, generationConfig?: object) => ({
      name: 'generate',
      data: { ...promptData({ tenant, text }), ...(generationConfig ? { generationConfig } : {}) },
      opts: promptJobOptions(config, randomUUID(), 'normal'),
    });
    const batch = [
      job('mallory', 'overflow', { thinkingConfig: { thinkingBudget: 1e15 } }),
      job('mallory', 'over the model', { maxOutputTokens: 64, thinkingConfig: { thinkingBudget: 1_000_000 } }),
      ...[1, 2, 3].map((i) => job('acme', `acme question ${i}`, { maxOutputTokens: 64 })),
      ...[1, 2, 3].map((i) => job('globex', `globex question ${i}`, { maxOutputTokens: 64 })),
    ];
    await queue.addBulk(batch);
    const done = await Promise.all(batch.map((b) => waitForJob(queue, b.opts.jobId!, ['completed', 'failed'])));
    const [overflow, overModel, ...others] = done;
    for (const hostile of [overflow!, overModel!]) {
      expect(hostile.state).toBe('failed');
      expect(hostile.job.failedReason).toMatch(/^\[INVALID_JOB\] .*thinkingBudget/);
      expect(hostile.job.attemptsMade).toBe(1);
    }
    expect(overModel!.job.failedReason).toContain('24576');
    expect(others.map((d) => [d.state, d.job.attemptsMade])).toEqual(others.map(() => ['completed', 1]));
    // The hostile jobs made no call and held no budget.
    expect(await calls()).toBe(6);
    expect((await worker.budgets.remaining('acme')).daily?.reservedNanoUsd).toBe(0);
  });

  it("a budget is usable to its end: in-flight reservations make jobs wait briefly, only a spent budget pushes to the next UTC day", async () => {
    // Issue 14, defect 2: jobs were pushed to the next midnight (or failed "budget is spent") while
    // the budget only looked full because of the reservations in flight.
    const limitNanoUsd = 1_000_000; // $0.001: a handful of these jobs
    const { config, queue, worker } = setup({ BATCH_SIZE: '4', WORKER_CONCURRENCY: '8' }, { acme: { dailyUsd: limitNanoUsd / 1e9, onExceeded: 'wait' } });
    await emulator.client.setLatency(150);
    const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => enqueue(queue, config, promptData({ text: `budget question ${i}`, generationConfig: { maxOutputTokens: 64 } }))));
    const nextDay = new Date();
    nextDay.setUTCHours(24, 0, 0, 0);
    // Every job ends completed, or delayed until the next UTC day.
    const ends = await Promise.all(
      ids.map((id) =>
        waitFor(
          async () => {
            const state = await queue.getJobState(id);
            const job = await queue.getJob(id);
            if (state === 'completed') return { state, job: job! };
            if (state === 'delayed' && job && job.timestamp + job.delay > nextDay.getTime() - 5_000) return { state: 'next-day', job };
            return undefined;
          },
          { timeoutMs: 30_000, what: `job ${id} completed or waiting for the next day` },
        ),
      ),
    );
    const completed = ends.filter((end) => end.state === 'completed');
    const spentByJobs = completed.reduce((sum, end) => sum + promptJobResultSchema.parse(end.job.returnvalue).costNanoUsd!, 0);
    const dearest = Math.max(...completed.map((end) => promptJobResultSchema.parse(end.job.returnvalue).costNanoUsd!));
    const { daily } = (await worker.budgets.remaining('acme'))!;
    console.log('budget to its end (wait)', JSON.stringify({ completed: completed.length, nextDay: ends.length - completed.length, spentNanoUsd: daily!.spentNanoUsd, limitNanoUsd }));
    expect(completed.length).toBeGreaterThan(0);
    expect(completed.length).toBeLessThan(30);
    expect(daily).toMatchObject({ spentNanoUsd: spentByJobs, reservedNanoUsd: 0 });
    // Pushed to the next day only once another job would not fit next to what is spent.
    expect(daily!.spentNanoUsd + dearest).toBeGreaterThan(limitNanoUsd);
    // Waiting (briefly, or for the next day) spent no attempt.
    expect(ends.map((end) => end.job.attemptsMade)).toEqual(ends.map((end) => (end.state === 'completed' ? 1 : 0)));
  });

  it("a served job settles (budget charged) and completes without waiting for the slowest call of its batch", async () => {
    // Issue 12 (capacity): every job held its slot until the slowest call of its batch ended
    // (2 s ± 1 s calls: the slowest of 16 near 2.9 s), a third of a worker's throughput.
    const { config, queue, worker } = setup({ BATCH_SIZE: '16', BATCH_MAX_WAIT_MS: '1000' }, { acme: { dailyUsd: 10, onExceeded: 'fail' } });
    const warm = await waitForJob(queue, await enqueue(queue, config, promptData({ text: 'warm-up: proves the key' })), ['completed']);
    const costOf = ({ job }: { job: { returnvalue: unknown } }) => promptJobResultSchema.parse(job.returnvalue).costNanoUsd!;
    // A lone job goes out at once and keeps the route busy, so the next six gather into one batch.
    const blocker = await enqueue(queue, config, promptData({ text: 'blocker [[slow:8000]]' }));
    await waitFor(async () => ((await emulator.client.counters()).inFlight.now === 1 ? true : undefined), { what: 'the blocker in flight' });
    const slow = await enqueue(queue, config, promptData({ text: 'the slowest of its batch [[slow:8000]]' }));
    const fast = await Promise.all(Array.from({ length: 5 }, (_, i) => enqueue(queue, config, promptData({ text: `fast question ${i}` }))));
    const served = await Promise.all(fast.map((id) => waitForJob(queue, id, ['completed'], 7_000)));
    expect(worker.stats.snapshot().batches.bySize[6]).toBe(1);
    expect(await queue.getJobState(slow)).toBe('active');
    // Their cost is charged already; the two slow jobs still hold their reservations.
    const spentBefore = costOf(warm) + served.reduce((sum, end) => sum + costOf(end), 0);
    const during = (await worker.budgets.remaining('acme'))!.daily!;
    expect(during.spentNanoUsd).toBe(spentBefore);
    expect(during.reservedNanoUsd).toBeGreaterThan(0);
    const rest = await Promise.all([slow, blocker].map((id) => waitForJob(queue, id, ['completed'], 15_000)));
    const after = (await worker.budgets.remaining('acme'))!.daily!;
    expect(after).toMatchObject({ spentNanoUsd: spentBefore + rest.reduce((sum, end) => sum + costOf(end), 0), reservedNanoUsd: 0 });
  });

  it("onExceeded 'fail': BUDGET_EXCEEDED only when the budget is spent, and the message states the true spent, reserved and limit", async () => {
    const limitNanoUsd = 1_000_000;
    const { config, queue, worker } = setup({ BATCH_SIZE: '4', WORKER_CONCURRENCY: '8' }, { acme: { dailyUsd: limitNanoUsd / 1e9, onExceeded: 'fail' } });
    await emulator.client.setLatency(150);
    const ids = await Promise.all(Array.from({ length: 30 }, (_, i) => enqueue(queue, config, promptData({ text: `fail question ${i}`, generationConfig: { maxOutputTokens: 64 } }))));
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'], 30_000)));
    const completed = done.filter((d) => d.state === 'completed');
    const failed = done.filter((d) => d.state === 'failed');
    expect(completed.length).toBeGreaterThan(0);
    expect(failed.length).toBeGreaterThan(0);
    const { daily } = (await worker.budgets.remaining('acme'))!;
    for (const { job } of failed) {
      const match = /^\[BUDGET_EXCEEDED\] The tenant's daily budget is spent: \$([\d.e-]+) spent and \$([\d.e-]+) reserved of \$0\.001, and this job needs about \$([\d.e-]+); it resets at /.exec(job.failedReason);
      expect(match, job.failedReason).not.toBeNull();
      const [spent, reserved, needs] = match!.slice(1).map((usd) => Math.round(Number(usd) * 1e9)) as [number, number, number];
      // True when written: that spend was real (≤ the final spend), and this job did not fit next to it.
      expect(spent).toBeLessThanOrEqual(daily!.spentNanoUsd);
      expect(spent + needs).toBeGreaterThan(limitNanoUsd);
      expect(reserved).toBeGreaterThanOrEqual(0);
    }
    expect(daily!.reservedNanoUsd).toBe(0);
  });

  it('a cache hit makes no call: cached, cost 0, the saving recorded; cache: false calls again', async () => {
    const { config, queue, worker, audited, connection } = setup();
    const data = () => promptData({ text: 'cache me' });
    const first = await waitForJob(queue, await enqueue(queue, config, data()), ['completed']);
    const original = promptJobResultSchema.parse(first.job.returnvalue);
    expect(original.cached).toBe(false);
    expect(original.costNanoUsd).toBeGreaterThan(0);

    const second = await waitForJob(queue, await enqueue(queue, config, data()), ['completed']);
    const hit = promptJobResultSchema.parse(second.job.returnvalue);
    expect(hit).toMatchObject({ cached: true, costUsd: 0, costNanoUsd: 0, text: original.text });
    expect(await calls()).toBe(1);

    await waitForJob(queue, await enqueue(queue, config, { ...data(), cache: false }), ['completed']);
    expect(await calls()).toBe(2);

    const usage = await worker.ledger.tenantUsage('acme');
    expect(usage.today).toMatchObject({ jobs: 3, cacheHits: 1, savedNanoUsd: original.costNanoUsd, costNanoUsd: 2 * original.costNanoUsd! });
    expect(audited.map((record) => record.cached)).toEqual([false, true, false]);
    expect(new Set(audited.map((record) => record.promptSha256)).size).toBe(1);
    // Every finished job gave its fairness place back.
    expect(await readBacklog(connection, config.redis.prefix, 'acme')).toEqual({ high: 0, normal: 0, low: 0 });
  });

  it('identical jobs in one batch make one call: one leader, the others are cache hits', async () => {
    const { config, queue } = setup({ BATCH_MAX_WAIT_MS: '5000', BATCH_SIZE: '16' });
    await emulator.client.setLatency(300);
    const primer = await enqueue(queue, config, promptData({ text: 'primer' }));
    await waitFor(async () => (await calls()) === 1, { what: 'the primer call' });
    const ids = await Promise.all(Array.from({ length: 6 }, () => enqueue(queue, config, promptData({ text: 'same question' }))));
    await waitForJob(queue, primer, ['completed']);
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'])));
    expect(done.map((d) => d.state)).toEqual(ids.map(() => 'completed'));
    const results = done.map((d) => promptJobResultSchema.parse(d.job.returnvalue));
    expect(results.filter((r) => !r.cached)).toHaveLength(1);
    expect(results.filter((r) => r.cached && r.costNanoUsd === 0)).toHaveLength(5);
    expect(await calls()).toBe(2);
  });

  it('first key invalid, second valid: a flood of jobs all complete and the bad key is called once', async () => {
    const { config, queue, worker } = setup({ GEMINI_API_KEY: `bad-key-for-test,${emulator.apiKey}`, BATCH_SIZE: '8' });
    const ids = await Promise.all(Array.from({ length: 24 }, (_, i) => enqueue(queue, config, promptData({ text: `rotation ${i}` }))));
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'])));
    expect(done.map((d) => d.state)).toEqual(ids.map(() => 'completed'));
    // Completed at the first attempt: the rejected key cost no attempt.
    expect(done.map((d) => d.job.attemptsMade)).toEqual(ids.map(() => 1));
    const counters = await emulator.client.counters();
    expect(counters.byKey[keyFingerprint('bad-key-for-test')]).toBe(1);
    expect(counters.byKey[keyFingerprint(emulator.apiKey)]).toBe(24);
    expect(worker.keyRing.describe().rejected).toEqual([{ fingerprint: keyFingerprint('bad-key-for-test'), reason: 'API_KEY_INVALID' }]);
  });

  it('RESPONSE_CACHE=false: identical jobs each make their call', async () => {
    const { config, queue } = setup({ RESPONSE_CACHE: 'false' });
    for (let i = 0; i < 2; i++) await waitForJob(queue, await enqueue(queue, config, promptData({ text: 'no cache' })), ['completed']);
    expect(await calls()).toBe(2);
  });
});

