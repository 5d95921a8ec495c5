import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { breakerFleetKey, createLogger, ProviderError } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { DEFAULT_BREAKER_OPTIONS, isBreakerOpenError, ProviderBreaker, type BreakerOptions } from '../src/providers/breaker.js';

// Several ProviderBreakers of one link, each on its own Redis connection: the workers of a fleet.
// The clock and every timer (opossum's, the half-open timer, the 1 s re-read) are fake; Redis and
// pub/sub are real, so the tests wait for Redis in real time without moving the fake clock.

const LINK = 'gemini:gemini-2.5-flash:default';
const OPTIONS: BreakerOptions = { ...DEFAULT_BREAKER_OPTIONS, volumeThreshold: 5, resetTimeoutMs: 2_000, rollingCountTimeoutMs: 10_000 };
const realSetTimeout = globalThis.setTimeout;
const realSleep = (ms: number) => new Promise((resolve) => realSetTimeout(resolve, ms));

/** Waits in real time (the fake clock stands still) until `check` holds. */
async function until(check: () => boolean, what: string, timeoutMs = 3_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await realSleep(5);
  }
}

const unavailable = () => new ProviderError('PROVIDER_UNAVAILABLE', 'test 503', { disposition: 'backoff', httpStatus: 503 });

async function failOnce(breaker: ProviderBreaker): Promise<unknown> {
  return breaker.fire(() => Promise.reject(unavailable())).catch((e: unknown) => e);
}

