import { GoogleGenerativeAIFetchError } from '@google/generative-ai';
import type { Redis } from 'ioredis';
import { slotPipeline, type BudgetGuard, type Config, type Logger } from '@prompt-queue/shared';
import { classifyProviderError } from '../providers/gemini/classify.js';
import { readAnswer, type WireResponse } from '../providers/gemini/answer.js';
import { ttlMs, type CollectedRequest } from '../tiers/batch-runner.js';
import { batchModelFor } from '../tiers/batch-link.js';
import {
  batchAnswerKey,
  batchJobKey,
  collectedKey,
  memberOf,
  requestsKey,
  tierModelsKey,
  type BatchAnswer,
  type BatchJobRecord,
} from '../tiers/keys.js';
import type { Batch, BatchJob, Fates } from './batch.js';
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
 * Two round trips per batch at most (one read pipeline, one write pipeline), none for a batch
 * without deadlines.
 */

/** What the router decided: the batch path's fates; every other job goes on (standard or flex). */
export interface TierRouting {
  fates: Fates;
  /**
   * Jobs to send at the Flex tier (tiers.flex.enabled and enough time left), each with its Flex
   * call's timeout: until the deadline, less one standard call's time (`gemini.timeoutMs`).
   */
  flex: Map<BatchJob, number>;
}

export interface TierRouteDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  results: JobResults;
  /** A tenant whose budget is spent is not batched: the standard path refuses it per its policy. */
  budgets: Pick<BudgetGuard, 'policy' | 'isOverBudget'>;
  now?: () => number;
}

export const NO_ROUTING: TierRouting = Object.freeze({ fates: new Map(), flex: new Map() }) as TierRouting;

export async function routeTiers(deps: TierRouteDeps, batch: Batch, jobs: readonly BatchJob[]): Promise<TierRouting> {
  const { config, redis } = deps;
  const now = (deps.now ?? Date.now)();
  const prefix = config.redis.prefix;
  const withDeadline = batch.kind === 'generate' ? jobs.filter((job) => job.entry.data.deadline !== undefined && job.request !== undefined) : [];
  if (withDeadline.length === 0) return NO_ROUTING;
  const batchModel = batchModelFor(config, batch.model);
  const fates: Fates = new Map();
  const flex = new Map<BatchJob, number>();
  const link = batch.links[0];

  // One read: each job's batch record and answer (tenant-tagged keys, by slot on a Cluster).
  const read = slotPipeline(redis);
  for (const job of withDeadline) {
    const { tenant } = job.entry.data;
    const id = job.entry.job.id ?? '';
    read.get(batchJobKey(prefix, tenant, id)).get(batchAnswerKey(prefix, tenant, id));
  }
  // Budgeted tenants that could be batched (enough time left): is their budget spent already
  // (settled spend only)? Read beside the records, and not at all when nothing could be batched.
  const mayBeBatched = batchModel !== undefined ? withDeadline.filter((job) => job.entry.data.deadline! - now >= config.tiers.batch.minRemainingMs) : [];
  const [execReplies, mayBatch] = await Promise.all([read.exec(), tenantsWithBudgetLeft(deps, mayBeBatched)]);
  const replies = execReplies ?? [];
  const value = (i: number): string | null => {
    const [error, reply] = replies[i] ?? [null, null];
    if (error) throw error;
    return reply as string | null;
  };

  const write = slotPipeline(redis);
  let writes = 0;
  withDeadline.forEach((job, i) => {
    const { data } = job.entry;
    const id = job.entry.job.id ?? '';
    const member = memberOf(data.tenant, id);
    const recordJson = value(2 * i);
    const answerJson = value(2 * i + 1);
    const record = recordJson ? (JSON.parse(recordJson) as BatchJobRecord) : undefined;
    const forget = (): void => {
      write.del(batchJobKey(prefix, data.tenant, id), batchAnswerKey(prefix, data.tenant, id));
      if (record) write.zrem(collectedKey(prefix, record.model), member).hdel(requestsKey(prefix, record.model), member);
      writes += 1;
    };
    if (answerJson) {
      fates.set(job, answerFate(deps, job, JSON.parse(answerJson) as BatchAnswer, link?.providerName ?? 'gemini', link?.id, record?.model ?? batch.model));
      forget();
      return;
    }
    if (record) {
      if (record.state !== 'fallback' && now < record.fallbackAt) {
        fates.set(job, waitInBatch(record.fallbackAt));
        return;
      }
      // Its batch failed or expired, or the deadline is near: standard, now. The record stays
      // `fallback`, so a job that comes back (a quota wait, a retry) is not batched again.
      if (record.state !== 'fallback') {
        deps.logger.info('batch tier: job falls back to standard', { jobId: id, tenant: data.tenant, why: 'deadline-near' });
        const fallback: BatchJobRecord = { state: 'fallback', model: record.model, fallbackAt: record.fallbackAt, why: 'deadline-near' };
        write.set(batchJobKey(prefix, data.tenant, id), JSON.stringify(fallback), 'PX', ttlMs(config, record.fallbackAt, now));
        write.zrem(collectedKey(prefix, record.model), member).hdel(requestsKey(prefix, record.model), member);
        writes += 1;
      }
      return routeNow(job);
    }
    const remaining = data.deadline! - now;
    if (batchModel !== undefined && remaining >= config.tiers.batch.minRemainingMs && mayBatch.has(data.tenant)) {
      const fallbackAt = data.deadline! - config.tiers.batch.fallbackMarginMs;
      const collected: BatchJobRecord = { state: 'collected', model: batchModel, fallbackAt };
      const request: CollectedRequest = { request: { ...job.request!, model: batchModel }, fallbackAt };
      write.set(batchJobKey(prefix, data.tenant, id), JSON.stringify(collected), 'PX', ttlMs(config, fallbackAt, now));
      write.hset(requestsKey(prefix, batchModel), member, JSON.stringify(request));
      write.zadd(collectedKey(prefix, batchModel), 'NX', now, member);
      write.sadd(tierModelsKey(prefix), batchModel);
      writes += 1;
      fates.set(job, waitInBatch(fallbackAt));
      return;
    }
    routeNow(job);
  });
  if (writes > 0) {
    const results = (await write.exec()) ?? [];
    const failed = results.find(([error]) => error);
    if (failed) throw failed[0];
  }
  return { fates, flex };

  function routeNow(job: BatchJob): void {
    const remaining = job.entry.data.deadline! - now;
    if (config.tiers.flex.enabled && remaining >= config.tiers.flex.minRemainingMs) flex.set(job, Math.max(1_000, remaining - config.gemini.timeoutMs));
  }
}

/** Tenants of `jobs` that may send work to a batch: no budget, or one not spent yet. One read per budgeted tenant, in parallel. */
async function tenantsWithBudgetLeft(deps: TierRouteDeps, jobs: readonly BatchJob[]): Promise<Set<string>> {
  const tenants = [...new Set(jobs.map((job) => job.entry.data.tenant))];
  const left = await Promise.all(tenants.map(async (tenant) => !deps.budgets.policy(tenant).budgeted || !(await deps.budgets.isOverBudget(tenant)).over));
  return new Set(tenants.filter((_, i) => left[i]));
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
