// Vertex AI links (issue 11 item 2): the real @google/genai 2.32.0 and google-auth-library 10 over
// HTTP to the emulator process, authenticated by real RS256-signed JWTs (a key pair made per test
// file) exchanged at the emulator's token endpoint. No mocks of the SDKs.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { ApiError } from '@google/genai';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import winston from 'winston';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createServiceAccountKeyFile, startEmulatorProcess, type EmulatorProcess, type ServiceAccountFile } from '@prompt-queue/gemini-emulator';
import { costNanoUsd, createLogger, isProviderError, promptJobResultSchema, QueueName, readPublishedLinks, type Config } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { configuredLinks } from '../src/providers/chain.js';
import { createPluginContext, LinkCredentials } from '../src/providers/credentials.js';
import { KeyRing } from '../src/providers/gemini/key-ring.js';
import { loadWorkerConfig } from '../src/providers/link-config.js';
import { VertexProvider } from '../src/providers/vertex/adapter.js';
import { classifyVertexError } from '../src/providers/vertex/classify.js';
import { AccessTokens } from '../src/providers/vertex/credentials.js';
import { createPromptWorker } from '../src/worker.js';
import { enqueue, MODEL, promptData, waitForJob } from './helpers.js';

const PROJECT = 'emulator-project';
const LOCATION = 'us-central1';

/** A logger that also keeps every line it writes (JSON), to search for secrets. */
function capturingLogger(): { logger: ReturnType<typeof createLogger>; lines: () => string } {
  const logger = createLogger({ service: 'vertex-test', level: 'debug', json: true });
  logger.clear();
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (chunk: Buffer) => (text += chunk.toString('utf8')));
  logger.add(new winston.transports.Stream({ stream }));
  return { logger, lines: () => text };
}

