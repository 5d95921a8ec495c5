// Adding a provider = a folder and one registry line (issue 11 item 1): a toy plugin, registered by
// one line in a registry built for the test, validates its links, passes the startup check, serves a
// job, and shows in the links the dashboard reads — with no change to the worker or the dashboard.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, promptJobResultSchema, publishedLinksKey, QueueName, readPublishedLinks } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { configuredLinks } from '../src/providers/chain.js';
import { createPluginContext, LinkCredentials } from '../src/providers/credentials.js';
import { KeyRing } from '../src/providers/gemini/key-ring.js';
import { loadWorkerConfig } from '../src/providers/link-config.js';
import { BUILTIN_PROVIDERS, createRegistry } from '../src/providers/registry.js';
import { createPromptWorker } from '../src/worker.js';
import { enqueue, MODEL, promptData, waitForJob } from './helpers.js';
import { toyPlugin } from './toy-provider/index.js';

const registry = createRegistry([...BUILTIN_PROVIDERS, toyPlugin]);
const TOKEN = 'toy-secret-token-never-shown';

describe('a provider plug-in (toy provider)', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let dir: string;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    redisServer = await startTestRedis();
    redis = new Redis(redisServer.url);
    dir = mkdtempSync(join(tmpdir(), 'pq-toy-'));
  });
  afterAll(async () => {
    redis?.disconnect();
    await redisServer?.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  function configWith(chains: unknown, extraEnv: Record<string, string> = {}, reg = registry) {
    const file = join(dir, `${uniquePrefix('c')}.json`);
    writeFileSync(file, JSON.stringify({ chains }));
    return loadWorkerConfig({ CONFIG_FILE: file, NODE_ENV: 'test', LOG_LEVEL: 'error', REDIS_URL: redisServer.url, REDIS_PREFIX: uniquePrefix('toy'), ...extraEnv }, reg);
  }

  it('its links are validated by its own schema; without its registry line the provider is unknown', () => {
    expect(() => configWith({ default: [{ provider: 'toy', answr: 'x' }] })).toThrow(
      /CONFIG_FILE chains\.default\.0\.answr: unknown key, did you mean answer\?/,
    );
    expect(() => configWith({ default: [{ provider: 'toy', token: TOKEN }] }, {}, createRegistry(BUILTIN_PROVIDERS))).toThrow(
      /CONFIG_FILE chains\.default\.0\.provider: unknown provider "toy" \(registered: gemini, openai, vertex\)/,
    );
    expect(() => configWith({ default: [{ provider: 'gemnii' }] })).toThrow(
      /CONFIG_FILE chains\.default\.0\.provider: unknown provider "gemnii", did you mean gemini\? \(registered: gemini, openai, vertex, toy\)/,
    );
    expect(() => configWith({ default: [{ provider: 'gemini', baseURL: 'http://x' }] })).toThrow(
      /CONFIG_FILE chains\.default\.0\.baseURL: unknown key, did you mean baseUrl\?/,
    );
  });

  it("the startup check asks the link's credentials and names the link", async () => {
    const config = configWith({ default: [{ provider: 'toy' }] });
    const logger = createLogger({ service: 'toy-test', level: 'error' });
    const credentials = new LinkCredentials(createPluginContext({ config, logger, redis, keyRing: new KeyRing({ logger }) }));
    await expect(credentials.check(configuredLinks(config, registry))).rejects.toThrow(`link toy:${config.gemini.defaultModel}:default: a toy link needs a token`);
    credentials.close();
  });

  it("serves a job through createPromptWorker, its own classifier decides its failures, and the published links show it (fingerprint, never the token)", async () => {
    const config = configWith({ default: [{ provider: 'toy', answer: 'from memory', token: TOKEN }] });
    const logger = createLogger({ service: 'toy-test', level: 'error' });
    const worker = createPromptWorker({ config, logger, registry });
    cleanups.push(() => worker.close(1_000));
    const queue = new Queue(QueueName.Prompts, { connection: redis, prefix: config.redis.prefix });
    cleanups.push(() => queue.close());

    const id = await enqueue(queue, config, promptData({ text: 'hello toy' }));
    const { job, state } = await waitForJob(queue, id, ['completed', 'failed']);
    expect(state, String(job.failedReason)).toBe('completed');
    expect(promptJobResultSchema.parse(job.returnvalue)).toMatchObject({ provider: 'toy', model: MODEL, text: 'from memory: hello toy' });

    // Its adapter throws a plain TypeError: its plugin's classifier decides (bad request, no retry).
    const refused = await waitForJob(queue, await enqueue(queue, config, promptData({ text: 'please refuse me' })), ['completed', 'failed']);
    expect(refused.state).toBe('failed');
    expect(refused.job.failedReason).toBe('[PROVIDER_BAD_REQUEST] toy: the toy cannot answer that');
    expect(refused.job.attemptsMade).toBe(1);

    const links = await readPublishedLinks(redis, config.redis.prefix);
    const link = links.find((candidate) => candidate.id === `toy:${MODEL}:default`);
    expect(link).toMatchObject({
      provider: 'toy',
      name: 'toy',
      model: MODEL,
      limitKey: { provider: 'toy-pool', model: MODEL, project: 'default' },
      credentials: [{ fingerprint: expect.stringMatching(/^sha256:[0-9a-f]{8}$/), state: 'ok' }],
    });
    const raw = JSON.stringify(await redis.hgetall(publishedLinksKey(config.redis.prefix)));
    expect(raw).not.toContain(TOKEN);
    expect(await redis.pttl(publishedLinksKey(config.redis.prefix))).toBeGreaterThan(0);
  });
});
