import { GoogleGenerativeAIFetchError } from '@google/generative-ai';
import type { Redis } from 'ioredis';
import { slotPipeline, tierCostNanoUsd, type BudgetGuard, type BudgetReservation, type Config, type Logger, type OutputTokenEstimator } from '@prompt-queue/shared';
import { classifyProviderError } from '../providers/gemini/classify.js';
import { readAnswer, type WireResponse } from '../providers/gemini/answer.js';
import { ttlMs, type CollectedRequest } from '../tiers/batch-runner.js';
import { batchModelFor } from '../tiers/batch-link.js';
import {
  batchAnswerKey,
  batchBudgetKey,
  batchJobKey,
  collectedKey,
  memberOf,
  requestsKey,
  tierModelsKey,
  type BatchAnswer,
  type BatchJobRecord,
} from '../tiers/keys.js';
import type { Link } from '../providers/chain.js';
import type { Batch, BatchJob, Fates } from './batch.js';
import { estimatedCost, prepareOutputEstimates } from './budget-admit.js';
import { attemptFacts, jobFateOfError, type JobFate } from './fate.js';
import type { JobResults } from './results.js';

/**
 * Stage 1b: the tier router (docs/decisions/tiers.md). For jobs with a `deadline`, the cheapest
 * tier that still answers in time:
 *
 *   ≥ tiers.batch.minRemainingMs left, chain starts with a Gemini API link → Batch API: the job's
 *     request is collected for its model (tiers/batch-runner.ts submits and polls) and the job waits
 *     in `delayed` until its answer is promoted, or until `fallbackAt` (deadline − fallbackMarginMs);
 *   back with an answer → served (priced at the batch tier) or failed per its error (fate.ts);
 *   back at fallbackAt without one, or its batch failed/expired → standard, now (the rest of the
 *     pipeline); ≥ tiers.flex.minRemainingMs left and Flex enabled → Flex (call-chain.ts);
 *   otherwise → standard.
 *
 * Two round trips per batch (one read pipeline, one write pipeline), plus one budget script call
 * per budgeted tenant with jobs to collect or to release; none for a batch without deadlines.
 */

/** What the router decided: the batch path's fates; every other job goes on (standard or flex). */
export interface TierRouting {
  fates: Fates;
  /**
   * Jobs to send at the Flex tier (tiers.flex.enabled and enough time left), each with its Flex
   * call's timeout: until the deadline, less one standard call's time (`gemini.timeoutMs`).
   */
  flex: Map<BatchJob, number>;
  /** The budget reservation each job served by its batch answer held: settled at its cost. */
  reservations: Map<BatchJob, BudgetReservation>;
}

export interface TierRouteDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  results: JobResults;
  /**
   * A budgeted tenant's job joins a batch only with its estimated batch cost reserved, held until
   * its answer settles it or its fallback releases it: the money in open batches counts.
   */
  budgets: Pick<BudgetGuard, 'policy' | 'reserve' | 'release'>;
  /** The fleet's output-token estimates, for those reservations; without it, the bound is reserved. */
  outputEstimator?: OutputTokenEstimator | undefined;
  now?: () => number;
}

/** A batch job's budget reservation outlives its fallback time by this much (it comes back then). */
const BUDGET_HOLD_AFTER_FALLBACK_MS = 10 * 60_000;

export const NO_ROUTING: TierRouting = Object.freeze({ fates: new Map(), flex: new Map(), reservations: new Map() }) as TierRouting;