describe('Vertex AI links (emulator process, real signed JWTs)', () => {
  let redisServer: TestRedis;
  let emulator: EmulatorProcess;
  let redis: Redis;
  let dir: string;
  let sa: ServiceAccountFile;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    [redisServer, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess()]);
    redis = new Redis(redisServer.url);
    dir = mkdtempSync(join(tmpdir(), 'pq-vertex-'));
  });
  afterAll(async () => {
    redis?.disconnect();
    await Promise.all([emulator?.stop(), redisServer?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await emulator.client.reset();
    await emulator.client.setTokenTtl(3600);
    await emulator.client.setQuotas({ [MODEL]: null });
    await emulator.client.setSharedQuota(null);
    // A fresh key per test: a revoked one stays revoked.
    sa = await createServiceAccountKeyFile({ emulatorUrl: emulator.url, path: join(dir, `${uniquePrefix('key')}.json`), projectId: PROJECT });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  const vertexLink = (extra: Record<string, unknown> = {}) => ({
    provider: 'vertex',
    project: PROJECT,
    location: LOCATION,
    keyFile: sa.keyFile,
    baseUrl: emulator.url,
    tokenUrl: `${emulator.url}/oauth2/token`,
    ...extra,
  });
  const geminiLink = { provider: 'gemini', model: '$job' };

  function configWith(chains: unknown, env: Record<string, string> = {}, more: Record<string, unknown> = {}): Config {
    const file = join(dir, `${uniquePrefix('c')}.json`);
    writeFileSync(file, JSON.stringify({ chains, ...more }));
    return loadWorkerConfig({
      CONFIG_FILE: file,
      NODE_ENV: 'test',
      LOG_LEVEL: 'error',
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('vx'),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      BACKOFF_BASE_MS: '20',
      BACKOFF_MAX_MS: '200',
      JOB_ATTEMPTS: '3',
      ...env,
    });
  }

  /** A worker as main.ts starts one: every link's credentials checked first (a token fetched), then the worker. */
  async function startWorker(config: Config, logger = createLogger({ service: 'vertex-test', level: 'error' }), options: { check?: boolean } = {}) {
    const credentials = new LinkCredentials(createPluginContext({ config, logger, redis, keyRing: KeyRing.fromConfig(config, logger) }));
    cleanups.push(async () => credentials.close());
    if (options.check !== false) await credentials.check(configuredLinks(config));
    const worker = createPromptWorker({ config, logger, credentials });
    const failures: string[] = [];
    worker.worker.on('failed', (_job, error) => failures.push(error.message));
    cleanups.push(() => worker.close(2_000));
    const queue = new Queue(QueueName.Prompts, { connection: redis, prefix: config.redis.prefix });
    cleanups.push(() => queue.close());
    return { worker, queue, failures, credentials };
  }

  /** Everything the worker stored under its prefix, as text: jobs, results, published links, events. */
  async function redisDump(prefix: string): Promise<string> {
    const keys = await redis.keys(`*${prefix.replace(/[{}]/g, '')}*`);
    const parts: string[] = [];
    for (const key of keys) {
      const type = await redis.type(key);
      if (type === 'string') parts.push((await redis.get(key)) ?? '');
      else if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(key)));
      else if (type === 'list') parts.push(JSON.stringify(await redis.lrange(key, 0, -1)));
      else if (type === 'zset') parts.push(JSON.stringify(await redis.zrange(key, 0, -1)));
      else if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
    }
    return parts.join('\n');
  }

  /** The secrets a test must never find: the private key (any line of its body), the whole key file, emulator tokens. */
  function expectNoSecrets(text: string): void {
    const keyFile = readFileSync(sa.keyFile, 'utf8');
    const privateKey = (JSON.parse(keyFile) as { private_key: string }).private_key;
    expect(text).not.toContain(keyFile);
    for (const line of privateKey.split('\n').filter((l) => l.length > 20)) expect(text).not.toContain(line);
    expect(text).not.toContain('ya29.');
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\./); // a JWT assertion
  }

  it('serves a job through a Vertex link: token exchanged at the emulator, byApi vertex, usage and cost, only a fingerprint published', async () => {
    const { logger, lines } = capturingLogger();
    const config = configWith({ default: [vertexLink()] });
    const { queue, failures } = await startWorker(config, logger);

    const id = await enqueue(queue, config, promptData({ text: 'hello vertex' }));
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
    expect(state, String(job.failedReason)).toBe('completed');
    const result = promptJobResultSchema.parse(job.returnvalue);
    expect(result).toMatchObject({ provider: 'vertex', model: MODEL, finishReason: 'STOP' });
    expect(result.text).toMatch(/^Emulated answer from gemini-2\.5-flash: /);
    expect(result.usage.inputTokens).toBeGreaterThan(0);
    // Priced as data (`prices.<model>`), exactly as a Gemini API answer of the same usage.
    expect(result.costNanoUsd).toBeGreaterThan(0);
    expect(failures).toEqual([]);

    const counters = await emulator.client.counters();
    expect(counters.byApi).toEqual({ vertex: 1 });
    const oauth = await emulator.client.oauthStats();
    expect(oauth.tokensIssued).toBe(1);
    expect(oauth.accounts.find((a) => a.clientEmail === sa.clientEmail)?.tokensIssued).toBe(1);

    const links = await readPublishedLinks(redis, config.redis.prefix);
    const link = links.find((candidate) => candidate.provider === 'vertex');
    expect(link).toMatchObject({
      id: `vertex:${MODEL}:${PROJECT}`,
      limitKey: { provider: `vertex:${LOCATION}`, model: MODEL, project: PROJECT },
      credentials: [{ fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{8}$/), state: 'ok' }],
    });
    expectNoSecrets(await redisDump(config.redis.prefix));
    expectNoSecrets(lines());
  });

  it("Vertex's own prices are data (providerPrices.vertex.<model>); Flex on Vertex is priced at half of them", async () => {
    const vertexPrice = { input: 0.4, output: 3, cachedInput: 0.1 };
    const config = configWith({ default: [vertexLink()] }, {}, { providerPrices: { vertex: { [MODEL]: vertexPrice } } });
    config.tiers.flex = { ...config.tiers.flex, enabled: true };
    const { queue, failures } = await startWorker(config, createLogger({ service: 'vertex-test', level: 'error' }));
    const standardId = await enqueue(queue, config, promptData({ text: 'priced by vertex' }));
    const flexId = await enqueue(queue, config, promptData({ text: 'flex on vertex', deadline: Date.now() + 3600_000 }));
    const [standard, flex] = await Promise.all([standardId, flexId].map(async (id) => promptJobResultSchema.parse((await waitForJob(queue, id, ['completed'])).job.returnvalue)));
    expect(standard!.tier).toBe('standard');
    expect(standard!.costNanoUsd).toBe(costNanoUsd(standard!.usage, vertexPrice));
    expect(standard!.costNanoUsd).not.toBe(costNanoUsd(standard!.usage, config.prices[MODEL]!));
    expect(flex!.tier).toBe('flex');
    expect(flex!.costNanoUsd).toBe(costNanoUsd(flex!.usage, vertexPrice) / 2);
    expect((await emulator.client.counters()).byTier?.['flex']).toMatchObject({ served: 1 });
    expect(failures).toEqual([]);
    // A provider name without a plug-in refuses to start, naming it.
    expect(() => configWith({ default: [vertexLink()] }, {}, { providerPrices: { vertx: {} } })).toThrow(/providerPrices\.vertx: unknown provider, did you mean vertex\?/);
  });

  it('caches the token across calls, shared by links of one key file, and refreshes it before it expires', async () => {
    const logger = createLogger({ service: 'vertex-test', level: 'error' });
    const tokens = new AccessTokens({ keyFile: sa.keyFile, tokenUrl: `${emulator.url}/oauth2/token`, logger });
    const provider = () =>
      new VertexProvider({ name: 'vertex', project: PROJECT, location: LOCATION, baseUrl: emulator.url, timeoutMs: 5_000, tokens, fileUriAllow: [] });
    const ask = (text: string, model = MODEL) => provider().generate({ model, contents: [{ role: 'user', parts: [{ text }] }] });

    await Promise.all([ask('one'), ask('two'), ask('three', 'gemini-2.5-flash-lite')]);
    for (let i = 0; i < 5; i++) await ask(`again ${i}`);
    expect((await emulator.client.oauthStats()).tokensIssued).toBe(1);
    expect(tokens.fetches).toBe(1);

    // Tokens of 2 s: refreshed a fifth of their lifetime before they expire, never used expired.
    await emulator.client.setTokenTtl(2);
    await emulator.client.expireAllTokens();
    await ask('after expiry'); // 401 ACCESS_TOKEN_EXPIRED → a fresh token, same call
    expect((await emulator.client.oauthStats()).tokensIssued).toBe(2);
    await ask('still fresh');
    expect((await emulator.client.oauthStats()).tokensIssued).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 1_700));
    await ask('refreshed ahead of expiry');
    const oauth = await emulator.client.oauthStats();
    expect(oauth.tokensIssued).toBe(3);
    // One 401: the token expired by the test; the refresh ahead of expiry needed none.
    expect(oauth.unauthenticated).toEqual({ expired: 1 });
    // 8 calls, the 401 and its retry, 2 more.
    expect((await emulator.client.counters()).byApi).toEqual({ vertex: 12 });
  });

  it('a revoked key fails the Vertex link with PROVIDER_AUTH_FAILED and the next link (Gemini API) serves; alone, the job fails with that code', async () => {
    const { logger, lines } = capturingLogger();
    const chained = configWith({ default: [vertexLink(), geminiLink] });
    const { worker, queue, failures, credentials } = await startWorker(chained, logger);

    const first = await enqueue(queue, chained, promptData({ text: 'before the revocation' }));
    expect(promptJobResultSchema.parse((await waitForJob(queue, first, ['completed'])).job.returnvalue).provider).toBe('vertex');

    await emulator.client.revokeServiceAccountKey(sa.privateKeyId);
    const ids = await Promise.all(Array.from({ length: 3 }, (_, i) => enqueue(queue, chained, promptData({ text: `after the revocation ${i}` }))));
    for (const id of ids) {
      const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
      expect(state, String(job.failedReason)).toBe('completed');
      expect(promptJobResultSchema.parse(job.returnvalue).provider).toBe('gemini');
      // The next link served in the same attempt: the one that completed it.
      expect(job.attemptsMade).toBe(1);
    }
    expect(failures).toEqual([]);
    const oauth = await emulator.client.oauthStats();
    // The cached token was refused (401), one new assertion was refused (invalid_grant); the
    // refusal is remembered, so later jobs do not ask again.
    expect(oauth.unauthenticated.revoked).toBe(1);
    expect(Object.values(oauth.rejected).reduce((a, b) => a + (b ?? 0), 0)).toBe(1);
    expect((await emulator.client.counters()).byApi).toEqual({ vertex: 2, gemini: 3 });

    // What the worker publishes for the dashboard: the credential's fingerprint, rejected, and why.
    const vertexSpec = worker.chains.specs().find((spec) => spec.provider === 'vertex')!;
    expect(credentials.for(vertexSpec).describe()).toEqual([{ fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{8}$/), state: 'rejected', detail: 'invalid_grant: Invalid JWT Signature.' }]);
    expect(lines()).toContain('vertex credential refused');
    expect(lines()).toContain('invalid_grant');

    // A chain of the Vertex link alone (a worker started before the revocation: its startup check
    // would refuse now): nothing else may serve, the job fails with the clear code.
    const alone = configWith({ default: [vertexLink()] });
    const solo = await startWorker(alone, logger, { check: false });
    const id = await enqueue(solo.queue, alone, promptData({ text: 'nowhere to go' }));
    const { job, state } = await waitForJob(solo.queue, id, ['completed', 'failed']);
    expect(state).toBe('failed');
    expect(job.failedReason).toMatch(/^\[PROVIDER_AUTH_FAILED\] Vertex AI credential refused \(keyFile .*\): invalid_grant: Invalid JWT Signature\./);
    expect(job.attemptsMade).toBe(1); // not retryable: one attempt

    expectNoSecrets(lines());
    expectNoSecrets(await redisDump(chained.redis.prefix));
    expectNoSecrets(await redisDump(alone.redis.prefix));
  });

  it('Gemini API daily quota exhausted → Vertex (same model, its own pool) serves every job of 50, 0 failures', async () => {
    // One request a day, spent here: every Gemini API call is a per-day 429.
    await emulator.client.setQuotas({ [MODEL]: { rpd: 1 } });
    const spend = await fetch(`${emulator.url}/v1beta/models/${MODEL}:generateContent`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-goog-api-key': emulator.apiKey },
      body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'spend the day' }] }] }),
    });
    expect(spend.status).toBe(200);
    const config = configWith({ default: [geminiLink, vertexLink()] });
    const { queue, failures } = await startWorker(config);
    const ids = await Promise.all(Array.from({ length: 50 }, (_, i) => enqueue(queue, config, promptData({ text: `job ${i}`, tenant: `t${i % 5}` }))));
    for (const id of ids) {
      const { job, state } = await waitForJob(queue, id, ['completed', 'failed'], 30_000);
      expect(state, String(job.failedReason)).toBe('completed');
      expect(promptJobResultSchema.parse(job.returnvalue).provider).toBe('vertex');
    }
    expect(failures).toEqual([]);
    const counters = await emulator.client.counters();
    expect(counters.byApi.vertex).toBe(50);
    // The Gemini API was asked by the first batch only: its per-day 429 paused the model fleet-wide
    // until the reset, and later batches went straight to Vertex.
    expect(counters.byApi.gemini! - 1).toBeGreaterThan(0);
    expect(counters.byApi.gemini! - 1).toBeLessThan(50);
    expect((await emulator.client.oauthStats()).tokensIssued).toBe(1);
  }, 60_000);

  it('Dynamic Shared Quota 429s (no QuotaFailure) make jobs wait and then complete, no failures', async () => {
    await emulator.client.setSharedQuota({ capacity: 4, windowMs: 1_000 });
    const config = configWith({ default: [vertexLink()] });
    const { queue, failures } = await startWorker(config);
    const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => enqueue(queue, config, promptData({ text: `shared ${i}` }))));
    for (const id of ids) {
      const { job, state } = await waitForJob(queue, id, ['completed', 'failed'], 90_000);
      expect(state, String(job.failedReason)).toBe('completed');
      expect(job.attemptsMade).toBe(1); // waits spend no attempt
    }
    expect(failures).toEqual([]);
    const usage = await emulator.client.vertexQuotaUsage();
    expect(usage.sharedQuota?.rejected).toBeGreaterThan(0);
  }, 120_000);

  describe('the startup check names the link and the problem, never the key', () => {
    async function check(link: Record<string, unknown>): Promise<string> {
      const config = configWith({ default: [{ model: MODEL, ...link }] });
      const logger = createLogger({ service: 'vertex-test', level: 'error' });
      const credentials = new LinkCredentials(createPluginContext({ config, logger, redis, keyRing: new KeyRing({ logger }) }));
      try {
        await credentials.check(configuredLinks(config));
        return 'ok';
      } catch (error) {
        return (error as Error).message;
      } finally {
        credentials.close();
      }
    }

    it('a good key file passes (a token is fetched)', async () => {
      expect(await check(vertexLink())).toBe('ok');
    });

    it('a missing file, a file that is not JSON, a key the token endpoint refuses', async () => {
      const missing = join(dir, 'nope.json');
      expect(await check(vertexLink({ keyFile: missing }))).toBe(
        `link vertex:${MODEL}:${PROJECT}: no usable Vertex AI credential: Vertex AI credential refused (keyFile ${missing}): CREDENTIALS_UNUSABLE: the key file does not exist`,
      );
      const garbage = join(dir, 'garbage.json');
      const secretish = '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC';
      writeFileSync(garbage, secretish);
      const notJson = await check(vertexLink({ keyFile: garbage }));
      expect(notJson).toContain('the key file is not valid JSON');
      expect(notJson).not.toContain('MIIE');
      const unregistered = await createServiceAccountKeyFile({ emulatorUrl: emulator.url, path: join(dir, 'unknown.json'), projectId: PROJECT, register: false });
      expect(await check(vertexLink({ keyFile: unregistered.keyFile }))).toMatch(/: invalid_grant: Invalid JWT Signature\.$/);
    });

    it('unknown keys and bad values are refused by the schema', () => {
      expect(() => configWith({ default: [vertexLink({ keyfile: 'x' })] })).toThrow(/chains\.default\.0\.keyfile: unknown key, did you mean keyFile\?/);
      expect(() => configWith({ default: [{ provider: 'vertex', location: LOCATION }] })).toThrow(/chains\.default\.0\.project: /);
      expect(() => configWith({ default: [vertexLink({ location: 'US Central' })] })).toThrow(/chains\.default\.0\.location: a Vertex AI location/);
    });
  });
});

