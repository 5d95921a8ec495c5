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

/** The price a provider charges for a model: its own (`providerPrices`) if listed, else `prices`. */
export function priceFor(
  config: { prices: Record<string, ModelPrice>; providerPrices: Record<string, Record<string, ModelPrice>> },
  provider: string,
  model: string,
): ModelPrice | undefined {
  return config.providerPrices[provider]?.[model] ?? config.prices[model];
}

function nanoPerToken(usdPerMillionTokens: number): number {
  return Math.round(usdPerMillionTokens * 1000);
}

/**
 * A call's cost at a cheaper tier (Batch API, Flex): the standard cost times the tier's
 * multiplier (`tiers.priceMultiplier`), rounded once to the nano-dollar. With Google's 50% and
 * the shipped prices (even nano-dollars per token) it is exactly half.
 */
export function tierCostNanoUsd(standardNanoUsd: number, multiplier: number): number {
  return Math.round(standardNanoUsd * multiplier);
}

export function nanoUsdToUsd(nanoUsd: number): number {
  return nanoUsd / 1e9;
}

/**
 * What one call costs at most for given token counts, integer nano-USD, for budget reservations:
 * every input token billed uncached (cached input is cheaper, so this bounds it), at the tier of the
 * input size, plus `outputTokens` (visible output and thinking, both billed as output) at that
 * tier's output rate. Token counts are rounded up. The budget passes its estimates (a calibrated
 * input estimate, the fleet's p95 of output + thinking); with bounds (maxOutputTokens plus any
 * thinking budget) it is the worst case.
 *
 * Saturates, never throws: a count that is not a number, or a cost past 2^53, gives
 * `Number.MAX_SAFE_INTEGER` (refused by any budget), so one job's absurd figure cannot fail the
 * batch it travels in.
 */
export function worstCaseCostNanoUsd(estimatedInputTokens: number, outputTokens: number, price: ModelPrice): number {
  if (Number.isNaN(estimatedInputTokens) || Number.isNaN(outputTokens)) return Number.MAX_SAFE_INTEGER;
  const inputTokens = Math.max(0, Math.ceil(estimatedInputTokens));
  const output = Math.max(0, Math.ceil(outputTokens));
  const cost = costNanoUsd({ inputTokens, outputTokens: output, thoughtsTokens: 0, cachedTokens: 0, totalTokens: inputTokens + output }, price);
  return Number.isSafeInteger(cost) ? cost : Number.MAX_SAFE_INTEGER;
}
