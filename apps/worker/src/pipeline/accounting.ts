import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  appendBacklogDone,
  nanoUsdToUsd,
  PromptQueueError,
  worstCaseCostNanoUsd,
  type AuditLog,
  type BacklogItem,
  type BudgetDecision,
  type BudgetGuard,
  type BudgetReservation,
  type Config,
  type ErrorCode,
  type Logger,
  type PromptJobData,
  type PromptJobResult,
  type UsageEntry,
  type UsageLedger,
  canonicalJson,
} from '@prompt-queue/shared';
import { dedupe, type CacheEntry, type CachedAnswer, type ResponseCache } from '../cache/response-cache.js';
import type { WorkerMetrics } from '../metrics.js';
import type { Link } from '../providers/chain.js';
import type { JobOutcomes } from './outcomes.js';
import type { BatchContext, BatchJob, Final } from './serve-batch.js';

/**
 * The money side of a batch, at its two places in the batch path (serve-batch.ts):
 *
 *   admit (before any call):  cache.lookup (one MGET) → dedupe → budget.reserve (one script call)
 *   settle (after the calls): budget.settle · [cache.store + fairness] (one pipeline) · usage.record
 *                             (one MULTI) · audit lines · metrics — sent together with the
 *                             limiter's settle/release, so the whole step is one round trip.
 *
 * Why the cache is looked up BEFORE the budget is reserved: a hit costs nothing, so it needs no
 * reservation and is served even to a tenant whose budget is spent (it cannot push the tenant
 * over), and the reservation that a hit would otherwise hold never blocks the tenant's other jobs.
 * Only the misses that will call a provider reserve their worst case.
 *
 * Dedupe: identical jobs of one batch (same cache key) make one call. The first job that got
 * budget leads (normally the first of the group); the others follow and receive its answer as a
 * cache hit (`cached: true`, cost 0, the leader's cost recorded as their saving), or its failure or
 * wait. Budget is reserved once per tenant of a group, so a group whose first tenant is over
 * budget is still served for another tenant of it; a follower's own reservation is released.
 * Across batches and workers, the lookup also claims each request in flight (SET NX, same round
 * trip): a job whose request another batch is calling right now waits CACHE_PENDING_RECHECK_MS in
 * `delayed` (no attempt spent) and then finds the answer in the cache. So N identical jobs make one
 * call fleet-wide, whatever the timing (unless the call fails: then the next one tries).
 * Jobs with `cache: false` (or with the cache off) are neither looked up, deduplicated nor stored.
 */

/** A job whose identical request is in flight elsewhere looks again after this, ms. */
export const CACHE_PENDING_RECHECK_MS = 200;

export interface AccountingDeps {
  config: Config;
  logger: Logger;
  /** Carries the settle pipeline (cache store + fairness). */
  redis: Redis;
  budgets: BudgetGuard;
  ledger: UsageLedger;
  outcomes: JobOutcomes;
  /** Absent when `responseCache.enabled` is false. */
  cache?: ResponseCache;
  audit?: AuditLog;
  metrics?: WorkerMetrics;
}

export class BatchAccounting {
  private readonly unpricedWarned = new Set<string>();

  constructor(private readonly deps: AccountingDeps) {}

