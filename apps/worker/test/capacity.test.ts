import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomUUID } from 'node:crypto';
import { Queue } from 'bullmq';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createLogger, createRedis, promptJobOptions, QueueName } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import { createPromptWorker } from '../src/worker.js';
import { promptData, testConfig } from './helpers.js';

/**
 * In-flight capacity: one worker process holds thousands of slow calls at once (concurrency
 * decoupled from the batch size of 16). The emulator's in-flight gauge counts calls it holds.
 */
describe('worker capacity (real Redis, real SDK, emulator process)', () => {
  let redisServer: TestRedis;
  let emulator: EmulatorProcess;
  const JOBS = 2_000;
  // Long enough that every job is fetched and called before the first answer, even on a busy machine.
  const LATENCY_MS = 12_000;

  beforeAll(async () => {
    [redisServer, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess()]);
  });
  afterAll(async () => {
    await Promise.all([emulator?.stop(), redisServer?.stop()]);
  });

  it('holds 2,000 slow calls in flight at once in one process (batch size 16) and completes them all without errors', async () => {
    const config = testConfig({
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('cap'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      WORKER_CONCURRENCY: String(JOBS),
      BATCH_SIZE: '16',
      // Limits far above the run: the limiter reserves every batch but never binds (no slow start).
      GEMINI_RPM: '100000000',
      GEMINI_TPM: '1000000000',
    });
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    const worker = createPromptWorker({ config, logger: createLogger({ service: 'capacity-test', level: 'error' }) });
    const failures: string[] = [];
    worker.worker.on('failed', (_job, error) => failures.push(error.message));
    try {
      // A fresh API key carries one probe call at a time (key-ring.ts): prove it with a fast call first.
      await queue.add('generate', promptData({ model: config.gemini.defaultModel, text: 'warm-up' }), promptJobOptions(config, randomUUID(), 'normal'));
      await waitFor(async () => ((await queue.getJobCounts('completed')).completed >= 1 ? true : undefined), { what: 'the warm-up job' });
      await emulator.client.setLatency(LATENCY_MS);
      await emulator.client.reset();
      await queue.addBulk(
        Array.from({ length: JOBS }, (_, i) => ({
          name: 'generate',
          data: promptData({ model: config.gemini.defaultModel, text: `capacity prompt ${i}` }),
          opts: promptJobOptions(config, randomUUID(), 'normal'),
        })),
      );
      // Every call in flight at once, before any answer.
      let peak = 0;
      await waitFor(
        async () => {
          peak = (await emulator.client.counters()).inFlight.peak;
          return peak >= JOBS ? true : undefined;
        },
        { timeoutMs: LATENCY_MS - 1_000, intervalMs: 100, what: `${JOBS} calls in flight at once` },
      ).catch((error: unknown) => {
        throw new Error(`${String(error)}: at most ${peak} were`);
      });
      expect(peak).toBe(JOBS);
      await waitFor(async () => ((await queue.getJobCounts('completed')).completed >= JOBS + 1 ? true : undefined), {
        timeoutMs: 4 * LATENCY_MS,
        intervalMs: 200,
        what: `${JOBS} jobs completed`,
      });
      const counters = await emulator.client.counters();
      expect(failures).toEqual([]);
      expect(counters.totals.successes).toBe(JOBS);
      expect(counters.totals.errors4xx + counters.totals.errors5xx + counters.totals.aborted).toBe(0);
      expect(counters.inFlight.now).toBe(0);
    } finally {
      await worker.close(1_000);
      await queue.close();
      connection.disconnect();
    }
  }, 90_000);
});
