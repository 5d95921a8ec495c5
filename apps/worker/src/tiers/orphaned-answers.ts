import type { BudgetGuard, Logger, UsageEntry, UsageLedger } from '@prompt-queue/shared';
import { toUsage, type WireResponse } from '../providers/gemini/answer.js';
import type { JobResults } from '../pipeline/results.js';

/**
 * A Batch API answer that came back after its job had been served standard (the deadline came
 * near first). Nobody reads it, but Google bills it: it is priced at the batch tier from its own
 * usage and recorded as spend — in the usage ledger (cost, `orphanedCostNanoUsd`, no job counted)
 * and against the tenant's budget — so cost stays true to the nano-dollar.
 */
export interface OrphanedAnswer {
  tenant: string;
  /** The model the batch ran. */
  model: string;
  /** The generateContent response as the batch returned it. */
  response: unknown;
}

export interface OrphanedAnswerDeps {
  results: JobResults;
  ledger: Pick<UsageLedger, 'record'>;
  budgets: Pick<BudgetGuard, 'charge'>;
  logger: Logger;
}

export function orphanedAnswerRecorder(deps: OrphanedAnswerDeps): (answers: OrphanedAnswer[]) => Promise<void> {
  return async (answers) => {
    const entries: UsageEntry[] = answers.map(({ tenant, model, response }) => {
      // Priced from usage alone: a refused answer is billed for what it consumed too.
      const usage = toUsage((response as WireResponse | null)?.usageMetadata);
      const { result } = deps.results.atTier({ text: '', finishReason: '', usage, provider: 'gemini', model }, 0, 'batch');
      return { tenant, model, provider: 'gemini', outcome: 'orphaned', usage, costNanoUsd: result.costNanoUsd ?? null, cached: false, tier: 'batch' };
    });
    const charges = entries.map(({ tenant, costNanoUsd }) => ({ tenant, nanoUsd: costNanoUsd ?? 0 }));
    const warn = (what: string) => (error: unknown) => deps.logger.warn(`orphaned batch answers: ${what} failed`, { error: String(error) });
    await Promise.all([deps.ledger.record(entries).catch(warn('usage record')), deps.budgets.charge(charges).catch(warn('budget charge'))]);
  };
}
