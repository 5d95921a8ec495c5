import {
  nanoUsdToUsd,
  priceFor,
  PromptQueueError,
  worstCaseCostNanoUsd,
  type BudgetDecision,
  type BudgetGuard,
  type BudgetReservation,
  type Config,
  type Logger,
  type OutputTokenEstimator,
  type PromptJobData,
} from '@prompt-queue/shared';
import type { Link } from '../providers/chain.js';
import type { BatchJob, Fates } from './batch.js';
import type { IdenticalGroup } from './cache-stage.js';
import { attemptFacts, jobFateOfError, type JobFate } from './fate.js';

/**
 * Stage 3: budget admission. Reserves the estimated cost of every job that will call a provider,
 * in one script call for the batch; refusals become fates (fail, or wait per the tenant's policy).
 *
 * Dedupe: of a group of identical jobs, the first that got budget leads and makes the call; the
 * others follow it (cache-stage.ts `followerFate`). Budget is reserved once per tenant of a group,
 * so a group whose first tenant is over budget is still served for another tenant of it.
 *
 * Isolation: jobs of several tenants share a batch, so the cost math saturates instead of throwing.
 * Reservations live as long as the batch renews them (every half `budgets.ttlMs`, which the worker
 * sets to its job lock duration): a killed worker's reservations lapse with its job locks and are
 * charged at their amount (BudgetGuard).
 */

/**
 * A job whose budget has room only once in-flight reservations settle looks again after this,
 * ms, plus up to as much again of jitter (so the waiting jobs do not come back in one wave).
 */
export const BUDGET_BUSY_RECHECK_MS = 500;

export interface BudgetAdmitDeps {
  config: Config;
  logger: Logger;
  budgets: BudgetGuard;
  /** The fleet's output + thinking token estimate per model; without it, the bound is reserved. */
  outputEstimator?: OutputTokenEstimator | undefined;
}

export interface BudgetAdmission {
  /** The reservation of each job that leads a call (worst case; settled with the actual cost). */
  reservations: Map<BatchJob, BudgetReservation>;
  /** Followers and the leader whose call answers them. */
  leaders: Map<BatchJob, BatchJob>;
  /** Jobs refused by their tenant's budget. */
  fates: Fates;
  /** Stops renewing the reservations: call when the batch settles. */
  stopRenewal(): void;
}

export async function admitBudgets(deps: BudgetAdmitDeps, groups: readonly IdenticalGroup[], links: readonly Link[]): Promise<BudgetAdmission> {
  const { budgets } = deps;
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
  await prepareOutputEstimates(deps, candidates, links);
  const decisions = await budgets.reserve(candidates.map((job) => ({ tenant: job.entry.data.tenant, amountNanoUsd: estimatedCost(deps, job, links) })));
  const reservations = new Map<BatchJob, BudgetReservation>();
  const refusals = new Map<BatchJob, BudgetDecision & { ok: false }>();
  decisions.forEach((decision, i) => {
    if (decision.ok) reservations.set(candidates[i]!, decision.reservation);
    else refusals.set(candidates[i]!, decision);
  });

  const leaders = new Map<BatchJob, BatchJob>();
  const fates: Fates = new Map();
  for (const group of groups) {
    const members = [group.leader, ...group.followers];
    const leader = members.find((job) => reservations.has(job));
    if (leader) {
      for (const job of members) if (job !== leader) leaders.set(job, leader);
      continue;
    }
    // Nobody in the group may spend: each job gets its own tenant's refusal.
    const byTenant = new Map([...refusals].filter(([job]) => members.includes(job)).map(([job, decision]) => [job.entry.data.tenant, decision]));
    for (const job of members) fates.set(job, refusedFate(deps, job, byTenant.get(job.entry.data.tenant)!));
  }
  const stopRenewal = renewWhileInFlight(deps, [...reservations.values()].filter((reservation) => reservation.tracked));
  return { reservations, leaders, fates, stopRenewal };
}

/**
 * What a job is expected to cost, nano-USD, at the price of the dearest link that may serve it (a
 * fallback must not overspend either): its calibrated input estimate plus the fleet's high
 * quantile of output + thinking tokens of such calls (OutputTokenEstimator; the output bound —
 * `maxOutputTokens` or the model's `outputTokenLimit`, plus a positive `thinkingBudget` — until
 * it has samples). Unpriced links count 0. Saturates (worstCaseCostNanoUsd), never throws.
 */
