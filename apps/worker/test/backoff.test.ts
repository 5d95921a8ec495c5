import { describe, expect, it } from 'vitest';
import { jitteredBackoffDelay, jitteredBackoffStrategy } from '../src/backoff.js';

describe('jittered exponential backoff', () => {
  const options = { baseMs: 1_000, maxMs: 60_000 };

  it('spans [0, base × 2^(attempt-1)) with full jitter', () => {
    expect(jitteredBackoffDelay(1, { ...options, random: () => 0 })).toBe(0);
    expect(jitteredBackoffDelay(1, { ...options, random: () => 0.5 })).toBe(500);
    expect(jitteredBackoffDelay(1, { ...options, random: () => 0.999999 })).toBe(999);
  });

  it('doubles the ceiling with each attempt', () => {
    const top = (attempt: number) => jitteredBackoffDelay(attempt, { ...options, random: () => 0.999999 });
    expect([1, 2, 3, 4, 5].map(top)).toEqual([999, 1_999, 3_999, 7_999, 15_999]);
  });

  it('never exceeds the cap, even for absurd attempt counts', () => {
    for (const attempt of [7, 8, 20, 1_100, 1e6]) {
      const delay = jitteredBackoffDelay(attempt, { ...options, random: () => 0.999999 });
      expect(delay).toBeLessThan(60_000);
      expect(delay).toBeGreaterThanOrEqual(59_999);
    }
  });

  it('treats attempt 0 like the first retry', () => {
    expect(jitteredBackoffDelay(0, { ...options, random: () => 0.5 })).toBe(500);
  });

  it('stays within bounds with the real Math.random', () => {
    for (let attempt = 1; attempt <= 10; attempt++) {
      for (let i = 0; i < 200; i++) {
        const delay = jitteredBackoffDelay(attempt, options);
        expect(delay).toBeGreaterThanOrEqual(0);
        expect(delay).toBeLessThan(Math.min(60_000, 1_000 * 2 ** (attempt - 1)));
        expect(Number.isInteger(delay)).toBe(true);
      }
    }
  });

  it('is a BullMQ backoffStrategy that ignores the type and error', async () => {
    const strategy = jitteredBackoffStrategy({ baseMs: 20, maxMs: 200, random: () => 0.5 });
    expect(await strategy(3, 'jittered', new Error('x'))).toBe(40);
  });
});
