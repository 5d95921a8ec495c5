import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { BudgetGuard, budgetReservationsKey, createRedis, QueueName, type Config } from '@prompt-queue/shared';
import { startServiceProcess, startTestRedis, uniquePrefix, waitFor, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';
import { enqueue, promptData, testConfig, waitForJob } from './helpers.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const READY_LINE = /worker listening on (http:\/\/\S+)/;
const LOCK_DURATION_MS = 1_500;
const JOBS = 5;

// Issue 14, defect 3: a worker killed with SIGKILL held its budget reservations for 10 minutes
// (jobs failed for a budget that had room), and its provider calls, billed by the provider, were
// never recorded. Reservations now live as long as the job lock, renewed by the batch holding them.
describe('budget reservations of a worker process killed with SIGKILL', () => {
  let redisServer: TestRedis;
  let emulator: EmulatorProcess;
  let dir: string;
  let worker: ServiceProcess | undefined;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    [redisServer, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess()]);
    dir = mkdtempSync(join(tmpdir(), 'pq-budget-kill-'));
  });
  afterAll(async () => {
    await Promise.all([emulator?.stop(), redisServer?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await worker?.stop('SIGKILL');
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  it('a live batch renews its reservations; after a kill -9 they lapse within the lock duration, charged at their estimate', async () => {
    const configFile = join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify({ tenants: { acme: { dailyUsd: 1 } } }));
    const env = {
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('bk'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      CONFIG_FILE: configFile,
      LOCK_DURATION_MS: String(LOCK_DURATION_MS),
      BATCH_SIZE: String(JOBS),
      BATCH_MAX_WAIT_MS: '2000',
      WORKER_PORT: '0',
      LOG_LEVEL: 'warn',
      // Five calls at once on a fresh limiter scope, none of them finishing: no slow start.
      LIMITER_SLOW_START_REQUESTS: '0',
    };
    const config: Config = testConfig(env);
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    const guard = new BudgetGuard(connection, config.redis.prefix, config.tenants);
    const reservations = budgetReservationsKey(config.redis.prefix, 'acme');

    worker = await startServiceProcess({ args: [MAIN], env, readyLine: READY_LINE });
    // A first job proves the API key (a new key's first call goes alone) and is spent normally.
    const warmUp = await waitForJob(queue, await enqueue(queue, config, promptData({ text: 'warm up' })), ['completed']);
    const warmUpNanoUsd = (warmUp.job.returnvalue as { costNanoUsd: number }).costNanoUsd;
    expect((await guard.remaining('acme')).daily).toMatchObject({ spentNanoUsd: warmUpNanoUsd, reservedNanoUsd: 0 });
    await emulator.client.reset();

    // Calls that hang: the worker holds its reservations while they are at the provider.
    await emulator.client.setLatency(60_000);
    const ids = await Promise.all(Array.from({ length: JOBS }, (_, i) => enqueue(queue, config, promptData({ text: `held ${i}`, generationConfig: { maxOutputTokens: 64 } }))));
    await waitFor(async () => (await emulator.client.counters()).totalCalls === JOBS, { what: 'the calls to reach the provider' });
    const held = await guard.remaining('acme');
    const reservedNanoUsd = held.daily!.reservedNanoUsd;
    expect(reservedNanoUsd).toBeGreaterThan(0);
    expect(held.daily!.spentNanoUsd).toBe(warmUpNanoUsd);

    // Alive: the batch pushes the expiry out before it comes (no lapse while calls run long).
    const firstExpiry = Math.max(...(await connection.zrange(reservations, 0, -1, 'WITHSCORES')).filter((_, i) => i % 2 === 1).map(Number));
    await waitFor(async () => Math.min(...(await connection.zrange(reservations, 0, -1, 'WITHSCORES')).filter((_, i) => i % 2 === 1).map(Number)) > firstExpiry, {
      what: 'the batch to renew its reservations',
    });
    expect((await guard.remaining('acme')).daily).toMatchObject({ reservedNanoUsd, spentNanoUsd: warmUpNanoUsd });

    expect(await worker.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });
    worker = undefined;
    const killedAt = Date.now();
    // Within the lock duration, reserved returns to the truth (nothing in flight), and the killed
    // worker's calls — they reached the provider, which bills them — count as spend at their estimate.
    const after = await waitFor(
      async () => {
        const { daily } = await guard.remaining('acme');
        return daily!.reservedNanoUsd === 0 ? daily : undefined;
      },
      { timeoutMs: LOCK_DURATION_MS + 2_000, intervalMs: 50, what: 'the dead worker\'s reservations to lapse' },
    );
    const lapsedMs = Date.now() - killedAt;
    console.log('kill -9 reservations', JSON.stringify({ reservedNanoUsd, lapsedMs, lockDurationMs: LOCK_DURATION_MS, spentNanoUsd: after!.spentNanoUsd }));
    // The lapse itself comes within LOCK_DURATION_MS of the last renewal (before the kill); the
    // slack is this test's polling and Redis round trips on a busy machine.
    expect(lapsedMs).toBeLessThanOrEqual(LOCK_DURATION_MS + 500);
    expect(after!.spentNanoUsd).toBe(warmUpNanoUsd + reservedNanoUsd);

    // The jobs come back through stalled-job recovery and a new worker completes them: each call
    // settles at its actual cost on a fresh reservation; the killed calls stay charged at estimate.
    await emulator.client.setLatency(0);
    worker = await startServiceProcess({ args: [MAIN], env, readyLine: READY_LINE });
    const done = await Promise.all(ids.map((id) => waitForJob(queue, id, ['completed', 'failed'], 20_000)));
    expect(done.map((d) => d.state)).toEqual(ids.map(() => 'completed'));
    const served = done.reduce((sum, d) => sum + (d.job.returnvalue as { costNanoUsd: number }).costNanoUsd, 0);
    expect((await guard.remaining('acme')).daily).toMatchObject({ reservedNanoUsd: 0, spentNanoUsd: warmUpNanoUsd + reservedNanoUsd + served });
  });
});
