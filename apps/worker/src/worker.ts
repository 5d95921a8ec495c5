import { hostname } from 'node:os';
import { Queue, Worker } from 'bullmq';
import type { Redis } from 'ioredis';
import { createRedis, QueueName, type Config, type Logger, type PromptJobResult } from '@prompt-queue/shared';
import { jitteredBackoffStrategy } from './backoff.js';
import { createPromptProcessor, SHUTDOWN_ABORT_REASON } from './processor.js';
import type { Provider } from './providers/provider.js';

/**
 * BullMQ only honours a manual rate limit (`queue.rateLimit(ms)`, which SETs the queue's limiter
 * key with a TTL) in workers that have a `limiter`: its moveToActive script compares the key with
 * `limiter.max` and ignores it otherwise (commands/includes/getRateLimitTTL.lua, bullmq 6.7). So
 * every worker runs with a limiter so high it never limits by itself (it costs one INCR per job);
 * a manual limit stores MAX_SAFE_INTEGER in the key, above any max, and then stops all of them.
 */
export const FLEET_PAUSE_LIMITER = { max: 1_000_000, duration: 1_000 } as const;

/** After a forced shutdown aborts the provider calls, how long their hand-back may take, ms. */
const HAND_BACK_GRACE_MS = 2_000;

export interface PromptWorkerDeps {
  config: Config;
  logger: Logger;
  provider: Provider;
  /**
   * Redis for BullMQ's commands, blob reads and the rate limit (BullMQ opens its own blocking
   * connection next to it). When given, the caller closes it after `close()`; when omitted, the
   * worker opens one from `config.redis.url` and closes it itself.
   */
  connection?: Redis;
  /** Jitter source for the backoff strategy; tests pin it. */
  random?: () => number;
}

export interface PromptWorker {
  worker: Worker<unknown, PromptJobResult>;
  /**
   * Stops fetching jobs and waits for in-flight ones up to `timeoutMs` (default
   * `worker.shutdownTimeoutMs`). Past it, provider calls still running are aborted and their jobs
   * handed back to the queue (no attempt spent); a job that cannot be handed back (Redis gone)
   * stays locked and returns through BullMQ's stalled-job recovery once `lockDurationMs` passes.
   * Idempotent: later calls return the first call's promise.
   */
  close(timeoutMs?: number): Promise<{ forced: boolean }>;
}

export function createPromptWorker(deps: PromptWorkerDeps): PromptWorker {
  const { config, logger } = deps;
  const ownsConnection = deps.connection === undefined;
  const connection = deps.connection ?? createRedis(config.redis.url, 'worker', 'pq-worker');
  const prefix = config.redis.prefix;

  // Only used to set the fleet-wide pause; shares the connection.
  const queue = new Queue(QueueName.Prompts, { connection, prefix });
  queue.on('error', (error) => logger.warn('queue connection error', { error: error.message }));

  const processor = createPromptProcessor({
    config,
    logger,
    provider: deps.provider,
    redis: connection,
    pauseQueue: async (ms) => {
      // Extend only: a shorter delay from a concurrent 429 must not cut a longer pause short.
      const current = await queue.getRateLimitTtl(FLEET_PAUSE_LIMITER.max);
      if (current < ms) await queue.rateLimit(Math.ceil(ms));
    },
  });

  const worker = new Worker<unknown, PromptJobResult>(QueueName.Prompts, processor, {
    connection,
    prefix,
    name: `${hostname()}:${process.pid}`,
    concurrency: config.worker.concurrency,
    lockDuration: config.worker.lockDurationMs,
    // Check for stalled jobs as often as a lock can expire, so a crashed worker's jobs come back
    // within about two lock durations (BullMQ's default is a fixed 30 s).
    stalledInterval: config.worker.lockDurationMs,
    limiter: { ...FLEET_PAUSE_LIMITER },
    settings: {
      backoffStrategy: jitteredBackoffStrategy({
        baseMs: config.worker.backoffBaseMs,
        maxMs: config.worker.backoffMaxMs,
        ...(deps.random ? { random: deps.random } : {}),
      }),
    },
  });
  // Without a listener an 'error' event would crash the process; BullMQ retries on its own.
  worker.on('error', (error) => logger.error('worker error', { error: error.message }));

  let closing: Promise<{ forced: boolean }> | undefined;
  const close = (timeoutMs = config.worker.shutdownTimeoutMs): Promise<{ forced: boolean }> =>
    (closing ??= (async () => {
      const graceful = worker.close().catch((error: unknown) => {
        logger.warn('error while closing the worker', { error: String(error) });
      });
      let forced = false;
      if (!(await settlesWithin(graceful, timeoutMs))) {
        forced = true;
        logger.warn('shutdown timeout reached: aborting in-flight provider calls and handing their jobs back', { timeoutMs });
        worker.cancelAllJobs(SHUTDOWN_ABORT_REASON);
        if (!(await settlesWithin(graceful, HAND_BACK_GRACE_MS))) {
          logger.warn('in-flight jobs did not settle; they return to the queue through stalled-job recovery', {
            lockDurationMs: config.worker.lockDurationMs,
          });
        }
      }
      await queue.close().catch(() => undefined);
      if (ownsConnection) await connection.quit().catch(() => connection.disconnect());
      return { forced };
    })());

  return { worker, close };
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