describe('fleet-wide provider breaker (one link, several processes)', () => {
  let redisServer: TestRedis;
  const connections: Redis[] = [];
  let prefix: string;
  const logger = createLogger({ service: 'fleet-breaker-test', level: 'error' });
  const breakers: ProviderBreaker[] = [];

  /** `count` workers, each with its own connection (and so its own subscriber and re-read timer). */
  function fleet(count: number, overrides: Partial<BreakerOptions> = {}): ProviderBreaker[] {
    return Array.from({ length: count }, (_, i) => {
      const breaker = new ProviderBreaker({ link: LINK, redis: connections[i]!, prefix, logger, options: { ...OPTIONS, ...overrides }, workerId: `w${i}` });
      breakers.push(breaker);
      return breaker;
    });
  }

  /** Opens the link from `breaker`'s own window (volumeThreshold failures) and waits until the fleet state says so. */
  async function trip(breaker: ProviderBreaker): Promise<void> {
    for (let i = 0; i < OPTIONS.volumeThreshold; i++) await failOnce(breaker);
    expect(breaker.state.state).toBe('open');
    let written: string | null = null;
    void (async () => {
      while (written !== 'open') written = await connections[5]!.hget(breakerFleetKey(prefix, LINK, 'state'), 'state');
    })();
    await until(() => written === 'open', 'the fleet state to open');
  }

  beforeAll(async () => {
    redisServer = await startTestRedis();
    for (let i = 0; i < 6; i++) connections.push(new Redis(redisServer.url));
    await Promise.all(connections.map((c) => c.ping()));
  });
  afterAll(async () => {
    await Promise.all(connections.map((c) => c.quit()));
    await redisServer?.stop();
  });
  beforeEach(() => {
    prefix = uniquePrefix('fbrk');
    vi.useFakeTimers({ toFake: ['Date', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
  });
  afterEach(() => {
    for (const breaker of breakers.splice(0)) breaker.shutdown();
    vi.useRealTimers();
    vi.restoreAllMocks();
  });

  it('an open in one process reaches another through pub/sub, with no time passing on the clock', async () => {
    const [a, b] = fleet(2);
    await realSleep(50); // both subscribed
    const started = Date.now();
    await trip(a!);
    await until(() => b!.isOpen(), 'the second process to see the link open');
    expect(Date.now() - started).toBeLessThan(1_000); // the fake clock never moved
    const stateA = a!.state;
    const stateB = b!.state;
    if (stateA.state !== 'open' || stateB.state !== 'open') throw new Error('expected open');
    expect(stateB.retryAt).toBe(stateA.retryAt);
    expect(stateB.since).toBe(stateA.since);
    // b short-circuits without calling
    const call = vi.fn(() => Promise.resolve('never'));
    expect(isBreakerOpenError(await b!.fire(call).catch((e: unknown) => e))).toBe(true);
    expect(call).not.toHaveBeenCalled();
  });

  it('a missed message is made up by the 1 s re-read', async () => {
    const [b] = fleet(1);
    await realSleep(50);
    const now = Date.now();
    // The fleet state written as a script would, but with no PUBLISH: as if b's subscriber was reconnecting.
    await connections[5]!.hset(breakerFleetKey(prefix, LINK, 'state'), { state: 'open', gen: 1, openedAt: now, retryAt: now + 2_000, updatedAt: now, workerId: 'elsewhere' });
    await realSleep(100);
    expect(b!.isOpen()).toBe(false);
    await vi.advanceTimersByTimeAsync(1_000);
    await until(() => b!.isOpen(), 'the re-read to bring the open state');
    expect(b!.state).toMatchObject({ state: 'open', since: now, retryAt: now + 2_000 });
  });

  it('counts failures fleet-wide: 5 processes failing once each open the link (volumeThreshold 5)', async () => {
    const workers = fleet(5);
    await realSleep(50);
    for (const worker of workers.slice(0, 4)) await failOnce(worker);
    await realSleep(100);
    expect(workers.every((w) => w.state.state === 'closed')).toBe(true);
    await failOnce(workers[4]!);
    await until(() => workers.every((w) => w.isOpen()), 'every process to see the link open');
  });

  it('half-open: exactly one of 5 processes gets the trial call; its success closes the link everywhere', async () => {
    const workers = fleet(5);
    await realSleep(50);
    await trip(workers[0]!);
    await until(() => workers.every((w) => w.isOpen()), 'every process to see the link open');

    await vi.advanceTimersByTimeAsync(OPTIONS.resetTimeoutMs);
    expect(workers.every((w) => w.state.state === 'half-open' && !w.isOpen())).toBe(true);
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const calls = vi.fn(async () => {
      await gate;
      return 'up again';
    });
    const fired = workers.map((w) => w.fire(calls).catch((e: unknown) => e));
    await until(() => calls.mock.calls.length === 1, 'the trial call');
    await realSleep(50);
    expect(calls).toHaveBeenCalledTimes(1);
    // While the trial runs the link is open for all five: the holder's own calls wait for it, the
    // others hold no lease and skip the link without asking Redis again.
    expect(workers.filter((w) => w.isOpen())).toHaveLength(5);

    release();
    const outcomes = await Promise.all(fired);
    expect(outcomes.filter((o) => o === 'up again')).toHaveLength(1);
    expect(outcomes.filter((o) => isBreakerOpenError(o))).toHaveLength(4);
    await until(() => workers.every((w) => w.state.state === 'closed'), 'every process to see the link closed');
    const served = await Promise.all(workers.map((w) => w.fire(() => Promise.resolve('ok'))));
    expect(served).toEqual(['ok', 'ok', 'ok', 'ok', 'ok']);
  });

  it('a failed trial re-opens the link everywhere with a new retryAt', async () => {
    const workers = fleet(4);
    await realSleep(50);
    await trip(workers[1]!);
    await until(() => workers.every((w) => w.isOpen()), 'every process to see the link open');
    const first = workers[0]!.state;
    if (first.state !== 'open') throw new Error('expected open');

    await vi.advanceTimersByTimeAsync(OPTIONS.resetTimeoutMs + 500);
    const trialAt = Date.now();
    const calls = vi.fn(() => Promise.reject(unavailable()));
    const outcomes = await Promise.all(workers.map((w) => w.fire(calls).catch((e: unknown) => e)));
    expect(calls).toHaveBeenCalledTimes(1);
    expect(outcomes.filter((o) => isBreakerOpenError(o))).toHaveLength(3);
    await until(
      () => workers.every((w) => { const s = w.state; return s.state === 'open' && s.retryAt === trialAt + OPTIONS.resetTimeoutMs; }),
      'every process to see the link re-opened',
    );
    expect(workers.every((w) => w.isOpen())).toBe(true);
    expect((workers[2]!.state as { retryAt: number }).retryAt).toBeGreaterThan(first.retryAt);
  });

  it('a closed link costs no Redis command per call', async () => {
    const [a] = fleet(1);
    await realSleep(50);
    const sent = vi.spyOn(connections[0]!, 'sendCommand');
    for (let i = 0; i < 100; i++) await a!.fire(() => Promise.resolve(i));
    expect(sent).not.toHaveBeenCalled();
  });
});
