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

/**
 * The most one call can cost, integer nano-USD, for budget reservations: every input token billed
 * uncached (cached input is cheaper, so this bounds it), at the tier of the input size, plus
 * `maxOutputTokens` at that tier's output rate. Token counts are rounded up.
 *
 * Assumption: Gemini bills thinking tokens as output (docs/gemini-api.md) and counts them within
 * `maxOutputTokens` (a thinking model that spends the budget on thoughts stops with MAX_TOKENS), so
 * `maxOutputTokens` bounds visible output plus thoughts. A caller that does not trust that for a
 * model should pass `maxOutputTokens + thinkingBudget`. The bound is only as good as
 * `estimatedInputTokens`: use an upper-side estimate (`estimateTextTokens`).
 */
export function worstCaseCostNanoUsd(estimatedInputTokens: number, maxOutputTokens: number, price: ModelPrice): number {
  const inputTokens = Math.max(0, Math.ceil(estimatedInputTokens));
  const outputTokens = Math.max(0, Math.ceil(maxOutputTokens));
  return costNanoUsd(
    { inputTokens, outputTokens, thoughtsTokens: 0, cachedTokens: 0, totalTokens: inputTokens + outputTokens },
    price,
  );
}