  /**
   * Before the calls: answers hits from the cache, groups identical misses behind a leader, and
   * reserves the worst-case cost of every job that will call a provider. Sets `final` for hits and
   * for jobs refused by their budget, `leader` for followers, `budget` for reservations.
   */
  async admit(batch: BatchContext, links: readonly Link[]): Promise<void> {
    const { cache, budgets, outcomes } = this.deps;
    const open = batch.jobs.filter((job) => !job.final);

    const pendingElsewhere = new Set<string>();
    if (cache) {
      for (const job of open) {
        job.cacheKeys = job.entry.data.cache === false ? [] : links.map((link) => cache.cacheKey({ provider: link.providerName, model: link.model }, job.entry.data)!);
      }
      // One round trip: the answers of every link's key, and an in-flight claim per distinct request.
      const byDigest = new Map<string, string[]>();
      for (const job of open) {
        const digest = job.cacheKeys[0];
        if (digest !== undefined) byDigest.set(digest, [...(byDigest.get(digest) ?? []), job.entry.job.id ?? '']);
      }
      const claims = [...byDigest].map(([digest, holders]) => ({ digest, holder: holders[0]!, holders }));
      const { answers, claimed } = await cache.lookupAndClaim(open.flatMap((job) => job.cacheKeys), claims, this.claimTtlMs());
      claims.forEach(({ digest }, i) => (claimed[i] ? batch.claims.push(digest) : pendingElsewhere.add(digest)));
      let next = 0;
      for (const job of open) {
        // The first link (in chain order) with an answer: a fallback's stored answer counts too.
        const hit = answers.slice(next, (next += job.cacheKeys.length)).find((answer): answer is CachedAnswer => answer !== null);
        if (hit) job.final = { kind: 'served', result: outcomes.cached(job.entry, hit), savedNanoUsd: hit.costNanoUsd ?? 0 };
        else if (job.cacheKeys[0] !== undefined && pendingElsewhere.has(job.cacheKeys[0])) {
          // An identical request is being called right now (another worker, or another batch):
          // come back when its answer is likely stored. No attempt spent, no reservation held.
          job.final = { kind: 'wait', untilMs: Date.now() + CACHE_PENDING_RECHECK_MS, reason: 'cache-pending' };
        }
      }
    }

    const groups = dedupe(
      open.filter((job) => !job.final),
      (job) => job.cacheKeys[0] ?? null,
    );
    // One reservation per tenant of a group (usually just its first job), in one script call.
    const candidates: BatchJob[] = [];
    for (const group of groups) {
      const tenants = new Set<string>();
      for (const job of [group.leader, ...group.followers]) {
        if (tenants.has(job.entry.data.tenant)) continue;
        tenants.add(job.entry.data.tenant);
        candidates.push(job);
      }
    }
    const decisions = await budgets.reserve(candidates.map((job) => ({ tenant: job.entry.data.tenant, worstCaseNanoUsd: this.worstCase(job, links) })));
    const refusals = new Map<BatchJob, BudgetDecision & { ok: false }>();
    decisions.forEach((decision, i) => {
      if (decision.ok) candidates[i]!.budget = decision.reservation;
      else refusals.set(candidates[i]!, decision);
    });

    for (const group of groups) {
      const members = [group.leader, ...group.followers];
      const leader = members.find((job) => job.budget !== undefined);
      if (leader) {
        for (const job of members) if (job !== leader) job.leader = leader;
        continue;
      }
      // Nobody in the group may spend: each job gets its own tenant's refusal.
      const byTenant = new Map([...refusals].filter(([job]) => members.includes(job)).map(([job, decision]) => [job.entry.data.tenant, decision]));
      for (const job of members) job.final = this.refused(job, byTenant.get(job.entry.data.tenant)!);
    }
  }

  /** After the calls: followers take their leader's answer (as a cache hit), failure or wait. */
  fanOut(batch: BatchContext): void {
    for (const job of batch.jobs) {
      const lead = job.leader?.final;
      if (job.final || !lead) continue;
      if (lead.kind === 'served') {
        job.final = { kind: 'served', result: this.deps.outcomes.cached(job.entry, cachedAnswerOf(lead.result)), savedNanoUsd: lead.result.costNanoUsd ?? 0 };
      } else {
        job.final = { ...lead };
      }
    }
  }