export async function routeTiers(deps: TierRouteDeps, batch: Batch, jobs: readonly BatchJob[]): Promise<TierRouting> {
  const { config, redis } = deps;
  const now = (deps.now ?? Date.now)();
  const prefix = config.redis.prefix;
  const withDeadline = batch.kind === 'generate' ? jobs.filter((job) => job.entry.data.deadline !== undefined && job.request !== undefined) : [];
  if (withDeadline.length === 0) return NO_ROUTING;
  const batchModel = batchModelFor(config, batch.model);
  const fates: Fates = new Map();
  const flex = new Map<BatchJob, number>();
  const reservations = new Map<BatchJob, BudgetReservation>();
  const link = batch.links[0];
  const keysOf = (job: BatchJob) => {
    const { tenant } = job.entry.data;
    const id = job.entry.job.id ?? '';
    return { id, member: memberOf(tenant, id), record: batchJobKey(prefix, tenant, id), answer: batchAnswerKey(prefix, tenant, id), budget: batchBudgetKey(prefix, tenant, id) };
  };

  // One read: each job's batch record, answer and budget reservation (tenant-tagged keys, by slot on a Cluster).
  const read = slotPipeline(redis);
  for (const job of withDeadline) {
    const keys = keysOf(job);
    read.get(keys.record).get(keys.answer).get(keys.budget);
  }
  const replies = (await read.exec()) ?? [];
  const json = <T>(i: number): T | undefined => {
    const [error, reply] = replies[i] ?? [null, null];
    if (error) throw error;
    return reply ? (JSON.parse(reply as string) as T) : undefined;
  };
  const stored = withDeadline.map((_, i) => ({ record: json<BatchJobRecord>(3 * i), answer: json<BatchAnswer>(3 * i + 1), budget: json<BudgetReservation>(3 * i + 2) }));

  // New jobs with time enough for a batch: each reserves its estimated batch cost first.
  const candidates = batchModel === undefined ? [] : withDeadline.filter((job, i) => !stored[i]!.record && !stored[i]!.answer && job.entry.data.deadline! - now >= config.tiers.batch.minRemainingMs);
  const held = await reserveForBatch(deps, candidates, link, now);

  const write = slotPipeline(redis);
  const releases: BudgetReservation[] = [];
  let writes = 0;
  withDeadline.forEach((job, i) => {
    const { data } = job.entry;
    const keys = keysOf(job);
    const { record, answer, budget } = stored[i]!;
    const forget = (): void => {
      write.del(keys.record, keys.answer, keys.budget);
      if (record) write.zrem(collectedKey(prefix, record.model), keys.member).hdel(requestsKey(prefix, record.model), keys.member);
      writes += 1;
    };
    if (answer) {
      fates.set(job, answerFate(deps, job, answer, link?.providerName ?? 'gemini', link?.id, record?.model ?? batch.model));
      if (budget) reservations.set(job, budget);
      forget();
      return;
    }
    if (record) {
      if (record.state !== 'fallback' && now < record.fallbackAt) {
        fates.set(job, waitInBatch(record.fallbackAt));
        return;
      }
      // Its batch failed or expired, or the deadline is near: standard, now. The record stays
      // `fallback`, so a job that comes back (a quota wait, a retry) is not batched again; the
      // budget it held for the batch is freed (the standard path reserves its own).
      if (budget) {
        releases.push(budget);
        write.del(keys.budget);
        writes += 1;
      }
      if (record.state !== 'fallback') {
        deps.logger.info('batch tier: job falls back to standard', { jobId: keys.id, tenant: data.tenant, why: 'deadline-near' });
        const fallback: BatchJobRecord = { state: 'fallback', model: record.model, fallbackAt: record.fallbackAt, why: 'deadline-near' };
        write.set(keys.record, JSON.stringify(fallback), 'PX', ttlMs(config, record.fallbackAt, now));
        write.zrem(collectedKey(prefix, record.model), keys.member).hdel(requestsKey(prefix, record.model), keys.member);
        writes += 1;
      }
      return routeNow(job);
    }
    const reservation = held.get(job);
    if (batchModel !== undefined && reservation) {
      const fallbackAt = data.deadline! - config.tiers.batch.fallbackMarginMs;
      const collected: BatchJobRecord = { state: 'collected', model: batchModel, fallbackAt };
      const request: CollectedRequest = { request: { ...job.request!, model: batchModel }, fallbackAt };
      write.set(keys.record, JSON.stringify(collected), 'PX', ttlMs(config, fallbackAt, now));
      if (reservation.tracked) write.set(keys.budget, JSON.stringify(reservation), 'PX', Math.max(1, reservation.expiresAtMs - now));
      write.hset(requestsKey(prefix, batchModel), keys.member, JSON.stringify(request));
      write.zadd(collectedKey(prefix, batchModel), 'NX', now, keys.member);
      write.sadd(tierModelsKey(prefix), batchModel);
      writes += 1;
      fates.set(job, waitInBatch(fallbackAt));
      return;
    }
    routeNow(job);
  });
  // Freed before the keys that name them go: a release repeated after a crash frees nothing twice.
  if (releases.length > 0) await deps.budgets.release(releases);
  if (writes > 0) {
    const results = (await write.exec()) ?? [];
    const failed = results.find(([error]) => error);
    if (failed) throw failed[0];
  }
  return { fates, flex, reservations };

  function routeNow(job: BatchJob): void {
    const remaining = job.entry.data.deadline! - now;
    if (config.tiers.flex.enabled && remaining >= config.tiers.flex.minRemainingMs) flex.set(job, Math.max(1_000, remaining - config.gemini.timeoutMs));
  }
}

