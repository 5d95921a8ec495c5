import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Job, Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { GoogleGenerativeAIAbortError, GoogleGenerativeAIFetchError, type ErrorDetails } from '@google/generative-ai';
import {
  BudgetGuard,
  createLogger,
  FleetLimiter,
  limiterKey,
  JobEndRecorder,
  promptFeatures,
  putBlobs,
  QueueName,
  readJobEvents,
  TokenEstimator,
  UsageLedger,
  usageObserver,
  type BudgetDecision,
  type Config,
  type JobEnd,
  type PromptJobData,
  type PromptJobResult,
  type TokenUsage,
} from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { ResponseCache } from '../src/cache/response-cache.js';
import type { BatchJob, Fates, JobEntry } from '../src/pipeline/batch.js';
import { admitBudgets, BUDGET_BUSY_RECHECK_MS, estimatedCost } from '../src/pipeline/budget-admit.js';
import { CACHE_PENDING_RECHECK_MS, followerFate, groupIdentical, lookUpCache, NO_CACHE } from '../src/pipeline/cache-stage.js';
import { callChain, type LimiterLedger } from '../src/pipeline/call-chain.js';
import type { JobFate } from '../src/pipeline/fate.js';
import { prepareBatch } from '../src/pipeline/prepare.js';
import { JobResults } from '../src/pipeline/results.js';
import { settleBatch } from '../src/pipeline/settle.js';
import { DEFAULT_BREAKER_OPTIONS, ProviderBreaker, type BreakerOptions } from '../src/providers/breaker.js';
import type { Link } from '../src/providers/chain.js';
import { CallLatencies } from '../src/providers/call-latencies.js';
import { UnnamedRateLimitBackoff } from '../src/providers/rate-limit.js';
import { classifyProviderError } from '../src/providers/gemini/classify.js';
import type { GenerateRequest, GenerateResult, Provider } from '../src/providers/provider.js';
import { MODEL, promptData, testConfig } from './helpers.js';

/**
 * Each stage of the batch path (pipeline/*.ts) called on its own, one branch per test, against a
 * private Redis with the real limiter, estimator, budget guard, response cache, usage ledger and
 * job-end recorder. BullMQ jobs are real Job objects of a real queue (never added: no stage reads
 * BullMQ's state). The only double is the provider behind each link: the stage under test is the
 * call stage, not the SDK (the adapters have their own tests against the emulator), so a scripted
 * Provider answers or throws the errors the Gemini adapter throws (SDK errors run through
 * classify.ts), behind a real ProviderBreaker.
 */

const FALLBACK_MODEL = 'gemini-2.5-flash-lite';
const USAGE: TokenUsage = { inputTokens: 11, outputTokens: 5, thoughtsTokens: 0, cachedTokens: 0, totalTokens: 16 };

/** What a scripted provider does for a prompt: answer, or throw this error. */
type Script = (text: string) => Error | undefined;

/** A test double of the provider seam: answers every prompt unless the script says to throw. */
class ScriptedProvider implements Provider {
  readonly calls: string[] = [];

  constructor(
    readonly name: string,
    private readonly script: Script = () => undefined,
  ) {}

  async generate(request: GenerateRequest): Promise<GenerateResult> {
    const first = request.contents[0]?.parts[0];
    const text = first && 'text' in first ? first.text : '';
    this.calls.push(text);
    const error = this.script(text);
    if (error) throw error;
    return { text: `answer to ${text}`, finishReason: 'STOP', usage: USAGE, provider: this.name, model: request.model };
  }
}

const RETRY_INFO = 'type.googleapis.com/google.rpc.RetryInfo';
const QUOTA_FAILURE = 'type.googleapis.com/google.rpc.QuotaFailure';

/** A Gemini HTTP error as the SDK throws it, classified as the adapter does. */
function httpError(status: number, details: ErrorDetails[] = []): Error {
  const message = `[GoogleGenerativeAI Error]: Error fetching from https://example.invalid: [${status} test] test answer`;
  return classifyProviderError(new GoogleGenerativeAIFetchError(message, status, 'test', details));
}
const rpm429 = (retrySeconds: number, limit: number) =>
  httpError(429, [
    { '@type': RETRY_INFO, retryDelay: `${retrySeconds}s` },
    { '@type': QUOTA_FAILURE, violations: [{ quotaId: 'GenerateRequestsPerMinutePerProjectPerModel', quotaValue: String(limit) }] },
  ]);
const rpd429 = () =>
  httpError(429, [
    { '@type': RETRY_INFO, retryDelay: '30s' },
    { '@type': QUOTA_FAILURE, violations: [{ quotaId: 'GenerateRequestsPerDayPerProjectPerModel-FreeTier', quotaValue: '250' }] },
  ]);
const timeoutError = () => classifyProviderError(new GoogleGenerativeAIAbortError('This operation was aborted'), { timeoutMs: 1_000 });