  /**
   * The per-batch settle step, less the limiter (the caller sends its settle alongside: pass its
   * promise as `alongside` so all writes leave together). Never throws: a failed write is logged
   * (budget reservations then expire on their own, usage counters miss this batch).
   */
  async settle(batch: BatchContext, links: readonly Link[], alongside: Promise<unknown> = Promise.resolve()): Promise<void> {
    const { config, logger, redis, cache, budgets, ledger, outcomes, metrics } = this.deps;
    const budgetItems: { reservation: BudgetReservation; actualNanoUsd: number }[] = [];
    const cacheEntries: CacheEntry[] = [];
    const usage: UsageEntry[] = [];
    const backlog: BacklogItem[] = [];
    let cacheHits = 0;
    let cacheMisses = 0;

    for (const job of batch.jobs) {
      const final: Final = job.final ?? { kind: 'error', error: new Error('job left the batch undecided'), latencyMs: 0 };
      const data = job.entry.data;
      const { tenant } = data;
      const billed = final.kind === 'served' && !final.result.cached;
      if (job.budget) budgetItems.push({ reservation: job.budget, actualNanoUsd: billed && final.kind === 'served' ? (final.result.costNanoUsd ?? 0) : 0 });
      if (job.cacheKeys.length > 0 && final.kind === 'served') {
        if (final.result.cached) cacheHits += 1;
        else cacheMisses += 1;
      } else if (job.cacheKeys.length > 0) {
        cacheMisses += 1;
      }

      if (final.kind === 'served') {
        const result = final.result;
        if (result.cached) {
          usage.push({ tenant, model: result.model, provider: result.provider, outcome: 'completed', costNanoUsd: 0, cached: true, savedNanoUsd: final.savedNanoUsd ?? 0 });
          metrics?.recordJob('cached');
          metrics?.recordCacheSaving(tenant, result.model, final.savedNanoUsd ?? 0);
        } else {
          usage.push({ tenant, model: result.model, provider: result.provider, outcome: 'completed', usage: result.usage, costNanoUsd: result.costNanoUsd, cached: false });
          const index = links.findIndex((link) => link.providerName === result.provider && link.model === result.model);
          const key = job.cacheKeys[index];
          if (cache && key !== undefined) cacheEntries.push({ key, answer: cachedAnswerOf(result), ttlSeconds: cache.ttlFor(data) });
          metrics?.recordJob('completed');
          metrics?.recordTokens(result.model, result.usage);
          metrics?.recordCost(tenant, result.model, result.costNanoUsd);
          if (result.costNanoUsd === null) this.warnUnpriced(result.model);
        }
        backlog.push({ tenant, level: data.priority });
        this.audit(job, { model: result.model, provider: result.provider, result, outcome: 'completed', latencyMs: result.latencyMs });
      } else if (final.kind === 'error') {
        const disposition = outcomes.disposition(job.entry, final.error);
        if (disposition.handBack) continue;
        const link = links.find((candidate) => candidate.id === final.link) ?? links[0];
        const model = link?.model ?? data.model;
        const provider = link?.providerName ?? 'none';
        if (disposition.final) {
          usage.push({ tenant, model, provider, outcome: 'failed', costNanoUsd: 0, cached: false });
          // A cancel gives its place back in the producer (releaseBacklog): not twice.
          if (disposition.code !== 'CANCELLED') backlog.push({ tenant, level: data.priority });
        }
        metrics?.recordJob(disposition.final ? 'failed' : 'retried', disposition.code);
        this.audit(job, { model, provider, outcome: 'failed', errorCode: disposition.code, latencyMs: final.latencyMs });
      } else {
        metrics?.recordJob(final.reason === 'quota' || final.reason === 'rate-limited' ? 'rate_limited' : 'delayed', waitCode(final.reason));
      }
    }
    metrics?.recordCacheLookups(cacheHits, cacheMisses);

    const pipeline = redis.pipeline();
    if (cache && cacheEntries.length > 0) cache.appendStore(pipeline, cacheEntries);
    // After the answers: a worker that waited for this claim finds the answer once it is gone.
    if (cache) cache.appendRelease(pipeline, batch.claims);
    if (backlog.length > 0) appendBacklogDone(pipeline, config.redis.prefix, backlog);
    const warn = (what: string) => (error: unknown) => logger.warn(`settle: ${what} failed`, { error: String(error) });
    // All of it is written to the connection in one go: one round trip for the whole step.
    await Promise.all([
      alongside,
      budgetItems.length > 0 ? budgets.settle(budgetItems).catch(warn('budget settle')) : undefined,
      pipeline.length > 0
        ? pipeline
            .exec()
            .then((results) => {
              const failed = results?.find(([error]) => error !== null);
              if (failed) throw failed[0]!;
            })
            .catch(warn('cache store / fairness pipeline'))
        : undefined,
      usage.length > 0 ? ledger.record(usage).catch(warn('usage record')) : undefined,
    ]);
  }

  /** How long an in-flight claim may outlive a crashed holder: a call with its timeout, and slack. */
  private claimTtlMs(): number {
    return this.deps.config.gemini.timeoutMs + 5_000;
  }

  /**
   * The most a job can cost, nano-USD: its input estimate plus its output bound, at the price of
   * the dearest link that may serve it (a fallback must not overspend either). Output bound:
   * `maxOutputTokens`, else the model's `outputTokenLimit`; an explicit positive `thinkingBudget`
   * is added on top. Google counts thinking within maxOutputTokens, but not every provider or
   * emulator does, and a budget is the place to err high. Unpriced links count 0.
   */
  worstCase(job: BatchJob, links: readonly Link[]): number {
    const { config } = this.deps;
    const data = job.entry.data;
    let worst = 0;
    for (const link of links) {
      const price = config.prices[link.model];
      if (!price) continue;
      const output = data.kind === 'embed' ? 0 : maxOutputTokens(data, config.models[link.model]?.outputTokenLimit);
      worst = Math.max(worst, worstCaseCostNanoUsd(job.estimate, output, price));
    }
    return worst;
  }