export function estimatedCost(deps: Pick<BudgetAdmitDeps, 'config' | 'outputEstimator'>, job: BatchJob, links: readonly Link[]): number {
  const { config, outputEstimator } = deps;
  const data = job.entry.data;
  let cost = 0;
  for (const link of links) {
    const price = priceFor(config, link.providerName, link.model);
    if (!price) continue;
    const bound = data.kind === 'embed' ? 0 : maxOutputTokens(data, config.models[link.model]?.outputTokenLimit);
    const output = outputEstimator && bound > 0 ? outputEstimator.estimate(link.model, bound) : bound;
    cost = Math.max(cost, worstCaseCostNanoUsd(job.estimate, output, price));
  }
  return cost;
}

/** The output bound of a generate job, tokens: output plus any explicit thinking budget. */
export function maxOutputTokens(data: PromptJobData, outputTokenLimit: number | undefined): number {
  const config = data.generationConfig;
  const base = config?.maxOutputTokens ?? outputTokenLimit ?? 65_536;
  const thinking = config?.thinkingConfig?.thinkingBudget;
  return base + (thinking !== undefined && thinking > 0 ? thinking : 0);
}

/** Loads the fleet's output estimates the candidates need (Redis trouble: what this process knows, or the bound). */
export async function prepareOutputEstimates(deps: Pick<BudgetAdmitDeps, 'config' | 'logger' | 'outputEstimator'>, candidates: readonly BatchJob[], links: readonly Link[]): Promise<void> {
  const { outputEstimator, config, logger } = deps;
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

/** Renews the reservations every half TTL until stopped: their holder is alive. */
function renewWhileInFlight(deps: BudgetAdmitDeps, held: BudgetReservation[]): () => void {
  if (held.length === 0) return () => {};
  const { budgets, logger } = deps;
  const timer = setInterval(() => {
    budgets.renew(held).catch((error: unknown) => logger.warn('could not renew budget reservations', { error: String(error) }));
  }, Math.max(1, Math.floor(budgets.ttlMs / 2)));
  timer.unref();
  return () => clearInterval(timer);
}

function refusedFate(deps: BudgetAdmitDeps, job: BatchJob, decision: BudgetDecision & { ok: false }): JobFate {
  const { tenant } = job.entry.data;
  const usd = (nano: number): string => `$${nanoUsdToUsd(nano)}`;
  const figures = { scope: decision.scope, spentUsd: nanoUsdToUsd(decision.spentNanoUsd), reservedUsd: nanoUsdToUsd(decision.reservedNanoUsd), limitUsd: nanoUsdToUsd(decision.limitNanoUsd) };
  const fail = (message: string): JobFate => jobFateOfError(attemptFacts(job.entry), new PromptQueueError('BUDGET_EXCEEDED', message), 0);
  if (decision.exceedsLimit) {
    return fail(`The job's estimated cost (${usd(decision.wantNanoUsd)}) is more than the tenant's whole ${decision.scope} budget (${usd(decision.limitNanoUsd)}); lower maxOutputTokens`);
  }
  if (decision.reason === 'busy') {
    // The unspent budget covers this job, but not next to the calls in flight: they settle in
    // seconds (usually below their estimate). Look again soon, no attempt spent, whatever the policy.
    const untilMs = Date.now() + BUDGET_BUSY_RECHECK_MS + Math.floor(Math.random() * BUDGET_BUSY_RECHECK_MS);
    return { kind: 'wait', untilMs, reason: 'budget-busy', fields: figures };
  }
  if (deps.budgets.policy(tenant).onExceeded === 'wait') {
    return { kind: 'wait', untilMs: decision.retryAtMs, reason: 'budget', fields: figures };
  }
  return fail(
    `The tenant's ${decision.scope} budget is spent: ${usd(decision.spentNanoUsd)} spent and ${usd(decision.reservedNanoUsd)} reserved ` +
      `of ${usd(decision.limitNanoUsd)}, and this job needs about ${usd(decision.wantNanoUsd)}; it resets at ${new Date(decision.retryAtMs).toISOString()}`,
  );
}
