import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import {
  createLogger,
  createRedis,
  promptJobResultSchema,
  putBlobs,
  QueueName,
  sha256Hex,
  type Config,
} from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import { GeminiProvider, geminiOptionsFromConfig } from '../src/providers/gemini/gemini-provider.js';
import type { GenerateRequest, GenerateResult, Provider } from '../src/providers/provider.js';
import { createPromptWorker, type PromptWorker } from '../src/worker.js';
import { enqueue, MODEL, promptData, testConfig, waitForJob } from './helpers.js';

/** Each chain link's real adapter, with each call's start time noted (observation, not a mock). */
class RecordingProvider implements Provider {
  readonly name: string;
  constructor(
    private readonly inner: Provider,
    readonly calls: number[],
  ) {
    this.name = inner.name;
  }
  generate(request: GenerateRequest, options?: { signal?: AbortSignal }): Promise<GenerateResult> {
    this.calls.push(Date.now());
    return this.inner.generate(request, options);
  }
}

describe('prompt worker (real Redis, real SDK, emulator process)', () => {
  let redisServer: TestRedis;
  let emulator: EmulatorProcess;
  let redis: Redis;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    [redisServer, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess()]);
    redis = new Redis(redisServer.url);
  });
  afterAll(async () => {
    redis?.disconnect();
    await Promise.all([emulator?.stop(), redisServer?.stop()]);
  });
  beforeEach(async () => {
    await emulator.client.reset();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function setup(env: Record<string, string> = {}, options: { workers?: number; apiKey?: string } = {}) {
    const config: Config = testConfig({
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('w'),
      GEMINI_API_KEY: options.apiKey ?? emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      ...env,
    });
    const logger = createLogger({ service: 'worker-test', level: 'error' });
    const provider = { calls: [] as number[] };
    const workers: PromptWorker[] = [];
    const failures: string[] = [];
    for (let i = 0; i < (options.workers ?? 1); i++) {
      const w = createPromptWorker({
        config,
        logger,
        createProvider: () => new RecordingProvider(new GeminiProvider(geminiOptionsFromConfig(config)), provider.calls),
      });
      w.worker.on('failed', (_job, error) => failures.push(error.message));
      workers.push(w);
      cleanups.push(() => w.close(1_000));
    }
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    return { config, queue, provider, workers, failures };
  }

  it('completes a job with a valid result, usage incl. thoughts and a cost, in one provider call', async () => {
    const { config, queue } = setup();
    const id = await enqueue(queue, config, promptData({ systemInstruction: 'Be brief.' }));
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
    expect(state).toBe('completed');
    const result = promptJobResultSchema.parse(job.returnvalue);
    expect(result).toMatchObject({ provider: 'gemini', model: MODEL, finishReason: 'STOP', cached: false, modelVersion: MODEL });
    expect(result.text).toMatch(/^Emulated answer/);
    expect(result.usage.thoughtsTokens).toBeGreaterThan(0);
    expect(result.usage.totalTokens).toBe(result.usage.inputTokens + result.usage.outputTokens + result.usage.thoughtsTokens);
    expect(result.costUsd).toBeGreaterThan(0);
    expect(result.costNanoUsd).toBe(Math.round(result.costUsd! * 1e9));
    expect(result.latencyMs).toBeGreaterThanOrEqual(0);
    expect(job.attemptsMade).toBe(1);
    const counters = await emulator.client.counters();
    expect(counters.totalCalls).toBe(1);
    expect(counters.byModel[MODEL]).toMatchObject({ successes: 1, inputTokens: result.usage.inputTokens, thoughtsTokens: result.usage.thoughtsTokens });
  });

  it('400 fails the job at once: one provider call, [PROVIDER_BAD_REQUEST], attemptsMade 1', async () => {
    const { config, queue } = setup();
    await emulator.client.addFault({ kind: 'badRequest', count: 1 });
    const id = await enqueue(queue, config, promptData());
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
    expect(state).toBe('failed');
    expect(job.failedReason).toMatch(/^\[PROVIDER_BAD_REQUEST\] Gemini answered 400/);
    expect(job.attemptsMade).toBe(1);
    expect((await emulator.client.counters()).totalCalls).toBe(1);
  });

  it('a bad API key fails with PROVIDER_AUTH_FAILED, no retry', async () => {
    const { config, queue } = setup({}, { apiKey: 'not-a-valid-key' });
    const id = await enqueue(queue, config, promptData());
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
    expect(state).toBe('failed');
    expect(job.failedReason).toMatch(/^\[PROVIDER_AUTH_FAILED\] .*API key not valid/);
    expect(job.failedReason).not.toContain('not-a-valid-key');
    expect(job.attemptsMade).toBe(1);
    expect((await emulator.client.counters()).totalCalls).toBe(1);
  });

  it('an unknown model fails with PROVIDER_MODEL_NOT_FOUND', async () => {
    const { config, queue } = setup();
    const id = await enqueue(queue, config, promptData({ model: 'gemini-0.9-imaginary' }));
    const { job } = await waitForJob(queue, id, ['failed']);
    expect(job.failedReason).toMatch(/^\[PROVIDER_MODEL_NOT_FOUND\] /);
    expect(job.attemptsMade).toBe(1);
  });

  it('a blocked prompt fails with PROMPT_BLOCKED; a SAFETY finish with RESPONSE_BLOCKED', async () => {
    const { config, queue } = setup();
    const blocked = await enqueue(queue, config, promptData({ text: 'tell me [[block]]' }));
    const safety = await enqueue(queue, config, promptData({ text: 'tell me [[safety]]' }));
    const a = await waitForJob(queue, blocked, ['completed', 'failed']);
    const b = await waitForJob(queue, safety, ['completed', 'failed']);
    expect(a.job.failedReason).toBe('[PROMPT_BLOCKED] Gemini blocked the prompt (SAFETY)');
    expect(b.job.failedReason).toBe('[RESPONSE_BLOCKED] Gemini withheld the answer (finishReason SAFETY)');
    expect([a.job.attemptsMade, b.job.attemptsMade]).toEqual([1, 1]);
    expect((await emulator.client.counters()).totalCalls).toBe(2);
  });

  it('503 twice then success: completed after 3 calls with jittered backoff', async () => {
    const { config, queue, failures } = setup({ BACKOFF_BASE_MS: '20' });
    await emulator.client.addFault({ kind: 'unavailable', count: 2 });
    const id = await enqueue(queue, config, promptData());
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
    expect(state).toBe('completed');
    expect(job.attemptsMade).toBe(3);
    expect(failures).toEqual([expect.stringMatching(/^\[PROVIDER_UNAVAILABLE\] Gemini answered 503/), expect.stringMatching(/^\[PROVIDER_UNAVAILABLE\] /)]);
    const counters = await emulator.client.counters();
    expect(counters.totalCalls).toBe(3);
    expect(counters.byStatus).toMatchObject({ '503': 2, '200': 1 });
  });

  it('retryable failures stop after JOB_ATTEMPTS with the last [CODE]', async () => {
    const { config, queue } = setup({ JOB_ATTEMPTS: '2' });
    await emulator.client.addFault({ kind: 'internal', count: 5 });
    const id = await enqueue(queue, config, promptData());
    const { job } = await waitForJob(queue, id, ['failed']);
    expect(job.failedReason).toMatch(/^\[PROVIDER_UNAVAILABLE\] Gemini answered 500/);
    expect(job.attemptsMade).toBe(2);
    expect((await emulator.client.counters()).totalCalls).toBe(2);
  });

  it('429 pauses the whole fleet for retryDelay and spends no attempt', async () => {
    // Two workers, and a second job enqueued during the pause: neither worker may call Gemini
    // before the retry delay is over (a pause local to one worker would let the other go on).
    const { config, queue, provider } = setup({}, { workers: 2 });
    await emulator.client.addFault({ kind: 'rateLimit', count: 1, retryDelaySeconds: 1 });
    const first = await enqueue(queue, config, promptData({ text: 'first' }));
    await waitForJob(queue, first, ['delayed']);
    const second = await enqueue(queue, config, promptData({ text: 'second' }));
    const a = await waitForJob(queue, first, ['completed', 'failed']);
    const b = await waitForJob(queue, second, ['completed', 'failed']);
    expect([a.state, b.state]).toEqual(['completed', 'completed']);
    expect(a.job.attemptsMade).toBe(1);
    expect(provider.calls).toHaveLength(3);
    const [rateLimited, ...later] = provider.calls;
    for (const call of later) expect(call - rateLimited!).toBeGreaterThanOrEqual(950);
    expect(Math.max(...later) - rateLimited!).toBeLessThan(2_500);
    const counters = await emulator.client.counters();
    expect(counters.byStatus).toMatchObject({ '429': 1, '200': 2 });
  });

  it('resolves image blobs into inlineData (the emulator counts image tokens)', async () => {
    const { config, queue } = setup();
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex');
    const [ref] = await putBlobs(redis, config.redis.prefix, [{ mimeType: 'image/png', data: png }], 60);
    const textOnly = await enqueue(queue, config, promptData({ text: 'Describe this image.' }));
    const withImage = await enqueue(
      queue,
      config,
      promptData({ contents: [{ role: 'user', parts: [{ text: 'Describe this image.' }, { blob: ref! }] }] }),
    );
    const a = await waitForJob(queue, textOnly, ['completed', 'failed']);
    const b = await waitForJob(queue, withImage, ['completed', 'failed']);
    expect(b.state).toBe('completed');
    expect(b.job.returnvalue.usage.inputTokens - a.job.returnvalue.usage.inputTokens).toBe(258);
  });

  it('an expired image fails the job with IMAGE_EXPIRED before any provider call', async () => {
    const { config, queue } = setup();
    const missing = { mimeType: 'image/png', sha256: sha256Hex('never stored'), bytes: 12 };
    const id = await enqueue(queue, config, promptData({ contents: [{ role: 'user', parts: [{ text: 'x' }, { blob: missing }] }] }));
    const { job } = await waitForJob(queue, id, ['failed']);
    expect(job.failedReason).toMatch(/^\[IMAGE_EXPIRED\] /);
    expect(job.attemptsMade).toBe(1);
    expect((await emulator.client.counters()).totalCalls).toBe(0);
  });

  it('an invalid payload fails with INVALID_JOB', async () => {
    const { config, queue } = setup();
    const id = await enqueue(queue, config, { v: 2, hello: 'world' });
    const { job } = await waitForJob(queue, id, ['failed']);
    expect(job.failedReason).toMatch(/^\[INVALID_JOB\] /);
    expect(job.attemptsMade).toBe(1);
    expect((await emulator.client.counters()).totalCalls).toBe(0);
  });

  it('a slow provider call times out (GEMINI_TIMEOUT_MS) and is retried as PROVIDER_TIMEOUT', async () => {
    const { config, queue, failures } = setup({ GEMINI_TIMEOUT_MS: '300' });
    await emulator.client.addFault({ kind: 'slow', count: 1, delayMs: 5_000 });
    const id = await enqueue(queue, config, promptData());
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
    expect(state).toBe('completed');
    expect(failures).toEqual(['[PROVIDER_TIMEOUT] Gemini did not answer within 300 ms']);
    expect(job.attemptsMade).toBe(2);
    expect((await emulator.client.counters()).totalCalls).toBe(2);
  });

  it('close() hands back at once the jobs gathering for a batch, and lets the call in flight finish', async () => {
    const { config, queue, workers, provider } = setup({ BATCH_SIZE: '16', BATCH_MAX_WAIT_MS: '10000' });
    await emulator.client.setLatency(1_500);
    try {
      const first = await enqueue(queue, config, promptData({ text: 'in flight' }));
      await waitFor(() => provider.calls.length === 1, { what: 'the first call' });
      // The route is busy: these gather for up to BATCH_MAX_WAIT_MS.
      const gathering = await Promise.all([1, 2, 3].map((i) => enqueue(queue, config, promptData({ text: `gathering ${i}` }))));
      await waitFor(async () => (await queue.getJobCounts('active')).active === 4, { what: 'all four held' });

      const closed = workers[0]!.close(10_000);
      for (const id of gathering) {
        const { job } = await waitForJob(queue, id, ['delayed', 'waiting', 'wait', 'prioritized'], 500);
        expect(job.attemptsMade).toBe(0);
      }
      expect(await queue.getJobState(first)).toBe('active');
      expect(await closed).toEqual({ forced: false });
      expect((await waitForJob(queue, first, ['completed'])).job.attemptsMade).toBe(1);
      expect(provider.calls).toHaveLength(1);
    } finally {
      await emulator.client.setLatency(0);
    }
  });

  it('close() past its timeout hands in-flight jobs back to the queue without spending an attempt', async () => {
    const { config, queue, workers, provider } = setup();
    await emulator.client.setLatency(3_000);
    try {
      const id = await enqueue(queue, config, promptData());
      await waitForJob(queue, id, ['active']);
      await waitFor(() => provider.calls.length === 1, { what: 'the provider call' });
      const started = Date.now();
      expect(await workers[0]!.close(200)).toEqual({ forced: true });
      expect(Date.now() - started).toBeLessThan(1_500);
      const { job, state } = await waitForJob(queue, id, ['delayed', 'waiting', 'wait']);
      expect(['delayed', 'waiting', 'wait']).toContain(state);
      expect(job.attemptsMade).toBe(0);
      expect(job.stalledCounter ?? 0).toBe(0);
    } finally {
      await emulator.client.setLatency(0);
    }
  });
});
