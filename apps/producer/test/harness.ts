// A producer app wired to real Redis, BullMQ and QueueEvents, as main.ts wires it, on a key prefix
// no other test uses. Tests talk to it through supertest and inspect Redis directly.
import { Worker, type Processor } from 'bullmq';
import type { Redis } from 'ioredis';
import supertest from 'supertest';
import {
  QueueName,
  createLogger,
  createRedis,
  loadConfig,
  waitForRedis,
  type Config,
  type PromptJobResult,
} from '@prompt-queue/shared';
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { createApp } from '../src/app.js';
import { LiveEvents } from '../src/live-events.js';
import { createPromptQueue, type PromptQueue } from '../src/queue.js';
import { JobEvents } from '../src/wait.js';

export const ACME = { authorization: 'Bearer key-a' };
export const GLOBEX = { authorization: 'Bearer key-b' };

export interface Harness {
  config: Config;
  redis: Redis;
  queue: PromptQueue;
  jobEvents: JobEvents;
  liveEvents: LiveEvents;
  /** The app itself, for tests that need a real listening server (Server-Sent Events). */
  app: ReturnType<typeof createApp>;
  http: ReturnType<typeof supertest>;
  /** A BullMQ worker on the same queue, closed with the harness. */
  startWorker(processor: Processor): Promise<Worker>;
  close(): Promise<void>;
}

export async function startHarness(
  redisUrl: string,
  env: Record<string, string> = {},
  adjust: (config: Config) => void = () => {},
): Promise<Harness> {
  const config = loadConfig({ REDIS_URL: redisUrl, REDIS_PREFIX: uniquePrefix('p'), API_KEYS: 'acme:key-a,globex:key-b', ...env });
  adjust(config);
  const logger = createLogger({ service: 'producer-test', level: 'error' });
  logger.silent = true;
  const redis = createRedis(config.redis.url, 'producer');
  redis.on('error', () => {});
  await waitForRedis(redis);
  const queue = createPromptQueue(config, redis, logger);
  await queue.waitUntilReady();
  const jobEvents = JobEvents.start(config, logger);
  await jobEvents.waitUntilReady();
  const liveEvents = LiveEvents.start(config, redis, logger);
  const app = createApp({ config, redis, queue, jobEvents, liveEvents, logger });

  const workers: { worker: Worker; connection: Redis }[] = [];
  return {
    config,
    redis,
    queue,
    jobEvents,
    liveEvents,
    app,
    http: supertest(app),
    async startWorker(processor) {
      const connection = createRedis(config.redis.url, 'worker');
      connection.on('error', () => {});
      const worker = new Worker(QueueName.Prompts, processor, { connection, prefix: config.redis.prefix });
      worker.on('error', () => {});
      workers.push({ worker, connection });
      await worker.waitUntilReady();
      return worker;
    },
    async close() {
      for (const { worker, connection } of workers) {
        await bounded(worker.close(true));
        connection.disconnect();
      }
      await jobEvents.close();
      await liveEvents.close();
      await bounded(queue.close());
      redis.disconnect();
    },
  };
}

/** Closing against a stopped Redis can wait for a reconnect that never comes. */
async function bounded(promise: Promise<unknown>, ms = 2_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([promise.catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

export const RESULT: PromptJobResult = {
  text: 'A queue of haiku',
  finishReason: 'STOP',
  provider: 'gemini',
  model: 'gemini-3.6-flash',
  cached: false,
  usage: { inputTokens: 7, outputTokens: 5, thoughtsTokens: 0, cachedTokens: 0, totalTokens: 12 },
  costUsd: 0.000012,
  costNanoUsd: 12_000,
  latencyMs: 42,
};

/** Small but genuine-looking image headers (the producer only checks magic bytes). */
export const IMAGES = {
  png: Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.from('IHDR-and-some-pixels')]),
  jpeg: Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.from('JFIF-body')]),
  webp: Buffer.concat([Buffer.from('RIFF'), Buffer.from([0x20, 0, 0, 0]), Buffer.from('WEBPVP8 data')]),
  heic: Buffer.concat([Buffer.from([0, 0, 0, 24]), Buffer.from('ftypheic'), Buffer.from([0, 0, 0, 0]), Buffer.from('mif1heic')]),
};

export async function totalJobs(queue: PromptQueue): Promise<number> {
  const counts = await queue.getJobCounts();
  return Object.values(counts).reduce((sum, n) => sum + n, 0);
}

/**
 * The usual file setup: one private Redis for the file, a fresh harness (own key prefix) per test,
 * closed after it. `onStart` receives each new harness.
 */
export function useHarness(onStart: (harness: Harness) => void): void {
  let server: TestRedis;
  let current: Harness | undefined;
  beforeAll(async () => {
    server = await startTestRedis();
  });
  afterAll(async () => {
    await server?.stop();
  });
  beforeEach(async () => {
    current = await startHarness(server.url);
    onStart(current);
  });
  afterEach(async () => {
    await current?.close();
  });
}
