import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { isRedisConnectionError, PromptQueueError } from '@prompt-queue/shared';

/**
 * The producer's Redis fails fast (no offline queue, one retry), so while Redis is down a command
 * rejects at once and the request becomes a 503. Two cases need more than that: BullMQ's Queue
 * waits (without a bound) for its first `ready` before it can run a script, and a command can be
 * lost with its socket. `assertRedisAvailable` covers the first; `isRedisUnavailableError` the
 * errors ioredis and BullMQ raise for the second.
 */

/** How long a request waits for BullMQ's first connection setup (INFO, script loading). */
const QUEUE_READY_TIMEOUT_MS = 1_000;

export function redisUnavailable(): PromptQueueError {
  return new PromptQueueError('REDIS_UNAVAILABLE', 'Redis is not reachable; retry shortly.');
}

/**
 * Queues whose first setup finished. BullMQ resolves `waitUntilReady` once and keeps it resolved
 * (reconnects are ioredis' business, covered by the `status` check), so after the first success
 * a request skips the timer and the race: the hot path is one status check.
 */
const readyQueues = new WeakSet<Queue>();

export async function assertRedisAvailable(redis: Redis, queue: Queue): Promise<void> {
  if (redis.status !== 'ready') throw redisUnavailable();
  if (readyQueues.has(queue)) return;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(redisUnavailable()), QUEUE_READY_TIMEOUT_MS);
  });
  try {
    await Promise.race([queue.waitUntilReady(), timeout]);
    readyQueues.add(queue);
  } finally {
    clearTimeout(timer);
  }
}

export function isRedisUnavailableError(error: unknown): boolean {
  if (error instanceof PromptQueueError) return error.code === 'REDIS_UNAVAILABLE';
  return isRedisConnectionError(error);
}
