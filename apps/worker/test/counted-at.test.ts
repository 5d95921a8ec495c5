import { afterEach, describe, expect, it, vi } from 'vitest';
import { countedAt } from '../src/pipeline/call-chain.js';

/** The limiter's clock conversion, as identity: the test's clock is the Redis clock. */
const limiter = { toServerTime: (localMs: number) => localMs };

describe('countedAt: when the provider counted a served call, as late as we can tell', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('dates a call answered within a second at its answer (its arrival may lag the send by more than the guard)', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(10_700);
    expect(countedAt(limiter, 10_000)).toBe(10_700);
    vi.setSystemTime(11_000);
    expect(countedAt(limiter, 10_000)).toBe(11_000);
  });

  it('dates a slower call at its send: its latency is the provider thinking, and dating it later would waste quota', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(12_500);
    expect(countedAt(limiter, 10_000)).toBe(10_000);
  });
});
