import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createRedis, QueueName, SAME_STOP_REQUEST_MS, type Config } from '@prompt-queue/shared';
import { startServiceProcess, startTestRedis, uniquePrefix, waitFor, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';
import { enqueue, promptData, testConfig, waitForJob } from './helpers.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const READY_LINE = /worker listening on (http:\/\/\S+)/;

// The worker as production runs it: `node dist/main.js`, configured by environment, stopped by signals.
describe('worker process (node dist/main.js)', () => {
  let redisServer: TestRedis;
  let emulator: EmulatorProcess;
  const processes: ServiceProcess[] = [];
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npx turbo run build --filter=@prompt-queue/worker)`);
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
    await Promise.all(processes.splice(0).map((p) => p.stop('SIGKILL')));
    for (const cleanup of cleanups.splice(0)) await cleanup();
  });

  function setup(env: Record<string, string> = {}) {
    const processEnv = {
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('p'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      WORKER_PORT: '0',
      LOG_LEVEL: 'info',
      ...env,
    };
    const config: Config = testConfig(processEnv);
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    // A test may stop its Redis.
    connection.on('error', () => {});
    queue.on('error', () => {});
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    const start = async () => {
      const proc = await startServiceProcess({ args: [MAIN], env: processEnv, readyLine: READY_LINE });
      processes.push(proc);
      return proc;
    };
    return { config, queue, start };
  }

  /** Enqueues one job and returns once a worker has it and its Gemini call is in flight. */
  async function jobInFlight(queue: Queue, config: Config): Promise<string> {
    const id = await enqueue(queue, config, promptData());
    await waitForJob(queue, id, ['active']);
    await waitFor(async () => (await emulator.client.counters()).totalCalls >= 1, { what: 'the Gemini call' });
    return id;
  }

  it('refuses to start without GEMINI_API_KEY', async () => {
    const attempt = startServiceProcess({
      args: [MAIN],
      env: { REDIS_URL: redisServer.url, GEMINI_API_KEY: '', WORKER_PORT: '0' },
      readyLine: READY_LINE,
    });
    await expect(attempt).rejects.toThrow(/exited \(1\)[\s\S]*GEMINI_API_KEY is required: .*see README/);
  });

  it('refuses a typo in CONFIG_FILE: exit 1 and one line naming the key and the closest valid one', async () => {
    // `worker.concurency` used to start with the default concurrency, unnoticed.
    const dir = mkdtempSync(join(tmpdir(), 'pq-worker-config-'));
    cleanups.push(async () => rmSync(dir, { recursive: true, force: true }));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'worker:\n  concurency: 4\n');
    const attempt = startServiceProcess({
      args: [MAIN],
      env: { REDIS_URL: redisServer.url, GEMINI_API_KEY: emulator.apiKey, WORKER_PORT: '0', CONFIG_FILE: file },
      readyLine: READY_LINE,
    });
    await expect(attempt).rejects.toThrow(
      /exited \(1\) before it was ready:\nInvalid configuration: CONFIG_FILE worker\.concurency: unknown key, did you mean concurrency\?\n$/,
    );
  });

  it('prints its real port for WORKER_PORT=0 and serves /healthz and /readyz', async () => {
    const { start } = setup();
    const worker = await start();
    const base = worker.ready[1]!;
    expect(base).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(base).not.toMatch(/:0$/);
    const health = await fetch(`${base}/healthz`);
    expect([health.status, await health.json()]).toEqual([200, { status: 'ok' }]);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    const missing = await fetch(`${base}/nope`);
    expect([missing.status, ((await missing.json()) as { error: { code: string } }).error.code]).toEqual([404, 'NOT_FOUND']);
  });

  it('/status and /metrics answer within 2 s while Redis is down or frozen (they used to hang for minutes)', async () => {
    const own = await startTestRedis();
    cleanups.push(() => own.stop());
    const { start } = setup({ REDIS_URL: own.url });
    const worker = await start();
    const base = worker.ready[1]!;
    const timed = async (path: string) => {
      const started = Date.now();
      const res = await fetch(`${base}${path}`);
      return { res, ms: Date.now() - started };
    };
    expect(await (await timed('/status')).res.json()).toMatchObject({ redis: 'up', jobsHeld: 0 });

    own.pause!();
    const frozen = await timed('/status');
    expect(frozen.ms).toBeLessThan(2_000);
    expect(await frozen.res.json()).toMatchObject({ redis: 'unavailable', jobsHeld: 0 });
    expect((await timed('/metrics')).ms).toBeLessThan(2_000);
    own.resume!();

    await own.stop();
    const status = await timed('/status');
    expect(status.ms).toBeLessThan(2_000);
    expect(status.res.status).toBe(200);
    expect(await status.res.json()).toMatchObject({ redis: 'unavailable', jobsHeld: 0, batches: { count: 0 } });
    const metrics = await timed('/metrics');
    expect(metrics.ms).toBeLessThan(2_000);
    expect(metrics.res.status).toBe(200);
    expect((await timed('/readyz')).res.status).toBe(503);
  });

  it('SIGTERM finishes the job in flight, then exits 0', async () => {
    const { config, queue, start } = setup();
    await emulator.client.setLatency(1_500);
    const worker = await start();
    const id = await jobInFlight(queue, config);
    const exit = await worker.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed'], 1_000);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(1);
    expect((await emulator.client.counters()).totalCalls).toBe(1);
    expect(worker.output()).toMatch(/stopped/);
  });

  it('SIGTERM past SHUTDOWN_TIMEOUT_MS exits in bound and the job is served later by another worker', async () => {
    const { config, queue, start } = setup({ SHUTDOWN_TIMEOUT_MS: '200', LOCK_DURATION_MS: '2000' });
    await emulator.client.setLatency(3_000);
    const first = await start();
    const id = await jobInFlight(queue, config);
    const signalled = Date.now();
    const exit = await first.stop('SIGTERM');
    expect(exit).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalled).toBeLessThan(2_000);
    // Handed back at once, without spending an attempt (no wait for the lock to expire).
    const handedBack = await waitForJob(queue, id, ['delayed', 'wait', 'waiting', 'prioritized'], 1_000);
    expect(handedBack.job.attemptsMade).toBe(0);

    await emulator.client.setLatency(200);
    await start();
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed'], 10_000);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(1);
    const counters = await emulator.client.counters();
    expect(counters.totalCalls).toBe(2);
    expect(counters.totals.aborted).toBe(1);
  });

  it('SIGTERM hands back at once the jobs of a fresh worker that have not started a provider call', async () => {
    // A fresh worker probes its API key with ONE call; the other calls wait for that probe. Those
    // jobs used to wait behind the 20 s call, past the shutdown timeout, and came back only through
    // stalled-job recovery once the process had exited (~50 s later).
    const { config, queue, start } = setup({ SHUTDOWN_TIMEOUT_MS: '3000', LOCK_DURATION_MS: '30000', LIMITER_SLOW_START_REQUESTS: '0' });
    await emulator.client.setLatency(20_000);
    const worker = await start();
    const ids = await Promise.all(Array.from({ length: 20 }, (_, i) => enqueue(queue, config, promptData({ text: `job ${i}: say something` }))));
    await waitFor(async () => (await queue.getJobCounts('active')).active === 20, { what: 'all 20 jobs held by the worker' });
    await waitFor(async () => (await emulator.client.counters()).totalCalls >= 1, { what: 'the first Gemini call' });

    const signalled = Date.now();
    worker.child.kill('SIGTERM');
    const backInQueue = async () => {
      const states = await Promise.all(ids.map((id) => queue.getJobState(id)));
      return states.filter((state) => ['wait', 'waiting', 'delayed', 'prioritized'].includes(state)).length;
    };
    await waitFor(async () => (await backInQueue()) >= 19, { timeoutMs: 1_500, intervalMs: 20, what: '19 jobs handed back' });
    const handedBackMs = Date.now() - signalled;

    // The one call in flight keeps its 3 s, then it is aborted and handed back too.
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    const exitedMs = Date.now() - signalled;
    expect(exitedMs).toBeLessThan(3_000 + 2_000);
    expect(await backInQueue()).toBe(20);
    for (const id of ids) expect((await queue.getJob(id))!.attemptsMade, id).toBe(0);
    // No job started a call during the shutdown: the probe was the only one.
    expect((await emulator.client.counters()).totalCalls).toBe(1);
    console.log(`[shutdown] 19 unstarted jobs back in ${handedBackMs} ms, worker exited after ${exitedMs} ms`);
  });

  it('SIGINT and SIGTERM together (one Ctrl-C under npm start) drain the calls in flight, then exit 0', async () => {
    const { config, queue, start } = setup({ SHUTDOWN_TIMEOUT_MS: '20000' });
    const worker = await start();
    // A first job proves the API key, so the next calls go out together instead of behind a probe.
    await waitForJob(queue, await enqueue(queue, config, promptData({ text: 'warm-up' })), ['completed']);
    await emulator.client.setLatency(2_000);
    const ids = await Promise.all(Array.from({ length: 8 }, (_, i) => enqueue(queue, config, promptData({ text: `in flight ${i}` }))));
    await waitFor(async () => (await emulator.client.counters()).totalCalls === 1 + ids.length, { what: 'eight calls in flight' });

    worker.child.kill('SIGINT');
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toEqual({ code: 0, signal: null });
    for (const id of ids) {
      const { job, state } = await waitForJob(queue, id, ['completed', 'failed', 'active', 'wait', 'delayed', 'prioritized'], 1_000);
      expect([id, state, job.attemptsMade]).toEqual([id, 'completed', 1]);
    }
    expect((await emulator.client.counters()).totalCalls).toBe(1 + ids.length);
    expect(worker.output()).toMatch(/SIGTERM \d+ ms after the first stop signal: same request/);
  });

  it(`a stop signal ${SAME_STOP_REQUEST_MS} ms or more after the first forces the exit`, async () => {
    const { config, queue, start } = setup({ SHUTDOWN_TIMEOUT_MS: '20000' });
    await emulator.client.setLatency(5_000);
    const worker = await start();
    await jobInFlight(queue, config);
    const signalled = Date.now();
    worker.child.kill('SIGTERM');
    await waitFor(() => /shutting down/.test(worker.output()), { what: 'shutdown to begin' });
    // Not a sleep for luck: signals closer than this are, by design, the same request.
    await new Promise((resolve) => setTimeout(resolve, signalled + SAME_STOP_REQUEST_MS + 50 - Date.now()));
    worker.child.kill('SIGTERM');
    expect(await worker.exited).toEqual({ code: 1, signal: null });
    expect(Date.now() - signalled).toBeLessThan(SAME_STOP_REQUEST_MS + 2_000);
  });

  it('SIGKILL mid-job: the job returns through stalled-job recovery and another worker completes it', async () => {
    const { config, queue, start } = setup({ LOCK_DURATION_MS: '1000' });
    await emulator.client.setLatency(2_000);
    const first = await start();
    const id = await jobInFlight(queue, config);
    expect(await first.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });

    await emulator.client.setLatency(100);
    await start();
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed'], 15_000);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(1);
    expect((await emulator.client.counters()).totalCalls).toBe(2);
  });

  it('keeps its provider connections alive across a 5 s pause for PROVIDER_KEEP_ALIVE_MS (one keep-alive pool per process)', async () => {
    /** Two bursts of 40 jobs 5 s apart; the connections the emulator saw opened by each. */
    async function twoBursts(env: Record<string, string>): Promise<[number, number]> {
      const { config, queue, start } = setup({ WORKER_CONCURRENCY: '8', ...env });
      const proc = await start();
      const burst = async (label: string): Promise<void> => {
        const ids = await Promise.all(Array.from({ length: 40 }, (_, i) => enqueue(queue, config, promptData({ text: `${label} ${i}` }))));
        for (const id of ids) await waitForJob(queue, id, ['completed']);
      };
      await emulator.client.reset();
      await burst('first burst');
      const first = (await emulator.client.counters()).connectionsOpened;
      // Idle: a quota wait, a quiet minute.
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      await emulator.client.reset();
      await burst('second burst');
      const second = (await emulator.client.counters()).connectionsOpened;
      await proc.stop('SIGKILL');
      return [first, second];
    }
    const [first, second] = await twoBursts({});
    expect(first).toBeGreaterThan(0);
    expect(first).toBeLessThanOrEqual(8);
    expect(second).toBe(0);
    // The same pause with a 1 s keep-alive: every connection is opened again.
    const [, reopened] = await twoBursts({ PROVIDER_KEEP_ALIVE_MS: '1000' });
    expect(reopened).toBeGreaterThan(0);
  }, 30_000);
});
