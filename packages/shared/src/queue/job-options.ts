import type { JobsOptions } from 'bullmq';
import type { Config } from '../config/schema.js';
import { MAX_BULLMQ_PRIORITY } from './fairness.js';
import { bullmqPriority } from './priority.js';
import type { PriorityLevel } from './payloads.js';

/** Name of the worker's backoff strategy (exponential with full jitter, see apps/worker). */
export const JITTERED_BACKOFF = 'jittered';

/**
 * BullMQ options of every prompt job. Attempts and backoff are set at enqueue time (BullMQ keeps
 * them on the job), so producer and worker must agree: both call this.
 *
 * @param priority the BullMQ priority the producer computed for fairness (`assignFairPriorities`,
 * clamped to 1…2^21−1), or a level for callers outside the fair path (tests, tools), which maps
 * to the static `BULLMQ_PRIORITY`.
 */
export function promptJobOptions(config: Config, jobId: string, priority: PriorityLevel | number | undefined): JobsOptions {
  return {
    jobId,
    priority: typeof priority === 'number' ? Math.min(Math.max(1, Math.trunc(priority)), MAX_BULLMQ_PRIORITY) : bullmqPriority(priority),
    attempts: config.worker.attempts,
    backoff: { type: JITTERED_BACKOFF },
    // Finished jobs stay readable for the result TTL, then BullMQ removes them.
    removeOnComplete: { age: config.producer.resultTtlSeconds },
    removeOnFail: { age: config.producer.resultTtlSeconds },
  };
}
