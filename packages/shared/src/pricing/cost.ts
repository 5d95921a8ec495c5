import type { ModelPrice, PriceRates } from './prices.js';

/** Token usage of one call, as reported by the provider (Gemini's `usageMetadata`). */
export interface TokenUsage {
  /** All input tokens, cached ones included (Gemini's promptTokenCount). */
  inputTokens: number;
  /** Visible output tokens (candidatesTokenCount), thinking excluded. */
  outputTokens: number;
  /** Thinking tokens, billed as output. */
  thoughtsTokens: number;
  /** Input tokens served from a context cache, billed at the cached rate. */
  cachedTokens: number;
  totalTokens: number;
}

/**
 * Cost in integer nano-dollars (1e-9 USD). A price of P USD per 1M tokens is P × 1000 nano-dollars
 * per token, an integer for every published price (three decimals at most), so per-job costs and
 * their sums stay exact: no float drift when millions of jobs are added up.
 */
export function costNanoUsd(usage: TokenUsage, price: ModelPrice): number {
  const rates: PriceRates =
    price.longPrompt && usage.inputTokens > price.longPrompt.aboveInputTokens ? price.longPrompt : price;
  const cached = Math.min(usage.cachedTokens, usage.inputTokens);
  const uncached = usage.inputTokens - cached;
  return (
    uncached * nanoPerToken(rates.input) +
    cached * nanoPerToken(rates.cachedInput) +
    (usage.outputTokens + usage.thoughtsTokens) * nanoPerToken(rates.output)
  );
}

function nanoPerToken(usdPerMillionTokens: number): number {
  return Math.round(usdPerMillionTokens * 1000);
}

export function nanoUsdToUsd(nanoUsd: number): number {
  return nanoUsd / 1e9;
}
