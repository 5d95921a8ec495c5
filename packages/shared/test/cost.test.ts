import { describe, expect, it } from 'vitest';
import { costNanoUsd, DEFAULT_PRICES, nanoUsdToUsd, type TokenUsage } from '../src/index.js';

const usage = (u: Partial<TokenUsage>): TokenUsage => ({
  inputTokens: 0,
  outputTokens: 0,
  thoughtsTokens: 0,
  cachedTokens: 0,
  totalTokens: 0,
  ...u,
});

// Golden figures computed by hand from the published prices (USD per 1M tokens).
describe('costNanoUsd', () => {
  it('prices a short prompt: 1,000 in × $1.50 + 500 out × $7.50 on gemini-3.6-flash', () => {
    // 1000 × 1.50 / 1e6 = 0.0015; 500 × 7.50 / 1e6 = 0.00375 → 0.00525 USD
    const nanos = costNanoUsd(usage({ inputTokens: 1_000, outputTokens: 500 }), DEFAULT_PRICES['gemini-3.6-flash']!);
    expect(nanos).toBe(5_250_000);
    expect(nanoUsdToUsd(nanos)).toBe(0.00525);
  });

  it('bills cached input at the cached rate and the rest at the input rate', () => {
    // 10,000 prompt of which 8,000 cached on 2.5-pro: 2,000 × 1.25 + 8,000 × 0.125 + 100 × 10
    // = 2,500,000 + 1,000,000 + 1,000,000 nano = 0.0045 USD
    const nanos = costNanoUsd(
      usage({ inputTokens: 10_000, cachedTokens: 8_000, outputTokens: 100 }),
      DEFAULT_PRICES['gemini-2.5-pro']!,
    );
    expect(nanos).toBe(4_500_000);
  });

  it('bills thinking tokens as output', () => {
    // 3.1-pro: 200 × 2.00 + (50 + 1,200) × 12.00 = 400,000 + 15,000,000 nano = 0.0154 USD
    const nanos = costNanoUsd(
      usage({ inputTokens: 200, outputTokens: 50, thoughtsTokens: 1_200 }),
      DEFAULT_PRICES['gemini-3.1-pro-preview']!,
    );
    expect(nanos).toBe(15_400_000);
  });

  it('prices the whole request at the long-prompt tier above 200k prompt tokens', () => {
    // 250,000 × 4.00 + 1,000 × 18.00 = 1,000,000,000 + 18,000,000 nano = 1.018 USD
    const nanos = costNanoUsd(usage({ inputTokens: 250_000, outputTokens: 1_000 }), DEFAULT_PRICES['gemini-3.1-pro-preview']!);
    expect(nanos).toBe(1_018_000_000);
    // exactly 200k stays in the first tier: 200,000 × 2.00 = 0.4 USD
    expect(costNanoUsd(usage({ inputTokens: 200_000 }), DEFAULT_PRICES['gemini-3.1-pro-preview']!)).toBe(400_000_000);
  });

  it('sums without float drift', () => {
    const one = costNanoUsd(usage({ inputTokens: 7, outputTokens: 3 }), DEFAULT_PRICES['gemini-2.5-flash-lite']!);
    // 7 × 0.10 + 3 × 0.40 = 0.7 + 1.2 = 1.9 micro-USD = 1,900 nano
    expect(one).toBe(1_900);
    let total = 0;
    for (let i = 0; i < 1_000_000; i += 1) total += one;
    expect(total).toBe(1_900_000_000);
  });
});
