import { describe, expect, it, vi } from 'vitest';
import { Redis } from 'ioredis';
import { FleetLimiter, limiterKey, type LimitKey } from '../src/index.js';
import { uniquePrefix, waitFor, type TestRedis } from '../src/testing/index.js';
import { usePrivateRedis } from './private-redis.js';

const KEY: LimitKey = { provider: 'gemini', model: 'gemini-3.6-flash' };

describe('FleetLimiter (real Redis)', () => {
  let server: TestRedis;
  let redis: Redis;
  usePrivateRedis((started) => ({ server, redis } = started));

  /** Redis server time in ms: the clock the limiter uses. */
  async function serverNow(): Promise<number> {
    const [seconds, micros] = await redis.time();
    return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
  }

  it('grants up to rpm, then reports a wait within the window', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    const limits = { rpm: 3, tpm: 0 };
    for (let i = 0; i < 3; i++) expect((await limiter.reserve(KEY, limits, [10])).granted).toHaveLength(1);
    const refused = await limiter.reserve(KEY, limits, [10]);
    expect(refused.granted).toEqual([]);
    expect(refused.waitMs).toBeGreaterThan(0);
    expect(refused.waitMs).toBeLessThanOrEqual(60_000);
    expect(refused.pausedUntil).toBeUndefined();
  });

  it('binds on tokens with uneven estimates and grants the longest fitting prefix of a batch', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    const limits = { rpm: 100, tpm: 1000 };
    const first = await limiter.reserve(KEY, limits, [600, 300, 200, 50]);
    // 600 + 300 fit; 200 would make 1100; the 50 behind it is not granted either (prefix only).
    expect(first.granted.map((r) => r.estimatedTokens)).toEqual([600, 300]);
    expect(first.waitMs).toBeGreaterThan(0);
    expect(first.granted.every((r) => r.reservedAt === first.now)).toBe(true);
    expect(new Set(first.granted.map((r) => r.id)).size).toBe(2);
    // A later small request still fits in the remaining 100 tokens.
    expect((await limiter.reserve(KEY, limits, [100])).granted).toHaveLength(1);
    expect((await limiter.reserve(KEY, limits, [1])).granted).toHaveLength(0);
    expect(await limiter.state(KEY, limits)).toMatchObject({ requests: 3, tokens: 1000 });
  });

  it('computes waitMs from the oldest reservations that must leave the window', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix(), { windowMs: 10_000 });
    const limits = { rpm: 0, tpm: 1000 };
    const a = await limiter.reserve(KEY, limits, [400]);
    await waitFor(async () => (await serverNow()) >= a.now + 20, { intervalMs: 5 });
    const b = await limiter.reserve(KEY, limits, [500]);
    expect(b.now).toBeGreaterThan(a.now);
    // While they are in flight, their settle may free room soon: look again within a second.
    expect((await limiter.reserve(KEY, limits, [200])).waitMs).toBe(1_000);
    await limiter.settle([...a.granted, ...b.granted].map((reservation) => ({ reservation, actualTokens: reservation.estimatedTokens })));
    // 900 in the window, settled; a request of 200 needs the first reservation (400) gone, not the second.
    const refused = await limiter.reserve(KEY, limits, [200]);
    expect(refused.waitMs).toBe(a.now + 10_000 - refused.now);
    // A request of 700 needs both gone.
    const bigger = await limiter.reserve(KEY, limits, [700]);
    expect(bigger.waitMs).toBe(b.now + 10_000 - bigger.now);
  });

  it('lets the window roll: after waitMs (Redis time) the next reservation succeeds', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix(), { windowMs: 1000 });
    const limits = { rpm: 2, tpm: 0 };
    expect((await limiter.reserve(KEY, limits, [1, 1])).granted).toHaveLength(2);
    const refused = await limiter.reserve(KEY, limits, [1]);
    expect(refused.granted).toHaveLength(0);
    expect(refused.waitMs).toBeGreaterThan(0);
    expect(refused.waitMs).toBeLessThanOrEqual(1000);
    await waitFor(async () => (await serverNow()) >= refused.now + refused.waitMs, { intervalMs: 10, what: 'waitMs to pass' });
    const next = await limiter.reserve(KEY, limits, [1, 1, 1]);
    expect(next.granted).toHaveLength(2);
    expect(await limiter.state(KEY, limits)).toMatchObject({ requests: 2 });
  });

  it('settle replaces the estimate: a larger actual leaves less room, a smaller one frees room', async () => {
    const prefix = uniquePrefix();
    const limiter = new FleetLimiter(redis, prefix);
    const limits = { rpm: 0, tpm: 1000 };
    const [a, b] = (await limiter.reserve(KEY, limits, [300, 300])).granted;
    expect((await limiter.state(KEY, limits)).tokens).toBe(600);

    await limiter.settle([{ reservation: a!, actualTokens: 500 }]);
    expect((await limiter.state(KEY, limits)).tokens).toBe(800);
    expect((await limiter.reserve(KEY, limits, [300])).granted).toHaveLength(0); // 300 would have fit before

    await limiter.settle([{ reservation: b!, actualTokens: 100 }]);
    expect((await limiter.state(KEY, limits)).tokens).toBe(600);
    expect((await limiter.reserve(KEY, limits, [400])).granted).toHaveLength(1);
    expect((await limiter.state(KEY, limits)).tokens).toBe(1000);

    // The reservation keeps its timestamp: its score is unchanged by settle.
    const score = await redis.zscore(limiterKey(prefix, KEY, 'log'), a!.id);
    expect(Number(score)).toBe(a!.reservedAt);
  });

  it('settles several scopes in one call, and ignores reservations that left the window', async () => {
    const prefix = uniquePrefix();
    const limiter = new FleetLimiter(redis, prefix, { windowMs: 1000 });
    const other: LimitKey = { provider: 'gemini', model: 'gemini-3.5-flash', project: 'p2' };
    const limits = { rpm: 0, tpm: 0 };
    const [a] = (await limiter.reserve(KEY, limits, [10])).granted;
    const [b] = (await limiter.reserve(other, limits, [20])).granted;
    await limiter.settle([
      { reservation: a!, actualTokens: 11 },
      { reservation: b!, actualTokens: 22 },
    ]);
    expect((await limiter.state(KEY, limits)).tokens).toBe(11);
    expect((await limiter.state(other, limits)).tokens).toBe(22);

    await waitFor(async () => (await limiter.state(KEY, limits)).requests === 0, { what: 'window to roll' });
    await limiter.settle([{ reservation: a!, actualTokens: 5000 }]);
    expect(await limiter.state(KEY, limits)).toMatchObject({ requests: 0, tokens: 0 });
    expect(await redis.exists(limiterKey(prefix, KEY, 'est'), limiterKey(prefix, KEY, 'total'))).toBe(0);
  });

  it('release frees the requests and tokens at once', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    const limits = { rpm: 2, tpm: 1000 };
    const { granted } = await limiter.reserve(KEY, limits, [400, 400]);
    expect((await limiter.reserve(KEY, limits, [100])).granted).toHaveLength(0);
    await limiter.release(granted);
    expect(await limiter.state(KEY, limits)).toMatchObject({ requests: 0, tokens: 0 });
    expect((await limiter.reserve(KEY, limits, [500, 500])).granted).toHaveLength(2);
    await limiter.release(granted); // already released: a no-op
    expect(await limiter.state(KEY, limits)).toMatchObject({ requests: 2, tokens: 1000 });
  });

  it('pause blocks every caller with the remaining time and is never shortened', async () => {
    const prefix = uniquePrefix();
    const otherConnection = new Redis(server.url); // another worker
    const a = new FleetLimiter(redis, prefix);
    const b = new FleetLimiter(otherConnection, prefix);
    const limits = { rpm: 100, tpm: 0 };
    try {
      await a.pause(KEY, 30_000);
      await b.pause(KEY, 1_000); // shorter: ignored
      const refused = await b.reserve(KEY, limits, [1]);
      expect(refused.granted).toEqual([]);
      expect(refused.waitMs).toBeGreaterThan(29_000);
      expect(refused.waitMs).toBeLessThanOrEqual(30_000);
      expect(refused.pausedUntil).toBe(refused.now + refused.waitMs);
      expect((await a.reserve(KEY, limits, [1])).granted).toEqual([]);
      // Every reader reports the same end, to the millisecond (TIME + PTTL drifted by one).
      for (let i = 0; i < 20; i++) {
        expect((await a.state(KEY, limits)).pausedUntil).toBe(refused.pausedUntil);
        expect((await b.reserve(KEY, limits, [1])).pausedUntil).toBe(refused.pausedUntil);
      }
      // Other scopes are not paused.
      expect((await a.reserve({ ...KEY, project: 'other' }, limits, [1])).granted).toHaveLength(1);
      // A longer pause extends it.
      await b.pause(KEY, 60_000);
      expect((await a.reserve(KEY, limits, [1])).waitMs).toBeGreaterThan(59_000);
    } finally {
      otherConnection.disconnect();
    }
  });

  it('reads a pause written without its end (by an older worker) as now + its TTL', async () => {
    const prefix = uniquePrefix();
    const limiter = new FleetLimiter(redis, prefix);
    await redis.set(limiterKey(prefix, KEY, 'pause'), 'daily-quota', 'PX', 30_000);
    const refused = await limiter.reserve(KEY, { rpm: 10, tpm: 0 }, [1]);
    expect(refused.granted).toEqual([]);
    expect(refused.pauseReason).toBe('daily-quota');
    expect(refused.waitMs).toBeGreaterThan(29_000);
    expect(refused.pausedUntil).toBe(refused.now + refused.waitMs);
  });

  it('a pause ends by itself', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    await limiter.pause(KEY, 200);
    const limits = { rpm: 10, tpm: 0 };
    const refused = await limiter.reserve(KEY, limits, [1]);
    expect(refused.granted).toEqual([]);
    await waitFor(async () => (await serverNow()) >= refused.pausedUntil!, { intervalMs: 10 });
    expect((await limiter.reserve(KEY, limits, [1])).granted).toHaveLength(1);
    expect((await limiter.state(KEY, limits)).pausedUntil).toBeNull();
  });

  it('observeRateLimit learns a lower limit for the dimension closest to its limit, which expires', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix(), { learnedTtlMs: 1000 });
    const limits = { rpm: 100, tpm: 100_000 };
    expect((await limiter.reserve(KEY, limits, Array(20).fill(100))).granted).toHaveLength(20);
    // 20/100 of requests vs 2000/100000 of tokens: requests are closer to their limit.
    const observed = await limiter.observeRateLimit(KEY, limits);
    expect(observed).toMatchObject({ dimension: 'rpm', limit: 18 });
    const state = await limiter.state(KEY, limits);
    expect(state).toMatchObject({ requests: 20, rpmLimit: 18, tpmLimit: 100_000, learned: { rpm: 18 } });
    expect(state.learned!.tpm).toBeUndefined();
    expect(state.learned!.expiresAt).toBeGreaterThan(state.now);
    expect((await limiter.reserve(KEY, limits, [1])).granted).toHaveLength(0);

    // A second 429 at the same usage does not lower it again (many replicas report one burst).
    expect((await limiter.observeRateLimit(KEY, limits)).limit).toBe(18);

    await waitFor(async () => (await limiter.state(KEY, limits)).learned === undefined, { what: 'learned limit to expire' });
    expect(await limiter.state(KEY, limits)).toMatchObject({ rpmLimit: 100 });
    expect((await limiter.reserve(KEY, limits, [1])).granted).toHaveLength(1);
  });

  it('observeRateLimit learns tokens when they bind, with a floor', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix(), { minLearnedTokens: 500 });
    const limits = { rpm: 1000, tpm: 10_000 };
    await limiter.reserve(KEY, limits, [4000, 4000]);
    expect(await limiter.observeRateLimit(KEY, limits)).toMatchObject({ dimension: 'tpm', limit: 7200 });
    expect((await limiter.state(KEY, limits)).tpmLimit).toBe(7200);
    expect((await limiter.reserve(KEY, limits, [1])).granted).toHaveLength(0);

    const small = new FleetLimiter(redis, uniquePrefix(), { minLearnedTokens: 500 });
    await small.reserve(KEY, limits, [100]);
    expect(await small.observeRateLimit(KEY, limits)).toMatchObject({ dimension: 'tpm', limit: 500 });
  });

  it('observeRateLimit learns the limit a 429 reported, not a share of the current usage', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix(), { learnedTtlMs: 60_000 });
    const limits = { rpm: 1000, tpm: 40_000 };
    await limiter.reserve(KEY, limits, [5000]);
    // Early in a window: usage 5000 would teach 4500; the 429 says 30000.
    const observed = await limiter.observeRateLimit(KEY, limits, { dimension: 'tpm', limit: 30_000 });
    expect(observed).toMatchObject({ dimension: 'tpm', limit: 30_000 });
    const state = await limiter.state(KEY, limits);
    expect(state).toMatchObject({ tokens: 5000, tpmLimit: 30_000, rpmLimit: 1000, learned: { tpm: 30_000 } });
    expect(state.learned!.expiresAt - state.now).toBeGreaterThan(50_000);
    expect((await limiter.reserve(KEY, limits, [25_000])).granted).toHaveLength(1);
    expect((await limiter.reserve(KEY, limits, [1])).granted).toHaveLength(0);

    // Never above the configured limit; a reported limit replaces a lower usage-based guess.
    expect(await limiter.observeRateLimit(KEY, limits)).toMatchObject({ dimension: 'tpm', limit: 27_000 });
    expect(await limiter.observeRateLimit(KEY, limits, { dimension: 'tpm', limit: 1_000_000 })).toMatchObject({ limit: 40_000 });
    // Requests, with their floor of 1; and the token floor.
    expect(await limiter.observeRateLimit(KEY, limits, { dimension: 'rpm', limit: 15 })).toMatchObject({ dimension: 'rpm', limit: 15 });
    expect(await limiter.observeRateLimit(KEY, limits, { dimension: 'tpm', limit: 10 })).toMatchObject({ dimension: 'tpm', limit: 1000 });
    expect(await limiter.state(KEY, limits)).toMatchObject({ rpmLimit: 15, tpmLimit: 1000 });

    // An unlimited dimension learns the reported limit as is.
    const unlimited = new FleetLimiter(redis, uniquePrefix());
    expect(await unlimited.observeRateLimit(KEY, { rpm: 10, tpm: 0 }, { dimension: 'tpm', limit: 30_000 })).toMatchObject({ limit: 30_000 });
  });

  it('observeRateLimit without a usable report keeps the usage-based policy', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    const limits = { rpm: 1000, tpm: 40_000 };
    await limiter.reserve(KEY, limits, [5000]);
    expect(await limiter.observeRateLimit(KEY, limits, { dimension: 'tpm', limit: 0 })).toMatchObject({ dimension: 'tpm', limit: 4500 });
    const other = new FleetLimiter(redis, uniquePrefix());
    await other.reserve(KEY, limits, [5000]);
    expect(await other.observeRateLimit(KEY, limits, undefined)).toMatchObject({ dimension: 'tpm', limit: 4500 });
  });

  it('slow-starts while a limit is unknown: calls in flight double per round trip (at most per second), and a 429 halves them', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix(), { slowStartRequests: 4 });
    const unknown = { rpm: 0, tpm: 0 };
    const first = await limiter.reserve(KEY, unknown, Array(10).fill(100));
    expect(first.granted).toHaveLength(4);
    expect(first.slowStart).toBe(4);
    // Held back by the cap, not by the window: look again soon, when a call settles.
    expect(first.waitMs).toBe(200);
    // Served: each settled call grows the cap by 1, so the next round trip carries twice as many.
    await limiter.settle(first.granted.map((reservation) => ({ reservation, actualTokens: 100 })));
    const second = await limiter.reserve(KEY, unknown, Array(20).fill(100));
    expect(second.granted).toHaveLength(8);
    // ...but at most twice the cap of a second ago: fast calls must not race ahead of the first 429.
    await limiter.settle(second.granted.map((reservation) => ({ reservation, actualTokens: 100 })));
    expect((await limiter.state(KEY, unknown)).slowStart).toBe(8);
    const secondAgo = await serverNow();
    await waitFor(async () => (await serverNow()) >= secondAgo + 1_000, { intervalMs: 20 });
    const held = await limiter.reserve(KEY, unknown, Array(10).fill(100));
    await limiter.settle(held.granted.map((reservation) => ({ reservation, actualTokens: 100 })));
    const third = await limiter.reserve(KEY, unknown, Array(40).fill(100));
    expect(third.granted).toHaveLength(16);
    expect(await limiter.state(KEY, unknown)).toMatchObject({ requests: 36, slowStart: 16 });

    // A 429 that names the token limit: learned exactly, and the cap halves from the 16 in flight.
    await limiter.observeRateLimit(KEY, unknown, { dimension: 'tpm', limit: 3000 });
    const state = await limiter.state(KEY, unknown);
    expect(state).toMatchObject({ tpmLimit: 3000, learned: { tpm: 3000 }, slowStart: 8 });
    // Released calls are no longer in flight.
    await limiter.release(third.granted.slice(0, 10));
    expect((await limiter.reserve(KEY, unknown, Array(5).fill(1))).granted).toHaveLength(2);
  });

  it('does not slow-start when both limits are known, and grows the cap only while it is used', async () => {
    const known = new FleetLimiter(redis, uniquePrefix(), { slowStartRequests: 2 });
    expect((await known.reserve(KEY, { rpm: 100, tpm: 10_000 }, Array(10).fill(10))).granted).toHaveLength(10);
    const idle = new FleetLimiter(redis, uniquePrefix(), { slowStartRequests: 100 });
    const few = await idle.reserve(KEY, { rpm: 0, tpm: 0 }, [10, 10]);
    await idle.settle(few.granted.map((reservation) => ({ reservation, actualTokens: 10 })));
    // 2 in flight under a cap of 100: a trickle teaches nothing about the limit.
    expect((await idle.state(KEY, { rpm: 0, tpm: 0 })).slowStart).toBe(100);
  });

  it('keeps a reported limit while it binds, and lets a usage guess lapse', async () => {
    const prefix = uniquePrefix();
    const limiter = new FleetLimiter(redis, prefix, { learnedTtlMs: 300, reportedTtlMs: 600 });
    const limits = { rpm: 0, tpm: 0 };
    const learnedKey = limiterKey(prefix, KEY, 'learned');
    await limiter.observeRateLimit(KEY, limits, { dimension: 'rpm', limit: 2 });
    expect((await limiter.reserve(KEY, limits, [1, 1, 1])).granted).toHaveLength(2);
    // Refused for lack of room: the reported limit still binds, so its TTL starts again.
    const ttlBefore = await redis.pttl(learnedKey);
    await waitFor(async () => (await redis.pttl(learnedKey)) < ttlBefore - 100, { intervalMs: 20 });
    await limiter.reserve(KEY, limits, [1]);
    expect(await redis.pttl(learnedKey)).toBeGreaterThan(500);
  });

  it('says why a scope is paused: a per-minute 429 or the daily quota', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    const limits = { rpm: 10, tpm: 0 };
    await limiter.pause(KEY, 5_000, 'daily-quota');
    const refused = await limiter.reserve(KEY, limits, [1]);
    expect(refused).toMatchObject({ granted: [], pauseReason: 'daily-quota' });
    expect(refused.pausedUntil! - refused.now).toBeGreaterThan(4_000);
    expect(await limiter.state(KEY, limits)).toMatchObject({ pauseReason: 'daily-quota' });
    const other: LimitKey = { ...KEY, model: 'gemini-3.5-flash' };
    await limiter.pause(other, 5_000);
    expect(await limiter.reserve(other, limits, [1])).toMatchObject({ pauseReason: 'rate-limited' });
  });

  it('state() reports usage, limits and pause for the dashboard', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    const limits = { rpm: 60, tpm: 0 };
    expect(await limiter.state(KEY, limits)).toMatchObject({ requests: 0, tokens: 0, rpmLimit: 60, tpmLimit: 0, pausedUntil: null });
    await limiter.reserve(KEY, limits, [5, 7, 11]);
    const state = await limiter.state(KEY, limits);
    expect(state).toMatchObject({ requests: 3, tokens: 23, rpmLimit: 60, tpmLimit: 0, pausedUntil: null });
    expect(state.learned).toBeUndefined();
  });

  it('grants a single request larger than the whole TPM when the window is empty', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix(), { windowMs: 10_000 });
    const limits = { rpm: 10, tpm: 1000 };
    const huge = await limiter.reserve(KEY, limits, [5000, 1]);
    expect(huge.granted.map((r) => r.estimatedTokens)).toEqual([5000]);
    // It fills the window: once it has settled, the next one waits for it to leave, not forever.
    await limiter.settle([{ reservation: huge.granted[0]!, actualTokens: 5000 }]);
    const next = await limiter.reserve(KEY, limits, [1]);
    expect(next.waitMs).toBe(huge.now + 10_000 - next.now);
    const other = new FleetLimiter(redis, uniquePrefix(), { windowMs: 10_000 });
    const first = await other.reserve(KEY, limits, [10]);
    await other.settle([{ reservation: first.granted[0]!, actualTokens: 10 }]);
    const refused = await other.reserve(KEY, limits, [5000]);
    expect(refused.granted).toEqual([]);
    expect(refused.waitMs).toBe(first.now + 10_000 - refused.now); // until the window is empty
  });

  it('converts a local time to the Redis clock from the replies it has seen', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    const local = Date.now();
    // Before any reply: no offset known, local time as is.
    expect(limiter.toServerTime(local)).toBe(local);
    await limiter.reserve(KEY, { rpm: 10, tpm: 0 }, [1]);
    const before = await serverNow();
    const converted = limiter.toServerTime(Date.now());
    const after = await serverNow();
    expect(converted).toBeGreaterThanOrEqual(before - 5);
    expect(converted).toBeLessThanOrEqual(after + 5);
  });

  it('never dates a call earlier than the Redis clock, even from a reply a busy event loop read late', async () => {
    // The scripts loaded on the connection, so the reserve below goes out in one command.
    await new FleetLimiter(redis, uniquePrefix()).reserve(KEY, { rpm: 10, tpm: 0 }, [1]);
    const limiter = new FleetLimiter(redis, uniquePrefix());
    const reserving = limiter.reserve(KEY, { rpm: 10, tpm: 0 }, [1]);
    // The event loop is busy (a worker starting up): the first reply is read 300 ms after Redis sent it.
    const busyUntil = Date.now() + 300;
    while (Date.now() < busyUntil) {
      // blocked
    }
    await reserving;
    const before = await serverNow();
    // A call sent now is dated no earlier than the server time already read before it.
    expect(limiter.toServerTime(Date.now())).toBeGreaterThanOrEqual(before - 1);
  });

  it('uses Redis server time, not the client clock', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      vi.setSystemTime(new Date('2001-01-01T00:00:00Z'));
      const prefix = uniquePrefix();
      const limiter = new FleetLimiter(redis, prefix, { windowMs: 60_000 });
      const before = await serverNow();
      const result = await limiter.reserve(KEY, { rpm: 1, tpm: 0 }, [1]);
      const after = await serverNow();
      expect(result.now).toBeGreaterThanOrEqual(before);
      expect(result.now).toBeLessThanOrEqual(after);
      expect(result.granted[0]!.reservedAt).toBe(result.now);
      expect(Number(await redis.zscore(limiterKey(prefix, KEY, 'log'), result.granted[0]!.id))).toBe(result.now);
      // A client clock an hour ahead changes nothing: the window is still full.
      vi.setSystemTime(Date.now() + 3_600_000);
      expect((await limiter.reserve(KEY, { rpm: 1, tpm: 0 }, [1])).granted).toHaveLength(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it('puts every key of a scope under one hash tag, with TTLs of at least two windows', async () => {
    const prefix = uniquePrefix();
    const limiter = new FleetLimiter(redis, prefix, { windowMs: 5000 });
    const scope: LimitKey = { provider: 'gemini', model: 'gemini-3.6-flash', project: 'proj-a' };
    await limiter.reserve(scope, { rpm: 10, tpm: 0 }, [1]);
    await limiter.pause(scope, 1000);
    await limiter.observeRateLimit(scope, { rpm: 10, tpm: 0 });
    const keys = (await redis.keys(`${prefix}:*`)).sort();
    expect(keys).toEqual(
      ['est', 'learned', 'log', 'open', 'pause', 'total'].map((part) => `${prefix}:limits:{gemini:gemini-3.6-flash:proj-a}:${part}`),
    );
    for (const part of ['log', 'est', 'total'] as const) {
      const ttl = await redis.pttl(limiterKey(prefix, scope, part));
      expect(ttl).toBeGreaterThan(9000);
      expect(ttl).toBeLessThanOrEqual(10_000);
    }
  });

  it('rejects invalid input before touching Redis', async () => {
    const limiter = new FleetLimiter(redis, uniquePrefix());
    await expect(limiter.reserve(KEY, { rpm: -1, tpm: 0 }, [1])).rejects.toThrow(RangeError);
    await expect(limiter.reserve(KEY, { rpm: 1, tpm: 0 }, [Number.NaN])).rejects.toThrow(RangeError);
    expect(() => new FleetLimiter(redis, 'x', { windowMs: 0 })).toThrow(RangeError);
  });
});