/**
 * Reserves each candidate's estimated cost at the batch tier against its tenant's budget, held
 * until shortly after its fallback time. Returns the granted ones (a tenant without a budget is
 * granted without Redis). A refused job is not batched: the standard path refuses it, or makes it
 * wait, per its tenant's policy.
 */
async function reserveForBatch(deps: TierRouteDeps, candidates: readonly BatchJob[], link: Link | undefined, now: number): Promise<Map<BatchJob, BudgetReservation>> {
  const granted = new Map<BatchJob, BudgetReservation>();
  if (candidates.length === 0 || !link) return granted;
  const { config, budgets } = deps;
  const links = [link];
  // Only budgeted tenants' jobs need an estimate (the others are granted without Redis).
  const budgeted = new Set(candidates.filter((job) => budgets.policy(job.entry.data.tenant).budgeted));
  if (budgeted.size > 0) await prepareOutputEstimates(deps, [...budgeted], links);
  const requests = candidates.map((job) => ({
    tenant: job.entry.data.tenant,
    amountNanoUsd: budgeted.has(job) ? tierCostNanoUsd(estimatedCost(deps, job, links), config.tiers.priceMultiplier.batch) : 0,
  }));
  // One hold for the whole group: the latest fallback time among them, plus the slack.
  const latestFallbackAt = Math.max(...candidates.map((job) => job.entry.data.deadline! - config.tiers.batch.fallbackMarginMs));
  const decisions = await deps.budgets.reserve(requests, new Date(now), Math.max(1, latestFallbackAt - now) + BUDGET_HOLD_AFTER_FALLBACK_MS);
  decisions.forEach((decision, i) => {
    if (decision.ok) granted.set(candidates[i]!, decision.reservation);
  });
  return granted;
}

function waitInBatch(untilMs: number): JobFate {
  return { kind: 'wait', untilMs, reason: 'waiting-in-batch', fields: { tier: 'batch' } };
}

/** A batch answer as the job's fate: served at the batch tier, or its error through the one classifier and fate function. */
function answerFate(deps: TierRouteDeps, job: BatchJob, answer: BatchAnswer, provider: string, linkId: string | undefined, model: string): JobFate {
  const facts = attemptFacts(job.entry);
  try {
    if (answer.kind === 'error') {
      // The per-request error as the SDK would have thrown it for a generateContent call.
      throw classifyProviderError(new GoogleGenerativeAIFetchError(`[${answer.code} ${answer.status}] ${answer.message}`, answer.code, answer.status, []));
    }
    // A batch answer is a generateContent response: read like one (refusals included).
    const generated = readAnswer(answer.response as WireResponse, { label: 'Gemini', provider, model });
    const { result, savedNanoUsd } = deps.results.atTier(generated, 0, 'batch');
    return { kind: 'served', result, ...(linkId !== undefined ? { link: linkId } : {}), savedNanoUsd };
  } catch (error) {
    return jobFateOfError(facts, error, 0, linkId);
  }
}
