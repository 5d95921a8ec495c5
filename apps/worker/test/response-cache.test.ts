import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { responseCacheKey, type PromptJobData } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { ResponseCache, dedupe, type CachedAnswer } from '../src/cache/response-cache.js';
import { promptData } from './helpers.js';

const LINK = { provider: 'gemini', model: 'gemini-2.5-flash' };
const IMAGE_A = 'a'.repeat(64);
const IMAGE_B = 'b'.repeat(64);

function answer(overrides: Partial<CachedAnswer> = {}): CachedAnswer {
  return {
    text: 'Queues decouple producers from consumers.',
    finishReason: 'STOP',
    usage: { inputTokens: 12, outputTokens: 7, thoughtsTokens: 3, cachedTokens: 0, totalTokens: 22 },
    provider: 'gemini',
    model: 'gemini-2.5-flash',
    costNanoUsd: 31_600,
    storedAt: Date.now(),
    ...overrides,
  };
}

/** The real client behind a Proxy that counts the commands the cache sends (mget, pipeline…). */
function counting(redis: Redis): { client: Redis; calls: string[] } {
  const calls: string[] = [];
  const client = new Proxy(redis, {
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (typeof value !== 'function' || typeof property !== 'string') return value;
      return (...args: unknown[]) => {
        calls.push(property);
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { client, calls };
}

describe('ResponseCache', () => {
  let server: TestRedis;
  let redis: Redis;
  let prefix: string;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    redis.disconnect();
    await server.stop();
  });
  beforeEach(() => {
    prefix = uniquePrefix('rc');
  });
  afterEach(async () => {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
  });

  const cache = (client: Redis = redis): ResponseCache => new ResponseCache(client, prefix, { defaultTtlSeconds: 86_400 });

  describe('cacheKey', () => {
    it('is the same for the same request with fields in another order', () => {
      const a = promptData({
        text: 'hello',
        systemInstruction: 'Be brief.',
        generationConfig: { temperature: 0.2, maxOutputTokens: 64, thinkingConfig: { thinkingBudget: 0, includeThoughts: false } },
      });
      // Same request, every object built in another key order (as another producer version might).
      const b = {
        generationConfig: { thinkingConfig: { includeThoughts: false, thinkingBudget: 0 }, maxOutputTokens: 64, temperature: 0.2 },
        systemInstruction: 'Be brief.',
        contents: [{ parts: [{ text: 'hello' }], role: 'user' }],
        model: a.model,
        tenant: a.tenant,
        enqueuedAt: a.enqueuedAt + 5_000,
        requestHash: 'different',
        kind: 'generate',
        v: 1,
      } as PromptJobData;
      const key = cache().cacheKey(LINK, a);
      expect(key).toMatch(/^[0-9a-f]{64}$/);
      expect(cache().cacheKey(LINK, b)).toBe(key);
    });

    it('differs when anything the model sees differs, or the link', () => {
      const base = promptData({ text: 'hello', generationConfig: { temperature: 0 } });
      const key = cache().cacheKey(LINK, base);
      const variants: PromptJobData[] = [
        promptData({ text: 'hello!', generationConfig: { temperature: 0 } }),
        promptData({ text: 'hello', generationConfig: { temperature: 0.1 } }),
        promptData({ text: 'hello', generationConfig: { temperature: 0 }, systemInstruction: 'x' }),
        promptData({ contents: [{ role: 'model', parts: [{ text: 'hello' }] }], generationConfig: { temperature: 0 } }),
      ];
      for (const variant of variants) expect(cache().cacheKey(LINK, variant)).not.toBe(key);
      expect(cache().cacheKey({ provider: 'openai', model: LINK.model }, base)).not.toBe(key);
      expect(cache().cacheKey({ provider: 'gemini', model: 'gemini-2.5-pro' }, base)).not.toBe(key);
      // The model is the link's (resolved from `$job` by the caller): a fallback link that calls
      // gemini-2.5-flash for a gemini-2.5-pro job answers the same request as a flash job.
      expect(cache().cacheKey(LINK, { ...base, model: 'gemini-2.5-pro' })).toBe(key);
    });

    it('counts images by their sha256 (MIME type and size included), not by anything else', () => {
      const withImage = (sha256: string): PromptJobData =>
        promptData({ contents: [{ role: 'user', parts: [{ text: 'describe' }, { blob: { mimeType: 'image/png', sha256, bytes: 1234 } }] }] });
      const key = cache().cacheKey(LINK, withImage(IMAGE_A));
      expect(cache().cacheKey(LINK, withImage(IMAGE_A))).toBe(key);
      expect(cache().cacheKey(LINK, withImage(IMAGE_B))).not.toBe(key);
    });

    it('treats an empty generationConfig as none, and omitted cache / cache: true / { ttlSeconds } alike', () => {
      const plain = cache().cacheKey(LINK, promptData({ text: 'x' }));
      expect(cache().cacheKey(LINK, promptData({ text: 'x', generationConfig: {} }))).toBe(plain);
      expect(cache().cacheKey(LINK, promptData({ text: 'x', cache: true }))).toBe(plain);
      expect(cache().cacheKey(LINK, promptData({ text: 'x', cache: { ttlSeconds: 60 } }))).toBe(plain);
    });

    it('is per tenant by default, and one key for every tenant with shareAcrossTenants', () => {
      const acme = promptData({ text: 'the same prompt', tenant: 'acme' });
      const globex = promptData({ text: 'the same prompt', tenant: 'globex' });
      expect(cache().cacheKey(LINK, globex)).not.toBe(cache().cacheKey(LINK, acme));
      const shared = new ResponseCache(redis, prefix, { defaultTtlSeconds: 86_400, shareAcrossTenants: true });
      expect(shared.cacheKey(LINK, globex)).toBe(shared.cacheKey(LINK, acme));
      // Scoped keys never meet shared ones: turning sharing off does not serve the shared entries.
      expect(shared.cacheKey(LINK, acme)).not.toBe(cache().cacheKey(LINK, acme));
    });

    it('is null when the job opts out with cache: false', () => {
      expect(cache().cacheKey(LINK, promptData({ cache: false }))).toBeNull();
    });
  });

  it('ttlFor: the job\'s ttlSeconds, else the default', () => {
    expect(cache().ttlFor(promptData({ cache: { ttlSeconds: 120 } }))).toBe(120);
    expect(cache().ttlFor(promptData({ cache: true }))).toBe(86_400);
    expect(cache().ttlFor(promptData({}))).toBe(86_400);
  });

  it('lookupAndClaim: answers and in-flight claims in ONE pipeline; a claim is exclusive until released, except to its own job', async () => {
    const { client, calls } = counting(redis);
    const rc = cache(client);
    const [k1, k2] = ['stored', 'not yet'].map((text) => rc.cacheKey(LINK, promptData({ text }))) as [string, string];
    await rc.store([{ key: k1, answer: answer({ text: 'one' }), ttlSeconds: 60 }]);
    calls.length = 0;

    const first = await rc.lookupAndClaim([k1, k2], [{ digest: k2, holder: 'job-a', holders: ['job-a'] }], 10_000);
    expect(first.answers.map((a) => a?.text ?? null)).toEqual(['one', null]);
    expect(first.claimed).toEqual([true]);
    expect(calls).toEqual(['pipeline']);
    // Someone else: taken. The same job again (its worker died mid-call): its own claim is its own.
    expect((await rc.lookupAndClaim([k2], [{ digest: k2, holder: 'job-b', holders: ['job-b'] }], 10_000)).claimed).toEqual([false]);
    expect((await rc.lookupAndClaim([k2], [{ digest: k2, holder: 'job-c', holders: ['job-c', 'job-a'] }], 10_000)).claimed).toEqual([true]);
    const pipeline = client.pipeline();
    rc.appendRelease(pipeline, [k2]);
    await pipeline.exec();
    expect((await rc.lookupAndClaim([k2], [{ digest: k2, holder: 'job-b', holders: ['job-b'] }], 10_000)).claimed).toEqual([true]);
  });

  it('stores with one pipeline and the TTL, then looks a batch up with ONE MGET', async () => {
    const { client, calls } = counting(redis);
    const rc = cache(client);
    const keys = ['first', 'second', 'third'].map((text) => rc.cacheKey(LINK, promptData({ text })));
    const [k1, k2, k3] = keys as [string, string, string];

    const summary = await rc.store([
      { key: k1, answer: answer({ text: 'one' }), ttlSeconds: 60 },
      { key: k2, answer: answer({ text: 'two', modelVersion: 'gemini-2.5-flash-001' }), ttlSeconds: 3_600 },
    ]);
    expect(summary).toEqual({ stored: 2, refused: 0 });
    expect(calls).toEqual(['pipeline']);

    const ttl1 = await redis.ttl(responseCacheKey(prefix, k1));
    const ttl2 = await redis.ttl(responseCacheKey(prefix, k2));
    expect(ttl1).toBeGreaterThan(55);
    expect(ttl1).toBeLessThanOrEqual(60);
    expect(ttl2).toBeGreaterThan(3_595);
    expect(ttl2).toBeLessThanOrEqual(3_600);

    calls.length = 0;
    const found = await rc.lookup([k1, null, k3, k2]);
    expect(calls).toEqual(['mget']);
    expect(found.map((hit) => hit?.text ?? null)).toEqual(['one', null, null, 'two']);
    expect(found[3]).toMatchObject({ modelVersion: 'gemini-2.5-flash-001', costNanoUsd: 31_600, usage: { thoughtsTokens: 3 } });
  });

  it('sends no command for a batch without any key, and treats unreadable entries as misses', async () => {
    const { client, calls } = counting(redis);
    const rc = cache(client);
    expect(await rc.lookup([null, null])).toEqual([null, null]);
    expect(await rc.store([])).toEqual({ stored: 0, refused: 0 });
    expect(calls).toEqual([]);

    const key = rc.cacheKey(LINK, promptData({ text: 'corrupt' }))!;
    await redis.set(responseCacheKey(prefix, key), '{"not":"an answer"}');
    const other = rc.cacheKey(LINK, promptData({ text: 'not json' }))!;
    await redis.set(responseCacheKey(prefix, other), 'not json');
    expect(await rc.lookup([key, other])).toEqual([null, null]);
  });

  it('expires entries after their TTL', async () => {
    const rc = cache();
    const key = rc.cacheKey(LINK, promptData({ text: 'short-lived' }))!;
    await rc.store([{ key, answer: answer(), ttlSeconds: 1 }]);
    expect((await rc.lookup([key]))[0]).not.toBeNull();
    await redis.pexpire(responseCacheKey(prefix, key), 1); // no sleeping through a whole second
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await rc.lookup([key]))[0]).toBeNull();
  });

  it('refuses blocked, unfinished and empty answers (safety net), storing the rest', async () => {
    const rc = cache();
    const entries = ['ok', 'safety', 'recitation', 'other', 'empty', 'max', 'embed'].map((text) => ({
      key: rc.cacheKey(LINK, promptData({ text }))!,
      ttlSeconds: 60,
    }));
    const answers: CachedAnswer[] = [
      answer(),
      answer({ finishReason: 'SAFETY' }),
      answer({ finishReason: 'RECITATION' }),
      answer({ finishReason: 'OTHER' }),
      answer({ text: '' }),
      answer({ finishReason: 'MAX_TOKENS', text: 'truncated…' }),
      answer({ text: '', embedding: [0.1, 0.2] }),
    ];
    const summary = await rc.store(entries.map((entry, index) => ({ ...entry, answer: answers[index]! })));
    expect(summary).toEqual({ stored: 3, refused: 4 });
    const found = await rc.lookup(entries.map((entry) => entry.key));
    expect(found.map((hit) => hit !== null)).toEqual([true, false, false, false, false, true, true]);
    expect(found[6]?.embedding).toEqual([0.1, 0.2]);
  });

  it('dedupe groups identical jobs of a batch: one leader per key (so per tenant), opted-out jobs alone', () => {
    const rc = cache();
    const jobs = [
      { id: 'j1', data: promptData({ text: 'same' }) },
      { id: 'j2', data: promptData({ text: 'other' }) },
      { id: 'j3', data: promptData({ text: 'same', tenant: 'beta' }) },
      { id: 'j4', data: promptData({ text: 'same', cache: false }) },
      { id: 'j5', data: promptData({ text: 'same', cache: false }) },
      { id: 'j6', data: promptData({ text: 'same', cache: { ttlSeconds: 30 } }) },
    ];
    const groups = dedupe(jobs, (job) => rc.cacheKey(LINK, job.data));
    expect(groups.map((group) => [group.leader.id, group.followers.map((job) => job.id)])).toEqual([
      ['j1', ['j6']],
      ['j2', []],
      // Another tenant's identical job is not served by acme's call.
      ['j3', []],
      ['j4', []],
      ['j5', []],
    ]);
    expect(groups[3]!.key).toBeNull();
    expect(groups[0]!.key).toBe(rc.cacheKey(LINK, jobs[0]!.data));
  });
});
