import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  formatFailedReason,
  OutputTokenEstimator,
  promptJobDataSchema,
  type AuditLog,
  type BudgetGuard,
  type Config,
  type FleetLimiter,
  type TokenEstimator,
  type Logger,
  type PromptJobData,
  type PromptJobResult,
  type UsageLedger,
} from '@prompt-queue/shared';
import { Batcher, WithdrawnError } from './batching/batcher.js';
import type { ResponseCache } from './cache/response-cache.js';
import type { WorkerMetrics } from './metrics.js';
import { BatchAccounting } from './pipeline/accounting.js';
import { JobOutcomes, SHUTDOWN_ABORT_REASON, type JobEntry } from './pipeline/outcomes.js';
import { createBatchService } from './pipeline/serve-batch.js';
import { providerCallStarted } from './providers/call-signal.js';
import type { ProviderChains } from './providers/chain.js';
import type { WorkerStats } from './status.js';

export { SHUTDOWN_ABORT_REASON } from './pipeline/outcomes.js';

export interface ProcessorDeps {
  config: Config;
  logger: Logger;
  /** Reads image blobs. */
  redis: Redis;
  limiter: FleetLimiter;
  estimator: TokenEstimator;
  chains: ProviderChains;
  budgets: BudgetGuard;
  ledger: UsageLedger;
  /** Absent when the response cache is disabled. */
  cache?: ResponseCache;
  audit?: AuditLog;
  metrics?: WorkerMetrics;
  stats?: WorkerStats;
}

/**
 * BullMQ's processor signature. It declares all three parameters on purpose: BullMQ only creates the
 * per-job AbortSignal when `processor.length >= 3`.
 */
export type PromptProcessor = (job: Job, token: string | undefined, signal: AbortSignal | undefined) => Promise<PromptJobResult>;

export interface PromptPipeline {
  processor: PromptProcessor;
  /**
   * Shutdown has begun: hands back to the queue at once (no attempt spent) every job held that has
   * not started a provider call (gathering for a batch, or waiting for an API key's probe, the
   * limiter or the cache), and any job taken from now on (a closing BullMQ worker may still take
   * one: its blocked fetch wakes on the marker a hand-back leaves). Embed jobs count as started
   * once their batch is out: one call serves the whole batch. Returns how many were handed back.
   */
  handBackUnstarted(): number;
}

/**
 * Serves one prompt job: parse → hand it to the micro-batcher (route = kind + model) → await its own
 * outcome. The job's processor call stays pending while its batch is served, so BullMQ keeps its
 * lock renewed and records its own result, retry or failure; the batch service decides each one.
 */
export function createPromptProcessor(deps: ProcessorDeps): PromptPipeline {
  const { config, logger, stats, metrics } = deps;
  const outcomes = new JobOutcomes({ config, logger });
  const accounting = new BatchAccounting({
    config,
    logger,
    redis: deps.redis,
    budgets: deps.budgets,
    // Budget reservations price output from what the fleet's calls produced, not from the bound.
    outputEstimator: new OutputTokenEstimator(deps.redis, config.redis.prefix),
    ledger: deps.ledger,
    outcomes,
    ...(deps.cache ? { cache: deps.cache } : {}),
    ...(deps.audit ? { audit: deps.audit } : {}),
    ...(metrics ? { metrics } : {}),
  });
  const serveBatch = createBatchService({
    config,
    logger,
    redis: deps.redis,
    limiter: deps.limiter,
    estimator: deps.estimator,
    chains: deps.chains,
    outcomes,
    accounting,
    ...(metrics ? { metrics } : {}),
    ...(stats ? { onServed: (link, jobs) => stats.served(link.id, jobs) } : {}),
  });
  /** Jobs whose processor call is running, each with the controller of its signal. */
  const held = new Map<JobEntry, AbortController>();
  /** Of those, the ones whose batch went out. */
  const dispatched = new WeakSet<JobEntry>();
  let draining = false;
  const batcher = new Batcher<JobEntry, PromptJobResult>({
    size: config.batching.size,
    maxWaitMs: config.batching.maxWaitMs,
    dispatch: (_route, entries) => {
      for (const entry of entries) dispatched.add(entry);
      return serveBatch(entries);
    },
    onBatch: (route: string, size: number) => {
      stats?.batch(route, size);
      metrics?.batchSize.observe(size);
    },
  });

  const processor: PromptProcessor = async (job, token, signal) => {
    const parsed = promptJobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      const data = job.data as Partial<PromptJobData> | undefined;
      const where = parsed.error.issues.slice(0, 3).map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
      logger.warn('job failed', { jobId: job.id, tenant: data?.tenant, model: data?.model, outcome: 'failed', code: 'INVALID_JOB' });
      throw new UnrecoverableError(formatFailedReason('INVALID_JOB', `The job payload is not a valid v1 prompt job (${where.join('; ')})`));
    }
    // The job's own signal: BullMQ's (a cancel, a forced shutdown) forwarded, and ours to abort
    // when a shutdown hands the job back before it started a call.
    const controller = new AbortController();
    const forward = (): void => controller.abort(signal!.reason);
    if (signal?.aborted) forward();
    else signal?.addEventListener('abort', forward, { once: true });
    if (draining) controller.abort(SHUTDOWN_ABORT_REASON);
    const entry: JobEntry = { job, token, signal: controller.signal, data: parsed.data };
    stats?.jobStarted();
    held.set(entry, controller);
    try {
      return await batcher.submit(`${parsed.data.kind}:${parsed.data.model}`, entry, controller.signal);
    } catch (error) {
      // Aborted while gathering (a shutdown hands it back): no batch, no call, nothing to settle.
      if (error instanceof WithdrawnError) throw await outcomes.failed(entry, error.reason, 0);
      throw error;
    } finally {
      held.delete(entry);
      signal?.removeEventListener('abort', forward);
      stats?.jobEnded();
    }
  };

  const started = (entry: JobEntry): boolean =>
    dispatched.has(entry) && (entry.data.kind === 'embed' || providerCallStarted(entry.signal!));
  const handBackUnstarted = (): number => {
    draining = true;
    let count = 0;
    for (const [entry, controller] of held) {
      if (started(entry) || controller.signal.aborted) continue;
      controller.abort(SHUTDOWN_ABORT_REASON);
      count += 1;
    }
    return count;
  };
  return { processor, handBackUnstarted };
}
