import type { Job } from 'bullmq';
import type { PromptFeatures, PromptJobData } from '@prompt-queue/shared';
import type { Link } from '../providers/chain.js';
import type { EmbedItem, GenerateRequest } from '../providers/provider.js';
import type { JobFate } from './fate.js';

/**
 * The shapes every stage of the batch path shares. Stages take these and return decisions (maps
 * keyed by job); only serve-batch.ts combines them.
 */

/** One job as the pipeline carries it: BullMQ's handles plus the parsed payload. */
export interface JobEntry {
  job: Job;
  token: string | undefined;
  signal: AbortSignal | undefined;
  data: PromptJobData;
}

/** A job in a batch, with what the prepare stage worked out for it. */
export interface BatchJob {
  readonly entry: JobEntry;
  /** What its input-token estimate is computed from (generate jobs). */
  readonly features: PromptFeatures;
  /** Its input-token estimate for the budget: the largest calibrated reservation over its chain's links. */
  readonly estimate: number;
  /** sha256 of the canonical request (audit lines). */
  readonly promptSha256: string;
  readonly request?: GenerateRequest;
  readonly embedItem?: EmbedItem;
}

/** One micro-batch: jobs of one kind and model, and the chain that serves them. */
export interface Batch {
  readonly kind: 'generate' | 'embed';
  readonly model: string;
  readonly jobs: readonly BatchJob[];
  readonly links: readonly Link[];
}

/** Decided fates, by job. */
export type Fates = Map<BatchJob, JobFate>;
