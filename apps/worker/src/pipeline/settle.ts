import type { ChainableCommander } from 'ioredis';
import {
  appendJobEvents,
  type BudgetGuard,
  type BudgetReservation,
  type Config,
  type ErrorCode,
  type FleetLimiter,
  type JobEnd,
  type JobEndRecorder,
  type JobEvent,
  type Logger,
  type OutputSample,
  type OutputTokenEstimator,
  type TokenEstimator,
} from '@prompt-queue/shared';
import type { CacheEntry, ResponseCache } from '../cache/response-cache.js';
import type { WorkerMetrics } from '../metrics.js';
import type { Batch, Fates } from './batch.js';
import { maxOutputTokens } from './budget-admit.js';
import { cachedAnswerOf, type CacheLookup } from './cache-stage.js';
import type { LimiterLedger } from './call-chain.js';
import { jobEndOf } from './ends.js';
import { isFinal, type JobFate } from './fate.js';

/**
 * Stage 5: settle, one round trip for the whole batch: the limiter's settle/release and token
 * calibration · budget settle (Batch API answers, which held no reservation, charged as they are) ·
 * [cache store + in-flight claim release + live events] in one pipeline · output-token samples · and the jobs that ended, through THE recorder (usage, audit,
 * fairness, final events, webhooks, metrics: lifecycle/job-ends.ts in shared), all sent together.
 * Never throws: a failed write is logged (budget reservations then expire on their own, usage
 * counters miss this batch, reservations stay at their estimate until they leave the window).
 */

export interface SettleDeps {
  config: Config;
  logger: Logger;
  limiter: FleetLimiter;
  estimator: TokenEstimator;
  budgets: BudgetGuard;
  cache?: ResponseCache | undefined;
  outputEstimator?: OutputTokenEstimator | undefined;
  recorder: JobEndRecorder;
  metrics?: WorkerMetrics | undefined;
}

/** Everything a batch decided, for the settle step. */
export interface BatchDecisions {
  batch: Batch;
  fates: Fates;
  lookup: CacheLookup;
  reservations: Map<unknown, BudgetReservation>;
  ledger: LimiterLedger;
}

/** A wait shorter than this, for a routine reason, is not worth a live event. */
const QUIET_WAIT_MS = 1_000;

export async function settleBatch(deps: SettleDeps, decided: BatchDecisions): Promise<void> {
  await sendSettleWrites(deps, settleWritesOf(deps, decided));
}

/** What settling some jobs writes, gathered before anything is sent (several can be merged). */
interface SettleWrites {
  ends: JobEnd[];
  events: JobEvent[];
  budgetItems: { reservation: BudgetReservation; actualNanoUsd: number }[];
  /** Billed calls that held no reservation (Batch API answers): charged as they are. */
  budgetCharges: { tenant: string; nanoUsd: number }[];
  outputSamples: OutputSample[];
  cacheEntries: CacheEntry[];
  claims: CacheLookup['claims'];
  ledger: LimiterLedger;
}

function settleWritesOf(deps: SettleDeps, decided: BatchDecisions): SettleWrites {
  const { config, cache, metrics } = deps;
  const { batch, fates, lookup, reservations, ledger } = decided;
  const now = new Date();
  const writes: SettleWrites = { ends: [], events: [], budgetItems: [], budgetCharges: [], outputSamples: [], cacheEntries: [], claims: lookup.claims, ledger };
  let cacheHits = 0;
  let cacheMisses = 0;

  for (const job of batch.jobs) {
    const fate: JobFate = fates.get(job)!;
    const data = job.entry.data;
    const keys = lookup.keys.get(job) ?? [];
    const reservation = reservations.get(job);
    const billed = fate.kind === 'served' && !fate.result.cached ? (fate.result.costNanoUsd ?? 0) : 0;
    if (reservation) writes.budgetItems.push({ reservation, actualNanoUsd: billed });
    else if (billed > 0) writes.budgetCharges.push({ tenant: data.tenant, nanoUsd: billed });
    if (keys.length > 0) {
      if (fate.kind === 'served' && fate.result.cached) cacheHits += 1;
      else cacheMisses += 1;
    }
    if (fate.kind === 'served' && !fate.result.cached) {
      const { result } = fate;
      const key = keys[batch.links.findIndex((link) => link.providerName === result.provider && link.model === result.model)];
      if (cache && key !== undefined) writes.cacheEntries.push({ key, answer: cachedAnswerOf(result), ttlSeconds: cache.ttlFor(data) });
      if (data.kind === 'generate') {
        const bound = maxOutputTokens(data, config.models[result.model]?.outputTokenLimit);
        writes.outputSamples.push({ model: result.model, bound, tokens: result.usage.outputTokens + result.usage.thoughtsTokens });
      }
    }
    const base = { jobId: job.entry.job.id ?? '', tenant: data.tenant, at: now.toISOString(), attempt: job.entry.job.attemptsMade + 1 };
    if (fate.kind === 'failed' && fate.retry) {
      metrics?.recordJob('retried', fate.code);
      writes.events.push({ ...base, type: 'retrying', code: fate.code });
    } else if (fate.kind === 'wait') {
      metrics?.recordJob(fate.reason === 'quota' || fate.reason === 'rate-limited' ? 'rate_limited' : 'delayed', waitCode(fate.reason));
      const routine = fate.reason === 'cache-pending' || fate.reason === 'budget-busy' || fate.reason === 'quota';
      if (!routine || fate.untilMs - now.getTime() >= QUIET_WAIT_MS) {
        writes.events.push({ ...base, type: 'waiting', reason: fate.reason, until: new Date(fate.untilMs).toISOString() });
      }
    } else if (isFinal(fate)) {
      writes.ends.push(jobEndOf(config, job, fate, batch.links, now));
    }
  }
  metrics?.recordCacheLookups(cacheHits, cacheMisses);
  return writes;
}