describe('pipeline stages, one branch at a time (real Redis)', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  const logger = createLogger({ service: 'stages-test', level: 'error' });
  const cleanups: (() => Promise<unknown> | void)[] = [];

  beforeAll(async () => {
    redisServer = await startTestRedis();
    redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  });
  afterAll(async () => {
    await redis?.quit();
    await redisServer?.stop();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A fresh prefix, config and the real collaborators of the stages. */
  function setup(tenants: Config['tenants'] = {}, cacheOptions: { shareAcrossTenants?: boolean } = {}) {
    const prefix = uniquePrefix('stg');
    const config = testConfig({ REDIS_URL: redisServer.url, REDIS_PREFIX: prefix, JOB_ATTEMPTS: '3' });
    config.tenants = tenants;
    const queue = new Queue(QueueName.Prompts, { connection: redis, prefix });
    cleanups.push(() => queue.close());
    const limiter = new FleetLimiter(redis, prefix, { windowMs: 60_000 });
    const estimator = new TokenEstimator(redis, prefix);
    const budgets = new BudgetGuard(redis, prefix, tenants, { reservationTtlMs: 30_000 });
    const cache = new ResponseCache(redis, prefix, { defaultTtlSeconds: 60, shareAcrossTenants: cacheOptions.shareAcrossTenants ?? false });
    const results = new JobResults({ config, logger });
    const ledger = new UsageLedger(redis, prefix);
    const ends: JobEnd[] = [];
    const recorder = new JobEndRecorder(redis, [{ name: 'capture', observe: (batch) => void ends.push(...batch) }, usageObserver(ledger)], logger);

    /** A real BullMQ Job (not added to the queue) as BullMQ hands it to the processor. */
    const entry = (data: PromptJobData, options: { id?: string; attemptsMade?: number; signal?: AbortSignal } = {}): JobEntry => {
      const job = new Job(queue, 'generate', data, { attempts: config.worker.attempts }, options.id ?? randomUUID());
      job.attemptsMade = options.attemptsMade ?? 0;
      return { job, token: 'lock-token', signal: options.signal, data };
    };

    /** A link with its own scripted provider behind a real breaker (closed, trips only when told). */
    const link = (model: string, provider: ScriptedProvider, options: Partial<BreakerOptions> & { rpm?: number } = {}): Link => {
      const id = `${provider.name}:${model}:default`;
      const { rpm = 1_000, ...breakerOptions } = options;
      const breaker = new ProviderBreaker({ link: id, redis, prefix, logger, options: { ...DEFAULT_BREAKER_OPTIONS, volumeThreshold: 100, resetTimeoutMs: 60_000, ...breakerOptions } });
      cleanups.push(() => breaker.shutdown());
      return { id, providerName: provider.name, model, limitKey: { provider: provider.name, model, project: 'default' }, limits: { rpm, tpm: 1_000_000 }, provider, breaker, rateLimitBackoff: new UnnamedRateLimitBackoff(), latencies: new CallLatencies() };
    };

    /** The prepare stage's batch: how every later stage receives its jobs. */
    const prepare = async (entries: JobEntry[], links: Link[]) => prepareBatch({ config, logger, redis, estimator }, entries, links);

    return { prefix, config, limiter, estimator, budgets, cache, results, ledger, ends, recorder, entry, link, prepare };
  }

  /** Opens a breaker the way traffic does: a 5xx through it (with volumeThreshold 1). */
  async function trip(link: Link): Promise<void> {
    await link.breaker.fire(() => Promise.reject(httpError(503))).catch(() => undefined);
    expect(link.breaker.isOpen()).toBe(true);
  }

  const failed = (fate: JobFate | undefined) => fate as JobFate & { kind: 'failed' };

  describe('prepare', () => {
    it('a job whose image blob expired fails alone with IMAGE_EXPIRED; the others get their request with the bytes', async () => {
      const s = setup();
      const bytes = Buffer.from('not really a png, but bytes');
      const [stored] = await putBlobs(redis, s.prefix, [{ mimeType: 'image/png', data: bytes }], 60);
      const missing = { ...stored!, sha256: 'f'.repeat(64) };
      const withImage = (blob: typeof stored) => promptData({ contents: [{ role: 'user', parts: [{ text: 'describe' }, { blob: blob! }] }] });
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const { batch, fates } = await s.prepare([s.entry(withImage(stored)), s.entry(withImage(missing))], links);

      const [kept, expired] = batch.jobs;
      expect(fates.has(kept!)).toBe(false);
      expect(kept!.request!.contents[0]!.parts[1]).toEqual({ inlineData: { mimeType: 'image/png', data: bytes.toString('base64') } });
      expect(fates.get(expired!)).toMatchObject({ kind: 'failed', code: 'IMAGE_EXPIRED', retryable: false, retry: false, latencyMs: 0 });
      expect(expired!.request).toBeUndefined();
    });

    it("a job whose generationConfig exceeds its model's limits fails with INVALID_JOB, the batch goes on", async () => {
      const s = setup();
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const { batch, fates } = await s.prepare([s.entry(promptData({ generationConfig: { maxOutputTokens: 70_000 } })), s.entry(promptData())], links);
      const fate = failed(fates.get(batch.jobs[0]!));
      expect(fate).toMatchObject({ kind: 'failed', code: 'INVALID_JOB', retry: false });
      expect(fate.message).toMatch(/^generationConfig\.maxOutputTokens must not exceed 65536/);
      expect(fates.has(batch.jobs[1]!)).toBe(false);
      expect(batch.jobs[1]!.request).toMatchObject({ model: MODEL });
      expect(batch).toMatchObject({ kind: 'generate', model: MODEL, links });
    });

    it("estimates from the fleet's calibration in Redis: the largest reservation over the chain's links", async () => {
      const s = setup();
      const data = promptData({ text: 'a prompt whose tokens the fleet has learned to be many more than the prior says' });
      const links = [s.link(MODEL, new ScriptedProvider('gemini')), s.link(FALLBACK_MODEL, new ScriptedProvider('gemini'))];
      const features = promptFeatures(data.model, data.contents);
      // Another worker recorded that the fallback's tokenizer counts three times the prior.
      const fleet = new TokenEstimator(redis, s.prefix);
      const prior = fleet.estimate(links[1]!.limitKey, features);
      await fleet.record(Array.from({ length: 40 }, () => ({ key: links[1]!.limitKey, features, predicted: prior.predicted, actual: Math.round(prior.predicted * 3) })));
      const learned = fleet.estimate(links[1]!.limitKey, features).reserve;
      expect(learned).toBeGreaterThan(prior.reserve);

      // This worker's estimator has never seen the scope: prepare loads it.
      const { batch } = await s.prepare([s.entry(data)], links);
      expect(batch.jobs[0]!.estimate).toBe(learned);
      expect(s.estimator.estimate(links[0]!.limitKey, features).reserve).toBe(prior.reserve);
      expect(batch.jobs[0]!.features).toEqual(features);
      expect(batch.jobs[0]!.promptSha256).toMatch(/^[0-9a-f]{64}$/);
    });
  });

  describe('cache-stage', () => {
    const answer = (provider: string, model: string, text: string, costNanoUsd: number) => ({ text, finishReason: 'STOP', usage: USAGE, provider, model, costNanoUsd, storedAt: Date.now() });

    it('a hit is served from the cache at cost 0, its saving the original cost; a fallback link’s answer counts too', async () => {
      const s = setup();
      const links = [s.link(MODEL, new ScriptedProvider('gemini')), s.link(FALLBACK_MODEL, new ScriptedProvider('gemini'))];
      const { batch } = await s.prepare([s.entry(promptData({ text: 'first' })), s.entry(promptData({ text: 'second' })), s.entry(promptData({ text: 'third' }))], links);
      const [first, second] = batch.jobs;
      const keyOf = (job: BatchJob, link: Link) => s.cache.cacheKey({ provider: link.providerName, model: link.model }, job.entry.data)!;
      await s.cache.store([
        { key: keyOf(first!, links[0]!), answer: answer('gemini', MODEL, 'cached first', 1_234), ttlSeconds: 60 },
        { key: keyOf(second!, links[1]!), answer: answer('gemini', FALLBACK_MODEL, 'cached second', 99), ttlSeconds: 60 },
      ]);
      const lookup = await lookUpCache(s.cache, s.results, batch.jobs, links, 5_000);

      expect(lookup.fates.get(first!)).toMatchObject({ kind: 'served', savedNanoUsd: 1_234, result: { text: 'cached first', cached: true, costNanoUsd: 0, costUsd: 0, model: MODEL } });
      expect(lookup.fates.get(second!)).toMatchObject({ kind: 'served', savedNanoUsd: 99, result: { text: 'cached second', cached: true, model: FALLBACK_MODEL } });
      // A miss is left for the next stages, and holds the in-flight claim of its request.
      expect(lookup.fates.has(batch.jobs[2]!)).toBe(false);
      expect(lookup.keys.get(batch.jobs[2]!)).toEqual(links.map((link) => keyOf(batch.jobs[2]!, link)));
      expect(lookup.claims).toContain(keyOf(batch.jobs[2]!, links[0]!));
    });

    it('an identical request claimed by another batch waits (cache-pending), and claims it once released', async () => {
      const s = setup();
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const data = promptData({ text: 'asked twice, at the same time' });
      const elsewhere = await s.prepare([s.entry(data)], links);
      const theirs = await lookUpCache(s.cache, s.results, elsewhere.batch.jobs, links, 5_000);
      expect(theirs.claims).toHaveLength(1);

      const ours = await s.prepare([s.entry(data)], links);
      const before = Date.now();
      const lookup = await lookUpCache(s.cache, s.results, ours.batch.jobs, links, 5_000);
      const fate = lookup.fates.get(ours.batch.jobs[0]!);
      expect(fate).toMatchObject({ kind: 'wait', reason: 'cache-pending' });
      expect((fate as JobFate & { kind: 'wait' }).untilMs).toBeGreaterThanOrEqual(before + CACHE_PENDING_RECHECK_MS);
      expect(lookup.claims).toEqual([]);

      // The other batch settles (releases its claim): the request is ours to call.
      const pipeline = redis.pipeline();
      s.cache.appendRelease(pipeline, theirs.claims);
      await pipeline.exec();
      const again = await lookUpCache(s.cache, s.results, ours.batch.jobs, links, 5_000);
      expect(again.fates.size).toBe(0);
      expect(again.claims).toEqual(theirs.claims);
    });

    it('cache: false → no key, no lookup, no claim, never pending', async () => {
      const s = setup();
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const data = promptData({ text: 'private', cache: false });
      const other = await s.prepare([s.entry(data)], links);
      await lookUpCache(s.cache, s.results, other.batch.jobs, links, 5_000);
      const { batch } = await s.prepare([s.entry(data)], links);
      const lookup = await lookUpCache(s.cache, s.results, batch.jobs, links, 5_000);
      expect(lookup.keys.get(batch.jobs[0]!)).toEqual([]);
      expect(lookup.fates.size).toBe(0);
      expect(lookup.claims).toEqual([]);
    });

    it('groupIdentical: identical requests behind one leader in batch order; different or keyless jobs alone', async () => {
      const s = setup();
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const same = promptData({ text: 'same question' });
      const { batch } = await s.prepare(
        [s.entry(same), s.entry(promptData({ text: 'another question' })), s.entry({ ...same }), s.entry({ ...same, cache: false }), s.entry({ ...same })],
        links,
      );
      const [a, b, c, d, e] = batch.jobs;
      const lookup = await lookUpCache(s.cache, s.results, batch.jobs, links, 5_000);
      expect(groupIdentical(batch.jobs, lookup)).toEqual([
        { leader: a, followers: [c, e] },
        { leader: b, followers: [] },
        { leader: d, followers: [] },
      ]);
    });

    describe('followerFate', () => {
      async function leaderAndFollower(followerAttemptsMade: number) {
        const s = setup();
        const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
        const data = promptData({ text: 'one call for two jobs' });
        const { batch } = await s.prepare([s.entry(data), s.entry(data, { attemptsMade: followerAttemptsMade })], links);
        return { s, follower: batch.jobs[1]! };
      }

      it("served → the leader's answer as a cache hit: cost 0, the leader's cost as its saving", async () => {
        const { s, follower } = await leaderAndFollower(0);
        const result: PromptJobResult = s.results.generated({ text: 'the answer', finishReason: 'STOP', usage: USAGE, provider: 'gemini', model: MODEL }, 120);
        expect(result.costNanoUsd).toBeGreaterThan(0);
        const fate = followerFate({ kind: 'served', result, link: 'gemini:x:default' }, follower, s.results);
        expect(fate).toEqual({ kind: 'served', result: expect.objectContaining({ text: 'the answer', cached: true, costNanoUsd: 0, latencyMs: 0, usage: USAGE }), savedNanoUsd: result.costNanoUsd });
      });

      it('wait → the same wait', async () => {
        const { s, follower } = await leaderAndFollower(0);
        const lead: JobFate = { kind: 'wait', untilMs: Date.now() + 5_000, reason: 'rate-limited', fields: { link: 'l' } };
        expect(followerFate(lead, follower, s.results)).toEqual(lead);
      });

      it("failed → the same failure, retried on the follower's own attempts", async () => {
        const lead = { kind: 'failed', code: 'PROVIDER_UNAVAILABLE', message: '503', retryable: true, latencyMs: 40, link: 'l' } as const;
        // The leader could retry, but the follower is on its last attempt.
        const last = await leaderAndFollower(2);
        expect(followerFate({ ...lead, retry: true }, last.follower, last.s.results)).toEqual({ ...lead, retry: false });
        // The leader is on its last attempt, the follower on its first.
        const fresh = await leaderAndFollower(0);
        expect(followerFate({ ...lead, retry: false }, fresh.follower, fresh.s.results)).toEqual({ ...lead, retry: true });
        // What is not retryable is not retried, whatever the attempts.
        expect(followerFate({ ...lead, code: 'PROVIDER_BAD_REQUEST', retryable: false, retry: false }, fresh.follower, fresh.s.results)).toMatchObject({ retry: false });
      });

      it('cancelled or handed back → the leader made no call for it: it looks again shortly (cache-pending)', async () => {
        const { s, follower } = await leaderAndFollower(0);
        const before = Date.now();
        for (const lead of [{ kind: 'cancelled', latencyMs: 3 }, { kind: 'hand-back' }] as const) {
          const fate = followerFate(lead, follower, s.results) as JobFate & { kind: 'wait' };
          expect(fate).toMatchObject({ kind: 'wait', reason: 'cache-pending' });
          expect(fate.untilMs).toBeGreaterThanOrEqual(before + CACHE_PENDING_RECHECK_MS);
        }
      });
    });
  });

  describe('budget-admit', () => {
    const small = (tenant: string, text = 'a small job') => promptData({ tenant, text, generationConfig: { maxOutputTokens: 100 } });

    /** Spends (settled) or holds (open reservation) an amount of the tenant's budget. */
    async function use(budgets: BudgetGuard, tenant: string, nanoUsd: number, settle: boolean): Promise<void> {
      const [decision] = await budgets.reserve([{ tenant, amountNanoUsd: nanoUsd }]);
      if (!decision?.ok) throw new Error('could not use the budget');
      if (settle) await budgets.settle([{ reservation: decision.reservation, actualNanoUsd: nanoUsd }]);
    }

    async function admit(s: ReturnType<typeof setup>, entries: JobEntry[], links: Link[]) {
      const { batch } = await s.prepare(entries, links);
      const lookup = await lookUpCache(s.cache, s.results, batch.jobs, links, 5_000);
      const admission = await admitBudgets({ config: s.config, logger, budgets: s.budgets }, groupIdentical(batch.jobs, lookup), links);
      cleanups.push(() => admission.stopRenewal());
      return { batch, admission };
    }

    it('within budget → one reservation of the estimated cost, held in Redis', async () => {
      const s = setup({ acme: { dailyUsd: 1, onExceeded: 'fail' } });
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const { batch, admission } = await admit(s, [s.entry(small('acme'))], links);
      const job = batch.jobs[0]!;
      const amount = estimatedCost({ config: s.config }, job, links);
      expect(amount).toBeGreaterThan(0);
      expect(admission.reservations.get(job)).toMatchObject({ tenant: 'acme', amountNanoUsd: amount, tracked: true });
      expect(admission.fates.size).toBe(0);
      expect(admission.leaders.size).toBe(0);
      expect((await s.budgets.remaining('acme')).daily).toMatchObject({ reservedNanoUsd: amount, spentNanoUsd: 0 });
    });

    it("over a spent budget with onExceeded 'fail' → failed BUDGET_EXCEEDED, not retried, nothing reserved", async () => {
      const s = setup({ acme: { dailyUsd: 0.01, onExceeded: 'fail' } });
      await use(s.budgets, 'acme', 9_990_000, true);
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const { batch, admission } = await admit(s, [s.entry(small('acme'))], links);
      const fate = failed(admission.fates.get(batch.jobs[0]!));
      expect(fate).toMatchObject({ kind: 'failed', code: 'BUDGET_EXCEEDED', retryable: false, retry: false });
      expect(fate.message).toMatch(/^The tenant's daily budget is spent: \$0\.00999 spent/);
      expect(admission.reservations.size).toBe(0);
      expect((await s.budgets.remaining('acme')).daily!.reservedNanoUsd).toBe(0);
    });

    it('a job that costs more than the whole budget fails at once, whatever the policy', async () => {
      const s = setup({ acme: { dailyUsd: 0.000001, onExceeded: 'wait' } });
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const { batch, admission } = await admit(s, [s.entry(small('acme'))], links);
      expect(failed(admission.fates.get(batch.jobs[0]!)).message).toMatch(/is more than the tenant's whole daily budget/);
    });

    it("over a spent budget with onExceeded 'wait' → wait (budget) until the next UTC day, with the figures", async () => {
      const s = setup({ acme: { dailyUsd: 0.01, onExceeded: 'wait' } });
      await use(s.budgets, 'acme', 9_990_000, true);
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const { batch, admission } = await admit(s, [s.entry(small('acme'))], links);
      const nextDay = new Date();
      nextDay.setUTCHours(24, 0, 0, 0);
      expect(admission.fates.get(batch.jobs[0]!)).toEqual({
        kind: 'wait',
        untilMs: nextDay.getTime(),
        reason: 'budget',
        fields: { scope: 'daily', spentUsd: 0.00999, reservedUsd: 0, limitUsd: 0.01 },
      });
    });

    it('room only once the reservations in flight settle → wait briefly (budget-busy), even with onExceeded fail', async () => {
      const s = setup({ acme: { dailyUsd: 0.01, onExceeded: 'fail' } });
      await use(s.budgets, 'acme', 9_990_000, false);
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const before = Date.now();
      const { batch, admission } = await admit(s, [s.entry(small('acme'))], links);
      const fate = admission.fates.get(batch.jobs[0]!) as JobFate & { kind: 'wait' };
      expect(fate).toMatchObject({ kind: 'wait', reason: 'budget-busy', fields: { reservedUsd: 0.00999, spentUsd: 0 } });
      expect(fate.untilMs).toBeGreaterThanOrEqual(before + BUDGET_BUSY_RECHECK_MS);
      expect(fate.untilMs).toBeLessThanOrEqual(Date.now() + 2 * BUDGET_BUSY_RECHECK_MS);
    });

    it('an identical group: one reservation per tenant, the first job that got budget leads the others', async () => {
      // Shared across tenants, so one call may answer several tenants' identical jobs.
      const s = setup({ broke: { dailyUsd: 0.000001, onExceeded: 'fail' }, acme: { dailyUsd: 1, onExceeded: 'fail' } }, { shareAcrossTenants: true });
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const text = 'the same question from two tenants';
      const { batch, admission } = await admit(s, [s.entry(small('broke', text)), s.entry(small('acme', text)), s.entry(small('acme', text))], links);
      const [broke, acme1, acme2] = batch.jobs;
      // broke is refused, but acme's first job leads: the group is served for both tenants.
      expect([...admission.reservations.keys()]).toEqual([acme1]);
      expect(admission.leaders).toEqual(
        new Map([
          [broke, acme1],
          [acme2, acme1],
        ]),
      );
      expect(admission.fates.size).toBe(0);
      const amount = admission.reservations.get(acme1!)!.amountNanoUsd;
      expect((await s.budgets.remaining('acme')).daily!.reservedNanoUsd).toBe(amount);
      expect((await s.budgets.remaining('broke')).daily!.reservedNanoUsd).toBe(0);
    });

    it('a group where nobody may spend: each job gets its own tenant’s refusal', async () => {
      const s = setup({ failer: { dailyUsd: 0.000001, onExceeded: 'fail' }, waiter: { dailyUsd: 0.01, onExceeded: 'wait' } }, { shareAcrossTenants: true });
      await use(s.budgets, 'waiter', 9_990_000, true);
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const text = 'nobody can pay for this';
      const { batch, admission } = await admit(s, [s.entry(small('failer', text)), s.entry(small('waiter', text))], links);
      expect(admission.reservations.size).toBe(0);
      expect(admission.leaders.size).toBe(0);
      expect(admission.fates.get(batch.jobs[0]!)).toMatchObject({ kind: 'failed', code: 'BUDGET_EXCEEDED' });
      expect(admission.fates.get(batch.jobs[1]!)).toMatchObject({ kind: 'wait', reason: 'budget' });
    });
  });

  describe('call-chain', () => {
    async function call(s: ReturnType<typeof setup>, entries: JobEntry[], links: Link[]) {
      const { batch } = await s.prepare(entries, links);
      const called = await callChain({ logger, limiter: s.limiter, estimator: s.estimator, results: s.results }, batch, batch.jobs);
      return { batch, ...called };
    }
    /** What settle.ts does with the call stage's ledger. */
    async function applyLedger(s: ReturnType<typeof setup>, ledger: LimiterLedger): Promise<void> {
      await Promise.all([s.limiter.settle(ledger.settle), s.limiter.release(ledger.release)]);
    }

    it('served: the priced result, the reservation settled at the tokens the provider counted, a calibration sample', async () => {
      const s = setup();
      const provider = new ScriptedProvider('gemini');
      const links = [s.link(MODEL, provider)];
      const { batch, fates, ledger } = await call(s, [s.entry(promptData({ text: 'hello' }))], links);
      const job = batch.jobs[0]!;
      expect(fates.get(job)).toMatchObject({ kind: 'served', link: links[0]!.id, result: { text: 'answer to hello', provider: 'gemini', model: MODEL, cached: false, usage: USAGE } });
      expect((fates.get(job) as JobFate & { kind: 'served' }).result.costNanoUsd).toBeGreaterThan(0);
      expect(provider.calls).toEqual(['hello']);
      expect(ledger.release).toEqual([]);
      expect(ledger.settle).toEqual([expect.objectContaining({ actualTokens: USAGE.inputTokens, sentAt: expect.any(Number) })]);
      expect(ledger.samples).toEqual([expect.objectContaining({ key: links[0]!.limitKey, actual: USAGE.inputTokens })]);
      await applyLedger(s, ledger);
      expect(await s.limiter.state(links[0]!.limitKey, links[0]!.limits)).toMatchObject({ requests: 1, tokens: USAGE.inputTokens });
    });

    it('a timeout keeps its reservation in the limiter window, an HTTP 500 releases it', async () => {
      const s = setup();
      const provider = new ScriptedProvider('gemini', (text) => (text.startsWith('slow') ? timeoutError() : text.startsWith('broken') ? httpError(500) : undefined));
      const links = [s.link(MODEL, provider)];
      const { batch, fates, ledger } = await call(s, [s.entry(promptData({ text: 'slow' })), s.entry(promptData({ text: 'broken, and with a much longer prompt than the other' }))], links);
      const [slow, broken] = batch.jobs;
      // Both attempts fail and retry (3 attempts): the link stays closed.
      expect(fates.get(slow!)).toMatchObject({ kind: 'failed', code: 'PROVIDER_TIMEOUT', retry: true, link: links[0]!.id });
      expect(fates.get(broken!)).toMatchObject({ kind: 'failed', code: 'PROVIDER_UNAVAILABLE', retry: true, link: links[0]!.id });
      const key = links[0]!.limitKey;
      const reservedFor = (job: BatchJob) => s.estimator.estimate(key, job.features).reserve;
      expect(reservedFor(slow!)).not.toBe(reservedFor(broken!));
      expect(await s.limiter.state(key, links[0]!.limits)).toMatchObject({ requests: 2, tokens: reservedFor(slow!) + reservedFor(broken!) });

      await applyLedger(s, ledger);
      // The timed-out request may have reached Gemini and counted: it stays, at its estimate.
      expect(await s.limiter.state(key, links[0]!.limits)).toMatchObject({ requests: 1, tokens: reservedFor(slow!) });
      expect(ledger.samples).toEqual([]);
    });

    it('a per-minute 429 → wait (rate-limited), the model paused fleet-wide, the reported limit learned, the reservation released', async () => {
      const s = setup();
      const links = [s.link(MODEL, new ScriptedProvider('gemini', () => rpm429(2, 7)))];
      const before = Date.now();
      const { batch, fates, ledger } = await call(s, [s.entry(promptData())], links);
      const fate = fates.get(batch.jobs[0]!) as JobFate & { kind: 'wait' };
      expect(fate).toMatchObject({ kind: 'wait', reason: 'rate-limited', fields: { link: links[0]!.id, code: 'PROVIDER_RATE_LIMITED' } });
      expect(fate.untilMs).toBeGreaterThanOrEqual(before + 2_000);
      expect(ledger.release).toHaveLength(1);

      const { limitKey, limits } = links[0]!;
      const state = await s.limiter.state(limitKey, limits);
      expect(state).toMatchObject({ pauseReason: 'rate-limited', learned: { rpm: 7 } });
      expect(state.pausedUntil! - state.now).toBeGreaterThan(1_000);
      // Fleet-wide: another worker's reservation for the model is refused until the pause ends.
      const other = await new FleetLimiter(redis, s.prefix, { windowMs: 60_000 }).reserve(limitKey, limits, [10]);
      expect(other).toMatchObject({ granted: [], pauseReason: 'rate-limited' });
    });

    it('a 429 that names no delay (Dynamic Shared Quota) → 1 s, then 2 s and 4 s while they come in a row; a served call starts again at 1 s', async () => {
      const s = setup();
      let answer429 = true;
      const links = [s.link(MODEL, new ScriptedProvider('gemini', () => (answer429 ? httpError(429) : undefined)))];
      const { limitKey, limits } = links[0]!;
      /** One call round; the fleet pause and the limit learned in the round before are lifted first, so the call goes out. */
      const round = async (text: string) => {
        await redis.del(limiterKey(s.prefix, limitKey, 'pause'), limiterKey(s.prefix, limitKey, 'learned'));
        const before = Date.now();
        const { batch, fates, ledger } = await call(s, [s.entry(promptData({ text }))], links);
        const after = Date.now();
        await applyLedger(s, ledger); // the 429's reservation leaves the window
        return { fate: fates.get(batch.jobs[0]!)!, before, after };
      };
      for (const expected of [1_000, 2_000, 4_000, 1_000]) {
        const { fate, before, after } = await round(`shared pool ${expected}`);
        expect(fate).toMatchObject({ kind: 'wait', reason: 'rate-limited', fields: { code: 'PROVIDER_RATE_LIMITED' } });
        const { untilMs } = fate as JobFate & { kind: 'wait' };
        expect(untilMs).toBeGreaterThanOrEqual(before + expected);
        expect(untilMs).toBeLessThanOrEqual(after + expected);
        // The fleet pauses as long as the job waits, not a fixed 10 s.
        const state = await s.limiter.state(limitKey, limits);
        expect(state.pauseReason).toBe('rate-limited');
        expect(state.pausedUntil! - state.now).toBeLessThanOrEqual(expected);
        if (expected === 4_000) {
          answer429 = false;
          expect((await round('served')).fate).toMatchObject({ kind: 'served' });
          answer429 = true;
        }
      }
    });

    it("a requests-per-day 429 → the next link serves in the same attempt; the first link paused until its reset", async () => {
      const s = setup();
      const first = new ScriptedProvider('gemini', () => rpd429());
      const fallback = new ScriptedProvider('backup');
      const links = [s.link(MODEL, first), s.link(FALLBACK_MODEL, fallback)];
      const { batch, fates, ledger } = await call(s, [s.entry(promptData({ text: 'daily' }))], links);
      expect(fates.get(batch.jobs[0]!)).toMatchObject({ kind: 'served', link: links[1]!.id, result: { provider: 'backup', model: FALLBACK_MODEL } });
      expect([first.calls, fallback.calls]).toEqual([['daily'], ['daily']]);
      expect(ledger.release.map((r) => r.key)).toEqual([links[0]!.limitKey]);
      expect(ledger.settle.map((item) => item.reservation.key)).toEqual([links[1]!.limitKey]);
      expect(await s.limiter.state(links[0]!.limitKey, links[0]!.limits)).toMatchObject({ pauseReason: 'daily-quota' });
    });

    it('an open breaker → straight to the next link: no reservation, no call on the open one', async () => {
      const s = setup();
      const first = new ScriptedProvider('gemini');
      const fallback = new ScriptedProvider('backup');
      const links = [s.link(MODEL, first, { volumeThreshold: 1 }), s.link(FALLBACK_MODEL, fallback)];
      await trip(links[0]!);
      const { batch, fates } = await call(s, [s.entry(promptData({ text: 'around the outage' }))], links);
      expect(fates.get(batch.jobs[0]!)).toMatchObject({ kind: 'served', link: links[1]!.id });
      expect(first.calls).toEqual([]);
      expect(await s.limiter.state(links[0]!.limitKey, links[0]!.limits)).toMatchObject({ requests: 0 });
    });

    it('a 5xx that opens the link’s breaker → the next link serves the job in the same attempt', async () => {
      const s = setup();
      const first = new ScriptedProvider('gemini', () => httpError(503));
      const fallback = new ScriptedProvider('backup');
      const links = [s.link(MODEL, first, { volumeThreshold: 1 }), s.link(FALLBACK_MODEL, fallback)];
      const { batch, fates, ledger } = await call(s, [s.entry(promptData({ text: 'breaks the first link' }))], links);
      expect(links[0]!.breaker.isOpen()).toBe(true);
      expect(fates.get(batch.jobs[0]!)).toMatchObject({ kind: 'served', link: links[1]!.id });
      expect(first.calls).toHaveLength(1);
      expect(ledger.release.map((r) => r.key)).toEqual([links[0]!.limitKey]);
    });

    it('every link down → wait (breakers-open) until the earliest breaker may try again, no call', async () => {
      const s = setup();
      const providers = [new ScriptedProvider('gemini'), new ScriptedProvider('backup')];
      const links = [s.link(MODEL, providers[0]!, { volumeThreshold: 1, resetTimeoutMs: 60_000 }), s.link(FALLBACK_MODEL, providers[1]!, { volumeThreshold: 1, resetTimeoutMs: 5_000 })];
      await trip(links[0]!);
      await trip(links[1]!);
      const { batch, fates } = await call(s, [s.entry(promptData())], links);
      expect(fates.get(batch.jobs[0]!)).toEqual({
        kind: 'wait',
        untilMs: (links[1]!.breaker.state as { retryAt: number }).retryAt,
        reason: 'breakers-open',
        fields: { links: links.map((link) => link.id) },
      });
      expect(providers.map((p) => p.calls)).toEqual([[], []]);
    });

    it('no room in the window → the rest wait (quota), without spilling to the next link', async () => {
      const s = setup();
      const fallback = new ScriptedProvider('backup');
      const links = [s.link(MODEL, new ScriptedProvider('gemini'), { rpm: 1 }), s.link(FALLBACK_MODEL, fallback)];
      const { batch, fates } = await call(s, [s.entry(promptData({ text: 'fits' })), s.entry(promptData({ text: 'does not fit' }))], links);
      expect(fates.get(batch.jobs[0]!)).toMatchObject({ kind: 'served', link: links[0]!.id });
      expect(fates.get(batch.jobs[1]!)).toMatchObject({ kind: 'wait', reason: 'quota', fields: { link: links[0]!.id } });
      expect(fallback.calls).toEqual([]);
    });

    it('a job aborted before its call (cancelled) makes no call and reserves nothing', async () => {
      const s = setup();
      const provider = new ScriptedProvider('gemini');
      const links = [s.link(MODEL, provider)];
      const controller = new AbortController();
      controller.abort('cancelled by the caller');
      const { batch, fates, ledger } = await call(s, [s.entry(promptData(), { signal: controller.signal })], links);
      expect(fates.get(batch.jobs[0]!)).toEqual({ kind: 'cancelled', latencyMs: 0 });
      expect(provider.calls).toEqual([]);
      expect(ledger).toEqual({ settle: [], release: [], samples: [] });
      expect(await s.limiter.state(links[0]!.limitKey, links[0]!.limits)).toMatchObject({ requests: 0 });
    });
  });

  describe('settle', () => {
    it('records one end per final fate through the recorder, events for retries and waits, nothing for a hand-back; budget settled at the actual cost', async () => {
      const s = setup({ acme: { dailyUsd: 1, onExceeded: 'fail' } });
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const names = ['served', 'hit', 'failed', 'cancelled', 'retrying', 'waiting', 'handed-back'] as const;
      const { batch } = await s.prepare(
        names.map((name) => s.entry(promptData({ text: `the ${name} job` }), { id: name })),
        links,
      );
      const job = Object.fromEntries(names.map((name, i) => [name, batch.jobs[i]!])) as Record<(typeof names)[number], BatchJob>;
      const lookup = await lookUpCache(s.cache, s.results, batch.jobs, links, 5_000);

      // What the earlier stages decided (settle's input).
      const served = s.results.generated({ text: 'fresh answer', finishReason: 'STOP', usage: USAGE, provider: 'gemini', model: MODEL }, 80);
      const hit = s.results.cached({ text: 'old answer', finishReason: 'STOP', usage: USAGE, provider: 'gemini', model: MODEL, costNanoUsd: 500, storedAt: Date.now() });
      const failure = { kind: 'failed', code: 'PROVIDER_BAD_REQUEST', message: 'Gemini answered 400', retryable: false, latencyMs: 9, link: links[0]!.id } as const;
      const fates: Fates = new Map<BatchJob, JobFate>([
        [job.served, { kind: 'served', result: served, link: links[0]!.id }],
        [job.hit, { kind: 'served', result: hit, savedNanoUsd: 500 }],
        [job.failed, { ...failure, retry: false }],
        [job.cancelled, { kind: 'cancelled', latencyMs: 4 }],
        [job.retrying, { ...failure, code: 'PROVIDER_UNAVAILABLE', retryable: true, retry: true }],
        [job.waiting, { kind: 'wait', untilMs: Date.now() + 3_600_000, reason: 'daily-quota' }],
        [job['handed-back'], { kind: 'hand-back' }],
      ]);
      const decisions = await s.budgets.reserve([job.served, job.failed].map(() => ({ tenant: 'acme', amountNanoUsd: 2_000_000 })));
      const reservations = new Map([job.served, job.failed].map((j, i) => [j, (decisions[i] as BudgetDecision & { ok: true }).reservation]));
      const reserved = await s.limiter.reserve(links[0]!.limitKey, links[0]!.limits, [job.served.estimate]);
      const ledger: LimiterLedger = { settle: [{ reservation: reserved.granted[0]!, actualTokens: USAGE.inputTokens }], release: [], samples: [] };

      await settleBatch(
        { config: s.config, logger, limiter: s.limiter, estimator: s.estimator, budgets: s.budgets, cache: s.cache, recorder: s.recorder },
        { batch, fates, lookup, reservations, ledger },
      );

      // Exactly the final fates are ends, each once.
      expect(s.ends.map((end) => [end.jobId, end.outcome, end.error?.code])).toEqual([
        ['served', 'completed', undefined],
        ['hit', 'completed', undefined],
        ['failed', 'failed', 'PROVIDER_BAD_REQUEST'],
        ['cancelled', 'cancelled', 'CANCELLED'],
      ]);
      expect(s.ends[0]).toMatchObject({ tenant: 'acme', provider: 'gemini', servedModel: MODEL, result: served, attempts: 1, promptSha256: job.served.promptSha256 });
      expect(s.ends[1]).toMatchObject({ savedNanoUsd: 500, result: { cached: true } });

      // settle's own live events: the retry and the long wait; nothing for a hand-back or an end.
      const events = await readJobEvents(redis, s.prefix, 'acme', '0-0', 100);
      expect(events.map((event) => [event.jobId, event.type, event.code ?? event.reason])).toEqual([
        ['retrying', 'retrying', 'PROVIDER_UNAVAILABLE'],
        ['waiting', 'waiting', 'daily-quota'],
      ]);

      // The recorder's usage observer: one record per end, the served job's cost, the hit's saving.
      const usage = await s.ledger.tenantUsage('acme');
      expect(usage.today).toMatchObject({ jobs: 4, failures: 2, cacheHits: 1, costNanoUsd: served.costNanoUsd, savedNanoUsd: 500 });

      // The budget: the served job at its actual cost, the failed one at 0, nothing left reserved.
      expect((await s.budgets.remaining('acme')).daily).toMatchObject({ spentNanoUsd: served.costNanoUsd, reservedNanoUsd: 0 });
      // The limiter: the served call settled at what the provider counted.
      expect(await s.limiter.state(links[0]!.limitKey, links[0]!.limits)).toMatchObject({ requests: 1, tokens: USAGE.inputTokens });

      // The fresh answer is in the cache, and the batch's in-flight claims are released: an
      // identical job now hits, another finds its request free to call.
      const again = await s.prepare([s.entry(promptData({ text: 'the served job' })), s.entry(promptData({ text: 'the retrying job' }))], links);
      const next = await lookUpCache(s.cache, s.results, again.batch.jobs, links, 5_000);
      expect(next.fates.get(again.batch.jobs[0]!)).toMatchObject({ kind: 'served', result: { text: 'fresh answer', cached: true } });
      expect(next.fates.has(again.batch.jobs[1]!)).toBe(false);
      expect(next.claims).toHaveLength(2);
    });

    it('a batch with no final fate records no end', async () => {
      const s = setup();
      const links = [s.link(MODEL, new ScriptedProvider('gemini'))];
      const { batch } = await s.prepare([s.entry(promptData()), s.entry(promptData({ text: 'other' }))], links);
      const fates: Fates = new Map<BatchJob, JobFate>([
        [batch.jobs[0]!, { kind: 'wait', untilMs: Date.now() + 100, reason: 'quota' }],
        [batch.jobs[1]!, { kind: 'hand-back' }],
      ]);
      await settleBatch(
        { config: s.config, logger, limiter: s.limiter, estimator: s.estimator, budgets: s.budgets, recorder: s.recorder },
        { batch, fates, lookup: NO_CACHE, reservations: new Map(), ledger: { settle: [], release: [], samples: [] } },
      );
      expect(s.ends).toEqual([]);
      // A short routine wait is not worth a live event either.
      expect(await readJobEvents(redis, s.prefix, 'acme', '0-0', 100)).toEqual([]);
      expect((await s.ledger.tenantUsage('acme')).today.jobs).toBe(0);
    });
  });
});
