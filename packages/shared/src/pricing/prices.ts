/**
 * Gemini prices as data. USD per 1M tokens, as published on Google's pricing page (transcribed in
 * `PRICES_AS_OF`). A CONFIG_FILE `prices` section overrides or extends them.
 */
export const PRICES_AS_OF = '2026-11-01';

export interface PriceRates {
  /** USD per 1M uncached input tokens. */
  input: number;
  /** USD per 1M output tokens; thinking tokens are billed as output. */
  output: number;
  /** USD per 1M cached input tokens. */
  cachedInput: number;
}

export interface ModelPrice extends PriceRates {
  /**
   * Rates for long prompts: the whole request is priced at the tier of its prompt size, so a prompt
   * of more than `aboveInputTokens` tokens pays these rates for every token.
   */
  longPrompt?: PriceRates & { aboveInputTokens: number };
}

export const DEFAULT_PRICES: Record<string, ModelPrice> = {
  'gemini-3.1-pro-preview': {
    input: 2.0,
    output: 12.0,
    cachedInput: 0.2,
    longPrompt: { aboveInputTokens: 200_000, input: 4.0, output: 18.0, cachedInput: 0.4 },
  },
  'gemini-3.6-flash': { input: 1.5, output: 7.5, cachedInput: 0.15 },
  'gemini-3.5-flash': { input: 1.5, output: 9.0, cachedInput: 0.15 },
  'gemini-3.5-flash-lite': { input: 0.3, output: 2.5, cachedInput: 0.03 },
  'gemini-3-flash-preview': { input: 0.5, output: 3.0, cachedInput: 0.05 },
  'gemini-2.5-pro': {
    input: 1.25,
    output: 10.0,
    cachedInput: 0.125,
    longPrompt: { aboveInputTokens: 200_000, input: 2.5, output: 15.0, cachedInput: 0.25 },
  },
  'gemini-2.5-flash': { input: 0.3, output: 2.5, cachedInput: 0.03 },
  'gemini-2.5-flash-lite': { input: 0.1, output: 0.4, cachedInput: 0.01 },
  'gemini-embedding-001': { input: 0.15, output: 0, cachedInput: 0 },
};