/** Sends settle writes: one round trip, whatever they came from. */
async function sendSettleWrites(deps: SettleDeps, writes: SettleWrites): Promise<void> {
  const { config, logger, limiter, estimator, budgets, cache, outputEstimator, recorder } = deps;
  const { ends, events, budgetItems, budgetCharges, outputSamples, cacheEntries, claims, ledger } = writes;
  const warn = (what: string) => (error: unknown) => logger.warn(`settle: ${what} failed`, { error: String(error) });
  const append = (pipeline: ChainableCommander): void => {
    if (cache && cacheEntries.length > 0) cache.appendStore(pipeline, cacheEntries);
    // After the answers: a worker that waited for this claim finds the answer once it is gone.
    if (cache && claims.length > 0) cache.appendRelease(pipeline, claims);
    appendJobEvents(pipeline, config.redis.prefix, events, config.events.historyPerTenant);
  };
  // The pipelines go out back to back on one connection: one round trip for the whole step.
  await recorder.record(ends, {
    append,
    alongside: [
      Promise.all([
        ledger.settle.length > 0 ? limiter.settle(ledger.settle) : undefined,
        ledger.release.length > 0 ? limiter.release(ledger.release) : undefined,
        ledger.samples.length > 0 ? estimator.record(ledger.samples) : undefined,
      ]).catch(warn('limiter settle')),
      budgetItems.length > 0 ? budgets.settle(budgetItems).catch(warn('budget settle')) : Promise.resolve(),
      budgetCharges.length > 0 ? budgets.charge(budgetCharges).catch(warn('budget charge')) : Promise.resolve(),
      outputEstimator && outputSamples.length > 0 ? outputEstimator.record(outputSamples).catch(warn('output estimate record')) : Promise.resolve(),
    ],
  });
}

/**
 * Settles jobs served ahead of their batch (serve-batch.ts), gathered across every batch of the
 * process for up to `windowMs` (or until `maxJobs` wait), and sent as one settle: slow calls end
 * one by one, and a settle per job would cost a round trip and a handful of pipelines each.
 */
export class SettleCoalescer {
  private pending: { writes: SettleWrites; done: { resolve(): void } }[] = [];
  private jobs = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: SettleDeps,
    private readonly windowMs: number,
    private readonly maxJobs = 256,
  ) {}

  /** Resolves once these decisions are written (never rejects: failures are logged, as in settleBatch). */
  add(decided: BatchDecisions): Promise<void> {
    const writes = settleWritesOf(this.deps, decided);
    return new Promise<void>((resolve) => {
      this.pending.push({ writes, done: { resolve } });
      this.jobs += decided.batch.jobs.length;
      if (this.jobs >= this.maxJobs) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.windowMs);
    });
  }

  /** Sends what is gathered now (a batch about to release its cache claims calls it first). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const taken = this.pending;
    this.pending = [];
    this.jobs = 0;
    if (taken.length === 0) return;
    const merged: SettleWrites = { ends: [], events: [], budgetItems: [], budgetCharges: [], outputSamples: [], cacheEntries: [], claims: [], ledger: { settle: [], release: [], samples: [] } };
    for (const { writes } of taken) {
      merged.ends.push(...writes.ends);
      merged.events.push(...writes.events);
      merged.budgetItems.push(...writes.budgetItems);
      merged.budgetCharges.push(...writes.budgetCharges);
      merged.outputSamples.push(...writes.outputSamples);
      merged.cacheEntries.push(...writes.cacheEntries);
      merged.claims.push(...writes.claims);
      merged.ledger.settle.push(...writes.ledger.settle);
      merged.ledger.release.push(...writes.ledger.release);
      merged.ledger.samples.push(...writes.ledger.samples);
    }
    void sendSettleWrites(this.deps, merged).finally(() => {
      for (const { done } of taken) done.resolve();
    });
  }
}

function waitCode(reason: string): ErrorCode | '' {
  switch (reason) {
    case 'cache-pending':
    case 'waiting-in-batch':
      return '';
    case 'budget':
    case 'budget-busy':
      return 'BUDGET_EXCEEDED';
    case 'breakers-open':
      return 'PROVIDER_UNAVAILABLE';
    default:
      return 'PROVIDER_RATE_LIMITED';
  }
}
