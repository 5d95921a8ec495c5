import type { JobsOptions } from 'bullmq';
import type { Config } from '../config/schema.js';
import { bullmqPriority } from './priority.js';
import type { PriorityLevel } from './payloads.js';

/** Name of the worker's backoff strategy (exponential with full jitter, see apps/worker). */
export const JITTERED_BACKOFF = 'jittered';

/**
 * BullMQ options of every prompt job. Attempts and backoff are set at enqueue time (BullMQ keeps
 * them on the job), so producer and worker must agree: both call this.
 */
export function promptJobOptions(config: Config, jobId: string, priority: PriorityLevel | undefined): JobsOptions {
  return {
    jobId,
    priority: bullmqPriority(priority),
    attempts: config.worker.attempts,
    backoff: { type: JITTERED_BACKOFF },
    // Finished jobs stay readable for the result TTL, then BullMQ removes them.
    removeOnComplete: { age: config.producer.resultTtlSeconds },
    removeOnFail: { age: config.producer.resultTtlSeconds },
  };
}
