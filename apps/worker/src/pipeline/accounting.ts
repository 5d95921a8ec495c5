import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import {
  appendBacklogDone,
  generationLimitIssues,
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
  type OutputSample,
  type OutputTokenEstimator,
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
 * Only the misses that will call a provider reserve their estimated cost (see `estimatedCost`).
 *
 * Isolation: jobs of several tenants share a batch, so nothing one job carries may fail the
 * others. Before anything is reserved each job is checked on its own (settings within its model's
 * limits: else INVALID_JOB, alone), and the cost math saturates instead of throwing.
 *
 * Budget reservations live as long as the batch renews them (every half `budgets.ttlMs`, which
 * the worker sets to its job lock duration): a killed worker's reservations lapse with its job
 * locks and are charged at their amount (BudgetGuard).
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

/**
 * A job whose budget has room only once in-flight reservations settle looks again after this,
 * ms, plus up to as much again of jitter (so the waiting jobs do not come back in one wave).
 */
export const BUDGET_BUSY_RECHECK_MS = 500;

export interface AccountingDeps {
  config: Config;
  logger: Logger;
  /** Carries the settle pipeline (cache store + fairness). */
  redis: Redis;
  budgets: BudgetGuard;
  /** The fleet's output + thinking token estimate per model; without it, the bound is reserved. */
  outputEstimator?: OutputTokenEstimator;
  ledger: UsageLedger;
  outcomes: JobOutcomes;
  /** Absent when `responseCache.enabled` is false. */
  cache?: ResponseCache;
  audit?: AuditLog;
  metrics?: WorkerMetrics;
}

export class BatchAccounting {
  private readonly unpricedWarned = new Set<string>();
  /** Per batch holding budget reservations: the timer renewing them until the batch settles. */
  private readonly renewals = new WeakMap<BatchContext, NodeJS.Timeout>();

  constructor(private readonly deps: AccountingDeps) {}

  /**
   * Before the calls: answers hits from the cache, groups identical misses behind a leader, and
   * reserves the estimated cost of every job that will call a provider. Sets `final` for invalid
   * jobs, hits and jobs refused by their budget, `leader` for followers, `budget` for reservations.
   */
  async admit(batch: BatchContext, links: readonly Link[]): Promise<void> {
    const { cache, budgets, outcomes } = this.deps;
    for (const job of batch.jobs) if (!job.final) this.checkOwnLimits(job);
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
    await this.prepareOutputEstimates(candidates, links);
    const decisions = await budgets.reserve(candidates.map((job) => ({ tenant: job.entry.data.tenant, amountNanoUsd: this.estimatedCost(job, links) })));
    const refusals = new Map<BatchJob, BudgetDecision & { ok: false }>();
    decisions.forEach((decision, i) => {
      if (decision.ok) candidates[i]!.budget = decision.reservation;
      else refusals.set(candidates[i]!, decision);
    });
    this.renewWhileInFlight(batch, candidates.flatMap((job) => (job.budget?.tracked ? [job.budget] : [])));

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
    const { config, logger, redis, cache, budgets, ledger, outcomes, metrics, outputEstimator } = this.deps;
    clearInterval(this.renewals.get(batch));
    this.renewals.delete(batch);
    const budgetItems: { reservation: BudgetReservation; actualNanoUsd: number }[] = [];
    const outputSamples: OutputSample[] = [];
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
          if (data.kind === 'generate') {
            const bound = maxOutputTokens(data, config.models[result.model]?.outputTokenLimit);
            outputSamples.push({ model: result.model, bound, tokens: result.usage.outputTokens + result.usage.thoughtsTokens });
          }
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
      outputEstimator && outputSamples.length > 0 ? outputEstimator.record(outputSamples).catch(warn('output estimate record')) : undefined,
    ]);
  }

  /** How long an in-flight claim may outlive a crashed holder: a call with its timeout, and slack. */
  private claimTtlMs(): number {
    return this.deps.config.gemini.timeoutMs + 5_000;
  }

  /**
   * A job whose own settings exceed its model's limits (enqueued before the producer checked
   * them, or by another writer) fails alone, INVALID_JOB, before anything is reserved for it.
   */
  private checkOwnLimits(job: BatchJob): void {
    const { data } = job.entry;
    const spec = this.deps.config.models[data.model];
    const [issue] = spec && data.kind === 'generate' ? generationLimitIssues(data.model, spec, data.generationConfig) : [];
    if (issue) job.final = { kind: 'error', error: new PromptQueueError('INVALID_JOB', `${issue.path} ${issue.message}`), latencyMs: 0 };
  }

  /** Loads the fleet's output estimates the candidates need (Redis trouble: what this process knows, or the bound). */
  private async prepareOutputEstimates(candidates: readonly BatchJob[], links: readonly Link[]): Promise<void> {
    const { outputEstimator, config, logger } = this.deps;
    if (!outputEstimator) return;
    const wanted = candidates.flatMap((job) =>
      job.entry.data.kind === 'embed' ? [] : links.map((link) => ({ model: link.model, bound: maxOutputTokens(job.entry.data, config.models[link.model]?.outputTokenLimit) })),
    );
    try {
      await outputEstimator.prepare(wanted);
    } catch (error) {
      logger.warn('could not load output-token estimates', { error: String(error) });
    }
  }

  /**
   * What a job is expected to cost, nano-USD, at the price of the dearest link that may serve it (a
   * fallback must not overspend either): its calibrated input estimate plus the fleet's high
   * quantile of output + thinking tokens of such calls (OutputTokenEstimator; the output bound —
   * `maxOutputTokens` or the model's `outputTokenLimit`, plus a positive `thinkingBudget` — until
   * it has samples). Unpriced links count 0. Saturates (worstCaseCostNanoUsd), never throws.
   */
  estimatedCost(job: BatchJob, links: readonly Link[]): number {
    const { config, outputEstimator } = this.deps;
    const data = job.entry.data;
    let cost = 0;
    for (const link of links) {
      const price = config.prices[link.model];
      if (!price) continue;
      const bound = data.kind === 'embed' ? 0 : maxOutputTokens(data, config.models[link.model]?.outputTokenLimit);
      const output = outputEstimator && bound > 0 ? outputEstimator.estimate(link.model, bound) : bound;
      cost = Math.max(cost, worstCaseCostNanoUsd(job.estimate, output, price));
    }
    return cost;
  }

  /** Renews the batch's reservations every half TTL until `settle`: their holder is alive. */
  private renewWhileInFlight(batch: BatchContext, held: BudgetReservation[]): void {
    if (held.length === 0) return;
    const { budgets, logger } = this.deps;
    const timer = setInterval(() => {
      budgets.renew(held).catch((error: unknown) => logger.warn('could not renew budget reservations', { error: String(error) }));
    }, Math.max(1, Math.floor(budgets.ttlMs / 2)));
    timer.unref();
    this.renewals.set(batch, timer);
  }

  private refused(job: BatchJob, decision: BudgetDecision & { ok: false }): Final {
    const { tenant } = job.entry.data;
    const usd = (nano: number): string => `$${nanoUsdToUsd(nano)}`;
    const figures = { scope: decision.scope, spentUsd: nanoUsdToUsd(decision.spentNanoUsd), reservedUsd: nanoUsdToUsd(decision.reservedNanoUsd), limitUsd: nanoUsdToUsd(decision.limitNanoUsd) };
    if (decision.exceedsLimit) {
      const message = `The job's estimated cost (${usd(decision.wantNanoUsd)}) is more than the tenant's whole ${decision.scope} budget (${usd(decision.limitNanoUsd)}); lower maxOutputTokens`;
      return { kind: 'error', error: new PromptQueueError('BUDGET_EXCEEDED', message), latencyMs: 0 };
    }
    if (decision.reason === 'busy') {
      // The unspent budget covers this job, but not next to the calls in flight: they settle in
      // seconds (usually below their estimate). Look again soon, no attempt spent, whatever the policy.
      const untilMs = Date.now() + BUDGET_BUSY_RECHECK_MS + Math.floor(Math.random() * BUDGET_BUSY_RECHECK_MS);
      return { kind: 'wait', untilMs, reason: 'budget-busy', fields: figures };
    }
    if (this.deps.budgets.policy(tenant).onExceeded === 'wait') {
      return { kind: 'wait', untilMs: decision.retryAtMs, reason: 'budget', fields: figures };
    }
    const message =
      `The tenant's ${decision.scope} budget is spent: ${usd(decision.spentNanoUsd)} spent and ${usd(decision.reservedNanoUsd)} reserved ` +
      `of ${usd(decision.limitNanoUsd)}, and this job needs about ${usd(decision.wantNanoUsd)}; it resets at ${new Date(decision.retryAtMs).toISOString()}`;
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

/** The output bound of a generate job, tokens: output plus any explicit thinking budget (see BatchAccounting.estimatedCost). */
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
    case 'budget-busy':
      return 'BUDGET_EXCEEDED';
    case 'breakers-open':
      return 'PROVIDER_UNAVAILABLE';
    default:
      return 'PROVIDER_RATE_LIMITED';
  }
}
