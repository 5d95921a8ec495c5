import { describe, expect, it } from 'vitest';
import { costNanoUsd, DEFAULT_PRICES, worstCaseCostNanoUsd } from '../src/index.js';

// Golden figures computed by hand from the published prices (USD per 1M tokens = nano-USD per token × 1e-3).
describe('worstCaseCostNanoUsd', () => {
  it('bills all input uncached plus maxOutputTokens at the output rate: 1,000 in / 2,000 out on gemini-3.6-flash', () => {
    // 1,000 × 1,500 + 2,000 × 7,500 = 1,500,000 + 15,000,000 nano = 0.0165 USD
    expect(worstCaseCostNanoUsd(1_000, 2_000, DEFAULT_PRICES['gemini-3.6-flash']!)).toBe(16_500_000);
  });

  it('uses the tier of the input size for input and output', () => {
    const pro = DEFAULT_PRICES['gemini-3.1-pro-preview']!;
    // 250,000 × 4,000 + 8,192 × 18,000 = 1,000,000,000 + 147,456,000 nano
    expect(worstCaseCostNanoUsd(250_000, 8_192, pro)).toBe(1_147_456_000);
    // exactly 200,000 stays in the first tier: 200,000 × 2,000 + 1,000 × 12,000 = 412,000,000 nano
    expect(worstCaseCostNanoUsd(200_000, 1_000, pro)).toBe(412_000_000);
  });

  it('rounds fractional token estimates up and stays an integer', () => {
    // 10.2 → 11 in × 100 + 3.1 → 4 out × 400 (2.5-flash-lite) = 1,100 + 1,600 nano
    expect(worstCaseCostNanoUsd(10.2, 3.1, DEFAULT_PRICES['gemini-2.5-flash-lite']!)).toBe(2_700);
  });

  it('bounds every actual cost whose output plus thinking fits maxOutputTokens', () => {
    const price = DEFAULT_PRICES['gemini-2.5-pro']!;
    const worst = worstCaseCostNanoUsd(10_000, 4_000, price);
    // 10,000 × 1,250 + 4,000 × 10,000 = 12,500,000 + 40,000,000 nano
    expect(worst).toBe(52_500_000);
    const actual = costNanoUsd(
      { inputTokens: 10_000, cachedTokens: 6_000, outputTokens: 1_000, thoughtsTokens: 3_000, totalTokens: 14_000 },
      price,
    );
    expect(actual).toBeLessThan(worst);
  });
});
