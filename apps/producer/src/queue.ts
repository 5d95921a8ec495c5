import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { QueueName, type Config, type Logger, type PromptJobData, type PromptJobResult } from '@prompt-queue/shared';

/** Jobs are named by their kind (`generate`, `embed`): what bull-board and BullMQ's events show. */
export type PromptQueue = Queue<PromptJobData, PromptJobResult, PromptJobData['kind']>;

/**
 * The `prompts` queue on the producer's own (fail-fast) connection. BullMQ shares a caller's
 * client for non-blocking use, so closing the queue leaves `redis` open: close it yourself, last.
 */
export function createPromptQueue(config: Config, redis: Redis, logger: Logger): PromptQueue {
  const queue: PromptQueue = new Queue(QueueName.Prompts, { connection: redis, prefix: config.redis.prefix });
  // Without a listener an 'error' event would throw; connection errors are reported per request.
  queue.on('error', (error) => logger.debug('queue error', { error: error.message }));
  return queue;
}
