import { hostname } from 'node:os';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { breakerStatesKey, createLogger, ProviderError, type FailureDisposition } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import {
  DEFAULT_BREAKER_OPTIONS,
  isBreakerOpenError,
  ProviderBreaker,
  readBreakerStates,
  type BreakerOptions,
} from '../src/providers/breaker.js';
import { CallNotSentError } from '../src/providers/call-signal.js';

const LINK = 'emulated:gemini-2.5-flash';
const OPTIONS: BreakerOptions = { ...DEFAULT_BREAKER_OPTIONS, volumeThreshold: 5, resetTimeoutMs: 200 };

const providerError = (disposition: FailureDisposition) =>
  new ProviderError(
    disposition === 'fail' ? 'PROVIDER_BAD_REQUEST' : disposition === 'rate-limit' ? 'PROVIDER_RATE_LIMITED' : 'PROVIDER_UNAVAILABLE',
    `test ${disposition}`,
    { disposition, ...(disposition === 'rate-limit' ? { retryAfterMs: 1000 } : {}) },
  );

/** Fires one call that rejects with `error`; returns what fire rejected with. */
async function failWith(breaker: ProviderBreaker, error: unknown): Promise<unknown> {
  return breaker.fire(() => Promise.reject(error)).then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
}

describe('ProviderBreaker', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let prefix: string;
  const logger = createLogger({ service: 'breaker-test', level: 'error' });
  const breakers: ProviderBreaker[] = [];

  function makeBreaker(overrides: Partial<BreakerOptions> = {}, link = LINK): ProviderBreaker {
    const breaker = new ProviderBreaker({ link, redis, prefix, logger, options: { ...OPTIONS, ...overrides }, workerId: 'test-worker' });
    breakers.push(breaker);
    return breaker;
  }

  beforeAll(async () => {
    redisServer = await startTestRedis();
    redis = new Redis(redisServer.url);
  });
  afterAll(async () => {
    await redis?.quit();
    await redisServer?.stop();
  });
  beforeEach(() => {
    prefix = uniquePrefix('brk');
  });
  afterEach(async () => {
    for (const breaker of breakers.splice(0)) breaker.shutdown();
    await redis.del(breakerStatesKey(prefix));
    vi.restoreAllMocks();
  });

  it('passes results and errors through while closed', async () => {
    const breaker = makeBreaker();
    await expect(breaker.fire(() => Promise.resolve(42))).resolves.toBe(42);
    const error = providerError('backoff');
    expect(await failWith(breaker, error)).toBe(error);
    expect(breaker.state.state).toBe('closed');
    expect(breaker.isOpen()).toBe(false);
  });

  it('opens after volumeThreshold backoff failures, then short-circuits with a breaker-open ProviderError', async () => {
    const breaker = makeBreaker({ resetTimeoutMs: 60_000 });
    for (let i = 0; i < 4; i++) await failWith(breaker, providerError('backoff'));
    expect(breaker.state.state).toBe('closed');

    await failWith(breaker, providerError('backoff'));
    const state = breaker.state;
    expect(state.state).toBe('open');
    if (state.state !== 'open') throw new Error('unreachable');
    expect(state.retryAt - state.since).toBe(60_000);
    expect(breaker.isOpen()).toBe(true);

    const call = vi.fn(() => Promise.resolve('never'));
    const shortCircuit = await breaker.fire(call).catch((e: unknown) => e);
    expect(call).not.toHaveBeenCalled();
    expect(isBreakerOpenError(shortCircuit)).toBe(true);
    expect(shortCircuit).toMatchObject({ name: 'ProviderError', code: 'PROVIDER_UNAVAILABLE', disposition: 'backoff', breakerOpen: true });
    expect((shortCircuit as ProviderError).retryAfterMs).toBeGreaterThan(59_000);
    expect(isBreakerOpenError(providerError('backoff'))).toBe(false);
  });

  it.each(['fail', 'rate-limit'] as const)('never trips on %s errors', async (disposition) => {
    const breaker = makeBreaker();
    for (let i = 0; i < 20; i++) {
      const error = providerError(disposition);
      expect(await failWith(breaker, error)).toBe(error);
    }
    expect(breaker.state.state).toBe('closed');
    await expect(breaker.fire(() => Promise.resolve('ok'))).resolves.toBe('ok');
  });

  it('never trips on calls abandoned before they were sent (a shutdown says nothing about the provider)', async () => {
    const breaker = makeBreaker();
    for (let i = 0; i < 20; i++) await failWith(breaker, new CallNotSentError('gemini', 'worker-shutdown'));
    expect(breaker.state.state).toBe('closed');
  });

  it('counts errors that are not ProviderErrors as failures', async () => {
    const breaker = makeBreaker();
    for (let i = 0; i < 5; i++) await failWith(breaker, new Error('a bug'));
    expect(breaker.state.state).toBe('open');
  });

  it('goes half-open after resetTimeoutMs; a successful trial closes it', async () => {
    const breaker = makeBreaker();
    for (let i = 0; i < 5; i++) await failWith(breaker, providerError('backoff'));
    expect(breaker.isOpen()).toBe(true);

    await waitFor(() => breaker.state.state === 'half-open', { timeoutMs: 3_000, intervalMs: 10, what: 'half-open' });
    expect(breaker.isOpen()).toBe(false);

    // While the one trial call runs (it starts once this process holds the fleet's trial lease),
    // others are still short-circuited.
    let finishTrial: ((value: string) => void) | undefined;
    const trial = breaker.fire(() => new Promise<string>((resolve) => (finishTrial = resolve)));
    expect(isBreakerOpenError(await breaker.fire(() => Promise.resolve('second')).catch((e: unknown) => e))).toBe(true);
    await waitFor(() => finishTrial !== undefined, { what: 'the trial call' });
    expect(breaker.isOpen()).toBe(true);
    expect(isBreakerOpenError(await breaker.fire(() => Promise.resolve('third')).catch((e: unknown) => e))).toBe(true);
    finishTrial!('trial');
    await expect(trial).resolves.toBe('trial');

    expect(breaker.state.state).toBe('closed');
    await expect(breaker.fire(() => Promise.resolve('again'))).resolves.toBe('again');
  });

  it('a failed trial opens it again', async () => {
    const breaker = makeBreaker();
    for (let i = 0; i < 5; i++) await failWith(breaker, providerError('backoff'));
    await waitFor(() => breaker.state.state === 'half-open', { timeoutMs: 3_000, intervalMs: 10, what: 'half-open' });
    await failWith(breaker, providerError('backoff'));
    expect(breaker.state.state).toBe('open');
    expect(breaker.isOpen()).toBe(true);
  });

  it('publishes every transition to Redis, readable with readBreakerStates', async () => {
    const breaker = makeBreaker();
    const other = makeBreaker({}, 'openai:gpt-4o-mini');
    expect(await readBreakerStates(redis, prefix)).toEqual({}); // nothing until a transition

    for (let i = 0; i < 5; i++) await failWith(breaker, providerError('backoff'));
    const opened = (await waitFor(async () => (await readBreakerStates(redis, prefix))[LINK], { what: 'open state in Redis' }))!;
    expect(opened).toMatchObject({ state: 'open', workerId: 'test-worker' });
    const local = breaker.state;
    if (local.state !== 'open' || opened.state !== 'open') throw new Error('expected open');
    expect(opened.since).toBe(local.since);
    expect(opened.retryAt).toBe(local.retryAt);
    expect(opened.updatedAt).toBeGreaterThanOrEqual(opened.since);

    await waitFor(async () => (await readBreakerStates(redis, prefix))[LINK]?.state === 'half-open', { what: 'half-open in Redis' });
    await breaker.fire(() => Promise.resolve('ok'));
    const closed = (await waitFor(
      async () => {
        const states = await readBreakerStates(redis, prefix);
        return states[LINK]?.state === 'closed' ? states : undefined;
      },
      { what: 'closed in Redis' },
    ))!;
    expect(closed[LINK]).not.toHaveProperty('retryAt');
    expect(Object.keys(closed)).toEqual([LINK]); // `other` never changed state
    expect(other.state.state).toBe('closed');
  });

  it('readBreakerStates skips entries it cannot parse', async () => {
    const key = breakerStatesKey(prefix);
    await redis.hset(key, 'good', JSON.stringify({ state: 'half-open', since: 1, updatedAt: 2, workerId: 'w' }));
    await redis.hset(key, 'not-json', '{');
    await redis.hset(key, 'open-without-retryAt', JSON.stringify({ state: 'open', since: 1, updatedAt: 2, workerId: 'w' }));
    await redis.hset(key, 'unknown-state', JSON.stringify({ state: 'ajar', since: 1, updatedAt: 2, workerId: 'w' }));
    expect(await readBreakerStates(redis, prefix)).toEqual({ good: { state: 'half-open', since: 1, updatedAt: 2, workerId: 'w' } });
  });

  it('a Redis failure while publishing is logged, never thrown into the call path', async () => {
    const broken = new Redis(redisServer.url, { lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 });
    const warn = vi.spyOn(logger, 'warn');
    const breaker = new ProviderBreaker({ link: LINK, redis: broken, prefix, logger, options: OPTIONS });
    breakers.push(breaker);
    for (let i = 0; i < 5; i++) await failWith(breaker, providerError('backoff'));
    expect(breaker.state.state).toBe('open');
    await waitFor(() => warn.mock.calls.some((args) => (args as unknown[])[0] === 'cannot publish provider breaker state'), { what: 'publish warning' });
    // Transitions are logged with the link and the states only.
    expect(warn).toHaveBeenCalledWith('provider breaker opened', expect.objectContaining({ link: LINK, from: 'closed', to: 'open' }));
    broken.disconnect();
  });

  it('uses the injected clock and a hostname:pid worker id by default', async () => {
    let clock = 1_000_000;
    const breaker = new ProviderBreaker({ link: LINK, redis, prefix, logger, options: { ...OPTIONS, resetTimeoutMs: 60_000 }, now: () => clock });
    breakers.push(breaker);
    expect(breaker.state).toEqual({ state: 'closed', since: 1_000_000 });
    clock = 2_000_000;
    for (let i = 0; i < 5; i++) await failWith(breaker, providerError('backoff'));
    expect(breaker.state).toEqual({ state: 'open', since: 2_000_000, retryAt: 2_060_000 });
    expect(breaker.isOpen()).toBe(true);
    clock = 2_060_000; // resetTimeout elapsed by the clock: callers may try the link again
    expect(breaker.isOpen()).toBe(false);
    const published = (await waitFor(async () => (await readBreakerStates(redis, prefix))[LINK], { what: 'published state' }))!;
    expect(published.workerId).toBe(`${hostname()}:${process.pid}`);
    expect(published.updatedAt).toBe(2_000_000);
  });
});
