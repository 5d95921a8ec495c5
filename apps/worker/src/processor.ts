import { UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  endedJobView,
  formatFailedReason,
  OutputTokenEstimator,
  promptJobDataSchema,
  type BudgetGuard,
  type Config,
  type FleetLimiter,
  type JobEnd,
  type JobEndRecorder,
  type TokenEstimator,
  type Logger,
  type PromptJobData,
  type PromptJobResult,
} from '@prompt-queue/shared';
import { Batcher, WithdrawnError } from './batching/batcher.js';
import type { ResponseCache } from './cache/response-cache.js';
import type { WorkerMetrics } from './metrics.js';
import type { JobEntry } from './pipeline/batch.js';
import { tellBullmq } from './pipeline/bullmq-outcome.js';
import { attemptFacts, jobFateOfError, SHUTDOWN_ABORT_REASON } from './pipeline/fate.js';
import { JobResults } from './pipeline/results.js';
import { createBatchService } from './pipeline/serve-batch.js';
import { providerCallStarted } from './providers/call-signal.js';
import type { ProviderChains } from './providers/chain.js';
import type { WorkerStats } from './status.js';

export { SHUTDOWN_ABORT_REASON };

export interface ProcessorDeps {
  config: Config;
  logger: Logger;
  /** Reads image blobs. */
  redis: Redis;
  limiter: FleetLimiter;
  estimator: TokenEstimator;
  chains: ProviderChains;
  budgets: BudgetGuard;
  /** Where every job end is recorded (usage, audit, fairness, events, webhooks, metrics). */
  recorder: JobEndRecorder;
  /** Absent when the response cache is disabled. */
  cache?: ResponseCache;
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
  const serveBatch = createBatchService({
    config,
    logger,
    redis: deps.redis,
    limiter: deps.limiter,
    estimator: deps.estimator,
    chains: deps.chains,
    budgets: deps.budgets,
    // Budget reservations price output from what the fleet's calls produced, not from the bound.
    outputEstimator: new OutputTokenEstimator(deps.redis, config.redis.prefix),
    cache: deps.cache,
    results: new JobResults({ config, logger }),
    recorder: deps.recorder,
    metrics,
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
    dispatch: (_route, entries, settleEarly) => {
      for (const entry of entries) dispatched.add(entry);
      return serveBatch(entries, settleEarly);
    },
    onBatch: (route: string, size: number) => {
      stats?.batch(route, size);
      metrics?.batchSize.observe(size);
    },
  });

  const processor: PromptProcessor = async (job, token, signal) => {
    const parsed = promptJobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      const where = parsed.error.issues.slice(0, 3).map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
      const error = { code: 'INVALID_JOB' as const, message: `The job payload is not a valid v1 prompt job (${where.join('; ')})` };
      await deps.recorder.record([invalidPayloadEnd(job, error)]);
      throw new UnrecoverableError(formatFailedReason(error.code, error.message));
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
      // Aborted while gathering (a shutdown hands it back, or a cancel): no batch, no call.
      if (!(error instanceof WithdrawnError)) throw error;
      const fate = jobFateOfError(attemptFacts(entry), error.reason, 0);
      if (fate.kind === 'cancelled') await deps.recorder.record([withdrawnEnd(entry)]);
      const outcome = await tellBullmq(entry, fate, logger);
      throw outcome.ok ? new Error('a withdrawn job cannot complete') : outcome.error;
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

/** A payload the worker cannot read: recorded with whatever it names (tenant, model), cost 0. */
function invalidPayloadEnd(job: Job, error: { code: 'INVALID_JOB'; message: string }): JobEnd {
  const data = (typeof job.data === 'object' && job.data !== null ? job.data : {}) as Partial<Record<keyof PromptJobData, unknown>>;
  const text = (value: unknown, fallback: string): string => (typeof value === 'string' && value.length > 0 ? value.slice(0, 200) : fallback);
  const model = text(data.model, 'unknown');
  const at = new Date();
  const attempts = job.attemptsMade + 1;
  return {
    jobId: job.id ?? '',
    tenant: text(data.tenant, 'unknown'),
    model,
    outcome: 'failed',
    provider: 'none',
    servedModel: model,
    error,
    latencyMs: 0,
    attempts,
    view: endedJobView({ id: job.id ?? '', model, attempts, createdAtMs: job.timestamp, finishedAt: at, outcome: 'failed', error }),
    at,
  };
}

/** A job cancelled before its batch went out. */
function withdrawnEnd(entry: JobEntry): JobEnd {
  const { job, data } = entry;
  const at = new Date();
  const attempts = job.attemptsMade + 1;
  const error = { code: 'CANCELLED' as const, message: 'The job was cancelled while it was being served.' };
  return {
    jobId: job.id ?? '',
    tenant: data.tenant,
    model: data.model,
    priority: data.priority,
    outcome: 'cancelled',
    provider: 'none',
    servedModel: data.model,
    error,
    latencyMs: 0,
    attempts,
    view: endedJobView({ id: job.id ?? '', model: data.model, attempts, createdAtMs: job.timestamp, finishedAt: at, ...(data.metadata ? { metadata: data.metadata } : {}), outcome: 'cancelled', error }),
    ...(data.webhook ? { webhook: data.webhook } : {}),
    at,
  };
}
