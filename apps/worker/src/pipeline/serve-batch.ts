import type { Redis } from 'ioredis';
import {
  appendJobEvents,
  type BudgetGuard,
  type BudgetReservation,
  type Config,
  type FleetLimiter,
  type JobEndRecorder,
  type Logger,
  type OutputTokenEstimator,
  type PromptJobResult,
  type TokenEstimator,
  slotPipeline,
} from '@prompt-queue/shared';
import type { Outcome } from '../batching/batcher.js';
import type { ResponseCache } from '../cache/response-cache.js';
import type { WorkerMetrics } from '../metrics.js';
import type { Link, ProviderChains } from '../providers/chain.js';
import type { BatchJob, Fates, JobEntry } from './batch.js';
import { admitBudgets, type BudgetAdmission } from './budget-admit.js';
import { tellBullmq } from './bullmq-outcome.js';
import { followerFate, groupIdentical, lookUpCache, NO_CACHE } from './cache-stage.js';
import { callChain, type LimiterLedger, type ServedEarly } from './call-chain.js';
import { attemptFacts, jobFateOfError } from './fate.js';
import { prepareBatch } from './prepare.js';
import type { JobResults } from './results.js';
import { SettleCoalescer, settleBatch } from './settle.js';
import { NO_ROUTING, routeTiers, type TierRouting } from './tier-route.js';

/**
 * Serves one micro-batch (jobs of one kind and model) through its fallback chain, stage by stage;
 * each stage is its own module and returns decisions (fates, by job) that only this function combines:
 *
 *   prepare.ts       requests, estimates, digests           (blob reads; `active` events)
 *   tier-route.ts    deadline → Batch API / Flex / standard (jobs with a deadline only: one read,
 *                    one write pipeline)
 *   cache-stage.ts   cache lookup + in-flight claims, dedupe (one pipeline)
 *   budget-admit.ts  budget reservations, leaders           (one script call)
 *   call-chain.ts    per link: limiter.reserve (one round trip), calls under the breaker,
 *                    each failure's fate (fate.ts)
 *   settle.ts        limiter/budget settle, cache store, events and THE job-end recorder
 *                    (one round trip)
 *   bullmq-outcome.ts  what BullMQ is told for each job
 *
 * Redis bookkeeping is a constant number of round trips per batch, never one per job.
 *
 * A generate job whose call is served is settled at once (with whatever else the process served
 * within 25 ms, or `batching.maxWaitMs` if shorter: settle.ts SettleCoalescer) and handed back to
 * BullMQ, without waiting for the slowest call of its batch, its budget reservation settled with
 * it: the batch size then does not stretch how long a job holds its slot. Leaders of deduplicated
 * followers still settle with the batch (their followers take the leader's answer there).
 */

/** Longest a served job's settle waits for others to share its round trip, ms. */
const EARLY_SETTLE_GATHER_MS = 25;

export interface BatchServiceDeps {
  config: Config;
  logger: Logger;
  /** Reads image blobs. */
  redis: Redis;
  limiter: FleetLimiter;
  estimator: TokenEstimator;
  chains: ProviderChains;
  budgets: BudgetGuard;
  outputEstimator?: OutputTokenEstimator | undefined;
  /** Absent when `responseCache.enabled` is false. */
  cache?: ResponseCache | undefined;
  results: JobResults;
  recorder: JobEndRecorder;
  metrics?: WorkerMetrics | undefined;
  /** Counts served calls per link (for /status). */
  onServed?: ((link: Link, jobs: number) => void) | undefined;
}

/** `settleEarly(i, outcome)`: entry i is told before the batch ends (batcher.ts). */
export type BatchService = (entries: JobEntry[], settleEarly?: (index: number, outcome: Outcome<PromptJobResult>) => void) => Promise<Outcome<PromptJobResult>[]>;