  private refused(job: BatchJob, decision: BudgetDecision & { ok: false }): Final {
    const { tenant } = job.entry.data;
    const limit = `$${nanoUsdToUsd(decision.limitNanoUsd)}`;
    if (this.deps.budgets.policy(tenant).onExceeded === 'wait' && !decision.exceedsLimit) {
      return { kind: 'wait', untilMs: decision.retryAtMs, reason: 'budget', fields: { scope: decision.scope } };
    }
    const message = decision.exceedsLimit
      ? `The job's worst-case cost is more than the tenant's whole ${decision.scope} budget (${limit}); lower maxOutputTokens`
      : `The tenant's ${decision.scope} budget (${limit}) is spent; it resets at ${new Date(decision.retryAtMs).toISOString()}`;
    return { kind: 'error', error: new PromptQueueError('BUDGET_EXCEEDED', message), latencyMs: 0 };
  }

  private audit(
    job: BatchJob,
    fields: { model: string; provider: string; outcome: 'completed' | 'failed'; latencyMs: number; result?: PromptJobResult; errorCode?: ErrorCode },
  ): void {
    const { audit, config, logger } = this.deps;
    if (!audit) return;
    const { data, job: bullJob } = job.entry;
    const usage = fields.result?.cached ? undefined : fields.result?.usage;
    try {
      audit.write({
        tenant: data.tenant,
        jobId: bullJob.id ?? '',
        promptSha256: job.promptSha256,
        model: fields.model,
        provider: fields.provider,
        inputTokens: usage?.inputTokens ?? 0,
        outputTokens: usage?.outputTokens ?? 0,
        thoughtsTokens: usage?.thoughtsTokens ?? 0,
        cachedTokens: usage?.cachedTokens ?? 0,
        costNanoUsd: fields.result ? fields.result.costNanoUsd : 0,
        outcome: fields.outcome,
        ...(fields.errorCode !== undefined ? { errorCode: fields.errorCode } : {}),
        latencyMs: fields.latencyMs,
        attempt: bullJob.attemptsMade + 1,
        cached: fields.result?.cached ?? false,
        ...(config.audit.logPrompts ? { prompt: promptText(data) } : {}),
      });
    } catch (error) {
      logger.warn('audit write failed', { error: String(error) });
    }
  }

  private warnUnpriced(model: string): void {
    if (this.unpricedWarned.has(model)) return;
    this.unpricedWarned.add(model);
    this.deps.logger.warn('model has no price: its cost is recorded as unknown and budgets cannot bound it', { model });
  }
}

/** Output tokens a generate job may produce at most (see BatchAccounting.worstCase). */
export function maxOutputTokens(data: PromptJobData, outputTokenLimit: number | undefined): number {
  const config = data.generationConfig;
  const base = config?.maxOutputTokens ?? outputTokenLimit ?? 65_536;
  const thinking = config?.thinkingConfig?.thinkingBudget;
  return base + (thinking !== undefined && thinking > 0 ? thinking : 0);
}

/** sha256 (hex) of the canonical request: what the audit log shows instead of the prompt. */
export function promptSha256(data: PromptJobData): string {
  const request = {
    kind: data.kind,
    model: data.model,
    contents: data.contents,
    systemInstruction: data.systemInstruction,
    generationConfig: data.generationConfig,
    taskType: data.taskType,
    outputDimensionality: data.outputDimensionality,
  };
  return createHash('sha256').update(canonicalJson(request), 'utf8').digest('hex');
}

function promptText(data: PromptJobData): string {
  return data.contents.flatMap((content) => content.parts.flatMap((part) => ('text' in part ? [part.text] : []))).join('\n');
}

function cachedAnswerOf(result: PromptJobResult): CachedAnswer {
  return {
    text: result.text,
    finishReason: result.finishReason,
    usage: result.usage,
    provider: result.provider,
    model: result.model,
    ...(result.modelVersion !== undefined ? { modelVersion: result.modelVersion } : {}),
    ...(result.embedding !== undefined ? { embedding: result.embedding } : {}),
    costNanoUsd: result.costNanoUsd,
    storedAt: Date.now(),
  };
}

function waitCode(reason: string): ErrorCode | '' {
  switch (reason) {
    case 'cache-pending':
      return '';
    case 'budget':
      return 'BUDGET_EXCEEDED';
    case 'breakers-open':
      return 'PROVIDER_UNAVAILABLE';
    default:
      return 'PROVIDER_RATE_LIMITED';
  }
}
