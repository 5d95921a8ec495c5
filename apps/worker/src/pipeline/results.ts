import {
  costNanoUsd,
  priceFor,
  tierCostNanoUsd,
  type ServiceTier,
  nanoUsdToUsd,
  promptJobResultSchema,
  type Config,
  type Logger,
  type PromptJobResult,
  type TokenUsage,
} from '@prompt-queue/shared';
import type { CachedAnswer } from '../cache/response-cache.js';
import type { GenerateResult } from '../providers/provider.js';

/**
 * A served job's result: validated like persisted data (a malformed one must fail here, not in the
 * producer) and priced by the model that served it.
 */
export class JobResults {
  private readonly unpricedModels = new Set<string>();

  constructor(private readonly deps: { config: Config; logger: Logger }) {}

  generated(answer: GenerateResult, latencyMs: number): PromptJobResult {
    return this.priced({
      text: answer.text,
      finishReason: answer.finishReason,
      provider: answer.provider,
      model: answer.model,
      usage: answer.usage,
      latencyMs,
      ...(answer.modelVersion !== undefined ? { modelVersion: answer.modelVersion } : {}),
      tier: 'standard',
    });
  }

  /**
   * A generation served at a cheaper tier (Batch API, Flex): priced at the standard price times
   * `tiers.priceMultiplier.<tier>`, rounded once to the nano-dollar; `savedNanoUsd` is what it
   * would have cost more at standard (the usage ledger's savings by tier).
   */
  atTier(answer: GenerateResult, latencyMs: number, tier: Exclude<ServiceTier, 'standard'>): { result: PromptJobResult; savedNanoUsd: number } {
    const standard = this.priceOf(answer.provider, answer.model, answer.usage);
    const nano = standard === null ? null : tierCostNanoUsd(standard, this.deps.config.tiers.priceMultiplier[tier]);
    const result = promptJobResultSchema.parse({
      text: answer.text,
      finishReason: answer.finishReason,
      provider: answer.provider,
      model: answer.model,
      usage: answer.usage,
      latencyMs,
      ...(answer.modelVersion !== undefined ? { modelVersion: answer.modelVersion } : {}),
      cached: false,
      costUsd: nano === null ? null : nanoUsdToUsd(nano),
      costNanoUsd: nano,
      tier,
    });
    return { result, savedNanoUsd: standard === null || nano === null ? 0 : Math.max(0, standard - nano) };
  }

  /**
   * An embedding's result. batchEmbedContents reports no usage, so inputTokens is the job's
   * estimate (what the limiter reserved), and the cost is priced from it.
   */
  embedded(served: { provider: string; model: string; embedding: number[]; inputTokens: number }, latencyMs: number): PromptJobResult {
    const usage: TokenUsage = { inputTokens: served.inputTokens, outputTokens: 0, thoughtsTokens: 0, cachedTokens: 0, totalTokens: served.inputTokens };
    return this.priced({ text: '', finishReason: 'STOP', provider: served.provider, model: served.model, usage, latencyMs, embedding: served.embedding });
  }

  /**
   * A job answered without a provider call: from the response cache, or from an identical job of
   * the same batch (dedupe). Billed 0 (`cached: true`); the answer's own usage is kept as it was.
   */
  cached(answer: CachedAnswer): PromptJobResult {
    return promptJobResultSchema.parse({
      text: answer.text,
      finishReason: answer.finishReason,
      provider: answer.provider,
      model: answer.model,
      cached: true,
      usage: answer.usage,
      costUsd: 0,
      costNanoUsd: 0,
      latencyMs: 0,
      ...(answer.modelVersion !== undefined ? { modelVersion: answer.modelVersion } : {}),
      ...(answer.embedding !== undefined ? { embedding: answer.embedding } : {}),
    });
  }

  private priced(fields: Omit<PromptJobResult, 'cached' | 'costUsd' | 'costNanoUsd'>): PromptJobResult {
    const nano = this.priceOf(fields.provider, fields.model, fields.usage);
    return promptJobResultSchema.parse({ ...fields, cached: false, costUsd: nano === null ? null : nanoUsdToUsd(nano), costNanoUsd: nano });
  }

  private priceOf(provider: string, model: string, usage: TokenUsage): number | null {
    const price = priceFor(this.deps.config, provider, model);
    if (price) return costNanoUsd(usage, price);
    if (!this.unpricedModels.has(model)) {
      this.unpricedModels.add(model);
      this.deps.logger.warn('no price configured for model; its jobs report costUsd null (add it to CONFIG_FILE prices)', { model });
    }
    return null;
  }
}