describe('classifyVertexError: @google/genai ApiError → ProviderError', () => {
  const apiError = (status: number, body: unknown) => new ApiError({ status, message: JSON.stringify(body) });

  it('a 429 with QuotaFailure reports the quota; a Dynamic Shared Quota 429 (no details) is a rate limit without one', () => {
    const quota = classifyVertexError(
      apiError(429, {
        error: {
          code: 429,
          status: 'RESOURCE_EXHAUSTED',
          message: 'Quota exceeded',
          details: [
            { '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '7s' },
            {
              '@type': 'type.googleapis.com/google.rpc.QuotaFailure',
              violations: [{ quotaMetric: 'aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model', quotaId: 'GenerateRequestsPerMinutePerProjectPerBaseModel', quotaValue: '60' }],
            },
          ],
        },
      }),
    );
    expect(quota).toMatchObject({ code: 'PROVIDER_RATE_LIMITED', disposition: 'rate-limit', retryAfterMs: 7_000, reportedQuota: { dimension: 'rpm', limit: 60 }, httpStatus: 429 });
    const shared = classifyVertexError(apiError(429, { error: { code: 429, status: 'RESOURCE_EXHAUSTED', message: 'Resource exhausted. Please try again later.' } }));
    expect(shared).toMatchObject({ code: 'PROVIDER_RATE_LIMITED', disposition: 'rate-limit', retryAfterMs: undefined, reportedQuota: undefined });
  });

  it('401/403 → PROVIDER_AUTH_FAILED; 404, 400, 5xx, timeouts and network errors as for the Gemini API', () => {
    expect(classifyVertexError(apiError(401, { error: { code: 401, status: 'UNAUTHENTICATED', message: 'bad token', details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'ACCESS_TOKEN_EXPIRED' }] } }))).toMatchObject({
      code: 'PROVIDER_AUTH_FAILED',
      disposition: 'fail',
      message: 'Vertex AI answered 401 UNAUTHENTICATED (ACCESS_TOKEN_EXPIRED): bad token',
    });
    expect(classifyVertexError(apiError(403, { error: { code: 403, status: 'PERMISSION_DENIED', message: 'no role' } }))).toMatchObject({ code: 'PROVIDER_AUTH_FAILED', disposition: 'fail' });
    expect(classifyVertexError(apiError(404, { error: { code: 404, message: 'no model' } }))).toMatchObject({ code: 'PROVIDER_MODEL_NOT_FOUND', disposition: 'fail' });
    expect(classifyVertexError(apiError(400, { error: { code: 400, message: 'bad' } }))).toMatchObject({ code: 'PROVIDER_BAD_REQUEST', disposition: 'fail' });
    expect(classifyVertexError(apiError(503, { error: { code: 503, message: 'overloaded' } }))).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', disposition: 'backoff' });
    expect(classifyVertexError(Object.assign(new Error('aborted'), { name: 'AbortError' }), { timeoutMs: 50 })).toMatchObject({ code: 'PROVIDER_TIMEOUT', message: 'Vertex AI did not answer within 50 ms' });
    expect(classifyVertexError(Object.assign(new TypeError('fetch failed'), { cause: { code: 'ECONNREFUSED' } }))).toMatchObject({ code: 'PROVIDER_NETWORK_ERROR', disposition: 'backoff' });
    expect(isProviderError(classifyVertexError(new Error('??')))).toBe(true);
  });
});
