import { afterEach, describe, expect, it, vi } from 'vitest';
import { countedAt } from '../src/pipeline/call-chain.js';
import { CallLatencies } from '../src/providers/call-latencies.js';

/** The limiter's clock conversion, as identity: the test's clock is the Redis clock. */
const limiter = { toServerTime: (localMs: number) => localMs };

/** A link whose recent normal calls took these latencies, ms. */
function learned(ms: number[]): CallLatencies {
  const latencies = new CallLatencies();
  for (const sample of ms) latencies.record(sample);
  return latencies;
}

/** Dates a call sent at `sentAt` and answered at `answeredAt`. */
function dated(sentAt: number, answeredAt: number, latencies: CallLatencies): number {
  vi.setSystemTime(answeredAt);
  return countedAt(limiter, sentAt, latencies);
}

describe('countedAt: when the provider counted a served call, as late as we can tell', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  const slowLink = () => learned([1_000, 1_500, 2_000, 2_000, 2_500, 3_000, 3_000, 1_200]); // median 2 s, fastest 1 s
  const fastLink = () => learned([20, 30, 40, 40, 50, 60, 25, 35]); // median 40 ms, fastest 20 ms

  it('dates a call answered within a second at its answer (its arrival may lag the send by more than the guard)', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    expect(dated(10_000, 10_700, slowLink())).toBe(10_700);
    expect(dated(10_000, 11_000, fastLink())).toBe(11_000);
  });

  it("dates a slow call at its send when it took what the link's calls normally take: its latency is the provider thinking", () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    expect(dated(10_000, 12_500, slowLink())).toBe(10_000);
    expect(dated(10_000, 13_900, slowLink())).toBe(10_000); // under 2 × the median
  });

  it('dates a call that took far longer than normal at its answer less the fastest normal call: it waited before it arrived', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    // A fast link's call answered 5 s after its send (a first burst): it arrived at most 20 ms before its answer.
    expect(dated(10_000, 15_000, fastLink())).toBe(14_980);
    // A slow link's call answered after 7 s: at least 1 s of it was the provider.
    expect(dated(10_000, 17_000, slowLink())).toBe(16_000);
  });

  it("dates every call at its answer while the link's normal latency is unknown (its first calls)", () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const fresh = new CallLatencies();
    expect(dated(10_000, 12_500, fresh)).toBe(12_500);
  });
});

describe('CallLatencies', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('keeps normal calls only, so a burst of waited calls does not become the norm', () => {
    const latencies = learned([40, 40, 40, 40, 40, 40, 40, 40]);
    for (let i = 0; i < 100; i++) latencies.record(5_000);
    expect(latencies.typical()).toEqual({ medianMs: 40, floorMs: 40 });
    expect(latencies.waited(5_000)).toBe(true);
    expect(latencies.waited(900)).toBe(false); // never under a second
  });

  it('forgets samples after a minute, then learns a provider that truly slowed down', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(0);
    const latencies = learned([40, 40, 40, 40, 40, 40, 40, 40]);
    vi.setSystemTime(61_000);
    expect(latencies.typical()).toBeUndefined();
    for (let i = 0; i < 8; i++) latencies.record(3_000);
    expect(latencies.typical()).toEqual({ medianMs: 3_000, floorMs: 3_000 });
    expect(latencies.waited(3_500)).toBe(false);
  });
});
