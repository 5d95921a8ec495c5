import { Router } from 'express';
import type { Redis } from 'ioredis';
import {
  nanoUsdToUsd,
  type BudgetGuard,
  type BudgetPeriodState,
  type PeriodUsage,
  type UsageLedger,
  type UsageTotals,
} from '@prompt-queue/shared';
import { tenantOf } from '../auth.js';
import { methodNotAllowed, tagRoute } from '../http-errors.js';
import { assertRedisAvailable } from '../redis-availability.js';
import type { PromptQueue } from '../queue.js';
import type { BudgetView, UsageResponse, UsageView } from '../responses.js';

/** `GET /v1/usage`: the caller's own usage today and this month, and its budget (two reads, in parallel). */
export function usageRouter(deps: { redis: Redis; queue: PromptQueue; ledger: UsageLedger; budgets: BudgetGuard }): Router {
  const { redis, queue, ledger, budgets } = deps;
  const router = Router();
  router
    .route('/usage')
    .all(tagRoute)
    .get(async (_req, res) => {
      const tenant = tenantOf(res);
      await assertRedisAvailable(redis, queue);
      const now = new Date();
      const [usage, remaining] = await Promise.all([ledger.tenantUsage(tenant, now), budgets.remaining(tenant, now)]);
      const budget: UsageResponse['budget'] =
        remaining.daily || remaining.monthly
          ? {
              ...(remaining.daily ? { daily: budgetView(remaining.daily) } : {}),
              ...(remaining.monthly ? { monthly: budgetView(remaining.monthly) } : {}),
            }
          : null;
      const body: UsageResponse = {
        tenant,
        day: usage.day,
        month: usage.monthKey,
        today: periodView(usage.today),
        thisMonth: periodView(usage.month),
        budget,
      };
      res.set('Cache-Control', 'no-store').json(body);
    })
    .all(methodNotAllowed(['GET']));
  return router;
}

function totalsView(totals: UsageTotals): UsageView {
  return {
    jobs: totals.jobs,
    failures: totals.failures,
    inputTokens: totals.inputTokens,
    outputTokens: totals.outputTokens,
    thoughtsTokens: totals.thoughtsTokens,
    cachedTokens: totals.cachedTokens,
    costUsd: nanoUsdToUsd(totals.costNanoUsd),
    costNanoUsd: totals.costNanoUsd,
    cacheHits: totals.cacheHits,
    savedUsd: nanoUsdToUsd(totals.savedNanoUsd),
    savedNanoUsd: totals.savedNanoUsd,
    unpricedJobs: totals.unpricedJobs,
  };
}

function periodView(period: PeriodUsage): UsageResponse['today'] {
  return {
    ...totalsView(period),
    byModel: Object.fromEntries(Object.entries(period.byModel).map(([model, totals]) => [model, totalsView(totals)])),
  };
}

function budgetView(state: BudgetPeriodState): BudgetView {
  return {
    limitUsd: nanoUsdToUsd(state.limitNanoUsd),
    spentUsd: nanoUsdToUsd(state.spentNanoUsd),
    reservedUsd: nanoUsdToUsd(state.reservedNanoUsd),
    remainingUsd: nanoUsdToUsd(state.remainingNanoUsd),
    resetsAt: new Date(state.resetsAtMs).toISOString(),
  };
}