export function createBatchService(deps: BatchServiceDeps): BatchService {
  const { config, logger, cache, results } = deps;
  const claimTtlMs = config.gemini.timeoutMs + 5_000;
  // Gathers for at most the batching wait, and never long: a served job waits for it.
  const earlySettles = new SettleCoalescer(deps, Math.min(config.batching.maxWaitMs, EARLY_SETTLE_GATHER_MS));

  return async function serveBatch(entries: JobEntry[], settleEarly?: (index: number, outcome: Outcome<PromptJobResult>) => void): Promise<Outcome<PromptJobResult>[]> {
    const first = entries[0]!.data;
    const links = deps.chains.linksFor(first.kind, first.model);
    const [{ batch, fates }] = await Promise.all([prepareBatch(deps, entries, links), announceActive(deps, entries)]);
    /** Jobs settled before the batch ends, and what BullMQ is told for each. */
    const early = new Map<BatchJob, Promise<Outcome<PromptJobResult>>>();
    const undecided = (jobs: readonly BatchJob[]): BatchJob[] => jobs.filter((job) => !fates.has(job) && !early.has(job));
    let lookup = NO_CACHE;
    let admission: BudgetAdmission | undefined;
    let ledger: LimiterLedger = { settle: [], release: [], samples: [] };
    let routing: TierRouting = NO_ROUTING;
    try {
      // Jobs that can wait go to a cheaper tier first: batched ones leave the batch here.
      routing = await routeTiers(deps, batch, undecided(batch.jobs));
      merge(fates, routing.fates);
      if (cache) {
        lookup = await lookUpCache(cache, results, undecided(batch.jobs), links, claimTtlMs);
        merge(fates, lookup.fates);
      }
      admission = await admitBudgets(deps, groupIdentical(undecided(batch.jobs), lookup), links);
      merge(fates, admission.fates);
      const held = admission;
      const leaders = new Set(held.leaders.values());
      // The cache claims are released with the rest of the batch (after every answer is stored).
      const settledLookup = { ...lookup, claims: [] };
      const servedEarly: ServedEarly | undefined = settleEarly
        ? (job, fate, items) => {
            if (leaders.has(job)) return false;
            const reservation = held.reservations.get(job);
            // Settled with whatever else the process served meanwhile; a member's budget
            // reservation settles with its answer (a renewal after that is a no-op).
            const done = earlySettles.add({
              batch: { ...batch, jobs: [job] },
              fates: new Map([[job, fate]]),
              lookup: settledLookup,
              reservations: reservation ? new Map([[job, reservation]]) : new Map(),
              ledger: { settle: [items.settle], release: [], samples: [items.sample] },
            });
            const told = done.then(() => tellBullmq(job.entry, fate, logger)).catch((error: unknown): Outcome<PromptJobResult> => ({ ok: false, error }));
            early.set(job, told);
            void told.then((outcome) => settleEarly(entries.indexOf(job.entry), outcome));
            return true;
          }
        : undefined;
      // Followers wait for their leader's answer; decided jobs (hits, refusals) make no call.
      const called = await callChain(deps, batch, undecided(batch.jobs).filter((job) => !admission!.leaders.has(job)), servedEarly, routing.flex);
      merge(fates, called.fates);
      ledger = called.ledger;
    } catch (error) {
      // Redis failing under the limiter, a bug: every undecided job retries through its attempts.
      for (const job of undecided(batch.jobs)) if (!admission?.leaders.has(job)) fates.set(job, jobFateOfError(attemptFacts(job.entry), error, 0));
    }
    admission?.stopRenewal();
    for (const [follower, leader] of admission?.leaders ?? []) {
      const lead = fates.get(leader);
      if (lead && !fates.has(follower)) fates.set(follower, followerFate(lead, follower, results));
    }
    for (const job of undecided(batch.jobs)) fates.set(job, jobFateOfError(attemptFacts(job.entry), new Error('job left the batch undecided'), 0));
    const rest = batch.jobs.filter((job) => !early.has(job));
    // Early answers go out before this batch's cache claims are released, so a worker waiting on
    // a claim finds the answer once the claim is gone.
    if (early.size > 0) earlySettles.flush();
    // Batch answers settle the reservations their jobs held since collection.
    const reservations = new Map<unknown, BudgetReservation>([...(admission?.reservations ?? []), ...routing.reservations]);
    await settleBatch(deps, { batch: { ...batch, jobs: rest }, fates, lookup, reservations, ledger });
    return Promise.all(batch.jobs.map((job) => early.get(job) ?? tellBullmq(job.entry, fates.get(job)!, logger)));
  };
}

function merge(into: Fates, from: Fates): void {
  for (const [job, fate] of from) into.set(job, fate);
}

/**
 * The live `active` event of each job starting an attempt, sent while the batch is prepared (its
 * own pipeline, in parallel). A job back from a short wait (quota, a pending cache answer) has
 * started this attempt before (BullMQ counts starts): it says nothing new, so no event. A job
 * retaken after its worker died does get one.
 */
async function announceActive(deps: Pick<BatchServiceDeps, 'config' | 'logger' | 'redis'>, entries: readonly JobEntry[]): Promise<void> {
  const at = new Date().toISOString();
  // Starts = attempts made + this one + one per stall (a retake after a crash is a start worth
  // showing) + one per return from a wait (not worth showing).
  const starting = entries.filter(({ job }) => (job.attemptsStarted ?? 0) - (job.stalledCounter ?? 0) <= job.attemptsMade + 1);
  if (starting.length === 0) return;
  const pipeline = slotPipeline(deps.redis);
  appendJobEvents(
    pipeline,
    deps.config.redis.prefix,
    starting.map((entry) => ({ type: 'active' as const, jobId: entry.job.id ?? '', tenant: entry.data.tenant, at, attempt: entry.job.attemptsMade + 1 })),
    deps.config.events.historyPerTenant,
  );
  try {
    await pipeline.exec();
  } catch (error) {
    deps.logger.warn('could not record active events', { error: String(error) });
  }
}
