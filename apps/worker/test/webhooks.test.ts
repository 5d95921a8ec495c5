// Webhook deliveries (issue 10) through a real delivery worker, real Redis and real HTTP receivers
// on 127.0.0.1 (admitted by webhooks.allowPrivate). The DONE-WHEN test: a receiver that verifies
// every signature gets every one of 1,000 events, at least once and exactly once after deduplicating
// on the event id, while it answers 500 to a third of the attempts and is down for 20 s.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  configSchema,
  createLogger,
  createRedis,
  putWebhookSecrets,
  QueueName,
  readWebhookDeliveryErrors,
  verifyWebhook,
  WebhookOutbox,
  type Config,
  type JobView,
  type WebhookEnd,
  type WebhookResolver,
} from '@prompt-queue/shared';
import { freePort, startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { webhookBackoffDelay } from '../src/webhooks/backoff.js';
import { createWebhookWorker, type WebhookWorker } from '../src/webhooks/delivery-worker.js';

const logger = createLogger({ service: 'webhook-test', level: 'error' });
logger.silent = true;
const TENANT_SECRET = 'tenant-secret-0123456789';

let redis: TestRedis;
const cleanups: Array<() => Promise<unknown>> = [];
beforeAll(async () => {
  redis = await startTestRedis();
});
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});
afterAll(async () => {
  await redis?.stop();
});

function testConfig(webhooks: Record<string, unknown> = {}): Config {
  const config = configSchema.parse({
    env: 'test',
    redis: { url: redis.url, prefix: uniquePrefix('wh') },
    webhooks: { allowPrivate: ['127.0.0.1/32'], backoffBaseMs: 100, backoffMaxMs: 2_000, attempts: 100, concurrency: 32, timeoutMs: 2_000, ...webhooks },
    tenants: { acme: { webhook: { secretEnv: 'ACME_SECRET' } } },
  });
  config.tenants.acme!.webhook!.secrets = [TENANT_SECRET];
  return config;
}

interface Running {
  config: Config;
  connection: Redis;
  outbox: WebhookOutbox;
  queue: Queue;
  webhooks: WebhookWorker;
}

function start(config: Config, resolve?: WebhookResolver): Running {
  const connection = createRedis(config.redis.url, 'worker');
  const outbox = new WebhookOutbox(connection, config);
  const queue = new Queue(QueueName.Webhooks, { connection, prefix: config.redis.prefix });
  const webhooks = createWebhookWorker({ config, connection, logger, ...(resolve ? { resolve } : {}) });
  cleanups.push(async () => {
    await webhooks.close();
    await outbox.close();
    await queue.close();
    await connection.quit();
  });
  return { config, connection, outbox, queue, webhooks };
}

function view(id: string): JobView {
  return {
    id,
    status: 'completed',
    model: 'gemini-3.6-flash',
    attempts: 1,
    createdAt: '2026-11-02T10:00:00.000Z',
    finishedAt: '2026-11-02T10:00:01.000Z',
    result: {
      text: `answer of ${id}`,
      finishReason: 'STOP',
      provider: 'gemini',
      model: 'gemini-3.6-flash',
      cached: false,
      usage: { inputTokens: 3, outputTokens: 4, thoughtsTokens: 0, cachedTokens: 0, totalTokens: 7 },
      costUsd: 0.00001,
      costNanoUsd: 10_000,
    },
  };
}

type Handler = (req: IncomingMessage, body: string, res: ServerResponse) => void;

async function listen(port: number, handler: Handler): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => handler(req, Buffer.concat(chunks).toString('utf8'), res));
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  cleanups.push(() => stop(server));
  return server;
}

async function stop(server: Server): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeAllConnections();
  await closed;
}

async function until(condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('webhook backoff', () => {
  it('doubles from the base up to the cap, up to 20% earlier; the defaults span about a day', () => {
    const options = { backoffBaseMs: 30_000, backoffMaxMs: 4 * 3600_000 };
    expect(webhookBackoffDelay(1, { ...options, random: () => 0 })).toBe(30_000);
    expect(webhookBackoffDelay(2, { ...options, random: () => 0 })).toBe(60_000);
    expect(webhookBackoffDelay(1, { ...options, random: () => 0.999999 })).toBe(24_000);
    expect(webhookBackoffDelay(50, { ...options, random: () => 0 })).toBe(4 * 3600_000);
    const defaults = configSchema.parse({}).webhooks;
    let longest = 0;
    let shortest = 0;
    for (let made = 1; made < defaults.attempts; made += 1) {
      longest += webhookBackoffDelay(made, { ...defaults, random: () => 0 });
      shortest += webhookBackoffDelay(made, { ...defaults, random: () => 0.999999 });
    }
    expect(longest / 3600_000).toBeGreaterThan(23);
    expect(longest / 3600_000).toBeLessThan(26);
    expect(shortest / 3600_000).toBeGreaterThan(18);
  });
});

describe('webhook delivery', () => {
  it('delivers 1,000 events exactly once after dedupe, every signature valid, through 500s and a 20 s outage', async () => {
    const config = testConfig();
    const port = await freePort();
    const acknowledged = new Map<string, number>();
    let attempts = 0;
    let badSignatures = 0;
    let takenDown = false;
    let server: Server;
    const handler: Handler = (req, body, res) => {
      attempts += 1;
      try {
        const { eventId } = verifyWebhook(req.headers, body, TENANT_SECRET);
        const event = JSON.parse(body) as { id: string; type: string; data: JobView };
        expect(eventId).toBe(event.id);
        expect(event.id).toBe(`${event.data.id}.job.completed`);
        expect(req.headers['user-agent']).toMatch(/^prompt-queue-webhooks\//);
      } catch {
        badSignatures += 1;
        res.writeHead(400).end();
        return;
      }
      // A third of all attempts fail with a 500, whatever the event.
      if (attempts % 3 === 0) {
        res.writeHead(500).end('try later');
        return;
      }
      const id = JSON.parse(body).id as string;
      acknowledged.set(id, (acknowledged.get(id) ?? 0) + 1);
      res.writeHead(204).end();
      if (acknowledged.size >= 300 && !takenDown) {
        takenDown = true;
        void stop(server);
      }
    };
    server = await listen(port, handler);
    const running = start(config);

    const ends: WebhookEnd[] = Array.from({ length: 1_000 }, (_, i) => ({
      tenant: 'acme',
      jobId: `job-${i}`,
      type: 'job.completed',
      view: view(`job-${i}`),
      webhook: { url: `http://127.0.0.1:${port}/hooks?token=t` },
    }));
    // Recording the same ends twice (a retried recorder) adds each delivery once.
    await running.outbox.enqueue(ends);
    await running.outbox.enqueue(ends.slice(0, 500));
    const counts = await running.queue.getJobCounts();
    expect(Object.values(counts).reduce((sum, n) => sum + n, 0)).toBe(1_000);

    await until(() => takenDown, 20_000, 'the first 300 deliveries');
    const downAt = Date.now();
    await new Promise((resolve) => setTimeout(resolve, 20_000));
    expect(acknowledged.size).toBeLessThan(1_000);
    server = await listen(port, handler);
    await until(async () => (await running.queue.getJobCounts('completed')).completed === 1_000, 60_000, 'every delivery to complete');

    expect(Date.now() - downAt).toBeGreaterThanOrEqual(20_000);
    expect(badSignatures).toBe(0);
    expect(acknowledged.size).toBe(1_000);
    for (const end of ends) expect(acknowledged.has(`${end.jobId}.job.completed`), end.jobId).toBe(true);
    expect((await running.queue.getJobCounts('failed')).failed).toBe(0);
    // The outage and the 500s are in the tenant's recent errors, URLs without their query string.
    const [recent] = await readWebhookDeliveryErrors(running.connection, config.redis.prefix);
    expect(recent!.tenant).toBe('acme');
    expect(recent!.errors.length).toBeGreaterThan(0);
    for (const error of recent!.errors) {
      expect(error.url).toBe(`http://127.0.0.1:${port}/hooks`);
      expect(error.code).toBe('WEBHOOK_DELIVERY_FAILED');
      expect(error.deadLettered).toBe(false);
    }
  }, 120_000);

  it('refuses at delivery a URL that now resolves to a private address: dead-lettered at once, nothing sent', async () => {
    const config = testConfig({ attempts: 5 });
    let hits = 0;
    const port = await freePort();
    await listen(port, (_req, _body, res) => {
      hits += 1;
      res.writeHead(204).end();
    });
    // At enqueue rebind.test was public; now its DNS answers a private address.
    const resolve: WebhookResolver = async (hostname) => (hostname === 'rebind.test' ? [{ address: '10.0.0.7', family: 4 }] : [{ address: '127.0.0.1', family: 4 }]);
    const running = start(config, resolve);
    await running.outbox.enqueue([{ tenant: 'acme', jobId: 'rebound', type: 'job.failed', view: view('rebound'), webhook: { url: `http://rebind.test:${port}/hook` } }]);
    await until(async () => (await running.queue.getJobCounts('failed')).failed === 1, 10_000, 'the dead letter');
    const job = await running.queue.getJob('rebound.job.failed');
    expect(job!.attemptsMade).toBe(1);
    expect(job!.failedReason).toMatch(/^\[WEBHOOK_URL_NOT_ALLOWED\] .*rebind\.test resolves to 10\.0\.0\.7, a private address/);
    expect(hits).toBe(0);
    const [recent] = await readWebhookDeliveryErrors(running.connection, config.redis.prefix);
    expect(recent!.errors[0]).toMatchObject({ eventId: 'rebound.job.failed', code: 'WEBHOOK_URL_NOT_ALLOWED', deadLettered: true });
  });

  it('connects to the address it checked, not to what the system resolver says', async () => {
    const config = testConfig();
    const port = await freePort();
    const received: string[] = [];
    await listen(port, (req, body, res) => {
      received.push(`${req.headers.host} ${JSON.parse(body).id}`);
      res.writeHead(200).end('ok');
    });
    // pinned.test exists only for the guard's resolver: the connection must use the checked address.
    const running = start(config, async () => [{ address: '127.0.0.1', family: 4 }]);
    await running.outbox.enqueue([{ tenant: 'acme', jobId: 'pinned', type: 'job.completed', view: view('pinned'), webhook: { url: `http://pinned.test:${port}/` } }]);
    await until(async () => (await running.queue.getJobCounts('completed')).completed === 1, 10_000, 'the delivery');
    expect(received).toEqual([`pinned.test:${port} pinned.job.completed`]);
  });

  it('follows no redirect, reads a bounded answer, and dead-letters after the last attempt', async () => {
    const config = testConfig({ attempts: 2, maxResponseBytes: 1_024 });
    let redirectHits = 0;
    const targetPort = await freePort();
    await listen(targetPort, (_req, _body, res) => {
      redirectHits += 1;
      res.writeHead(204).end();
    });
    const port = await freePort();
    await listen(port, (_req, _body, res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${targetPort}/elsewhere?sig=secret` });
      res.end('x'.repeat(1_000_000));
    });
    const running = start(config);
    await running.outbox.enqueue([{ tenant: 'acme', jobId: 'moved', type: 'job.completed', view: view('moved'), webhook: { url: `http://127.0.0.1:${port}/hook` } }]);
    await until(async () => (await running.queue.getJobCounts('failed')).failed === 1, 10_000, 'the dead letter');
    const job = await running.queue.getJob('moved.job.completed');
    expect(job!.attemptsMade).toBe(2);
    expect(job!.failedReason).toBe(
      `[WEBHOOK_DELIVERY_FAILED] http://127.0.0.1:${port}/hook answered 307 (a redirect to http://127.0.0.1:${targetPort}/elsewhere; redirects are not followed).`,
    );
    expect(redirectHits).toBe(0);
    const [recent] = await readWebhookDeliveryErrors(running.connection, config.redis.prefix);
    expect(recent!.errors.map((error) => [error.attempt, error.deadLettered])).toEqual([
      [2, true],
      [1, false],
    ]);
  });

  it("signs with the job's own secret, and a job without a webhook uses its tenant's default, or is skipped", async () => {
    const config = testConfig();
    const port = await freePort();
    const received: { id: string; signature: string }[] = [];
    const bodies = new Map<string, string>();
    await listen(port, (req, body, res) => {
      const id = JSON.parse(body).id as string;
      received.push({ id, signature: String(req.headers['promptqueue-signature']) });
      bodies.set(id, body);
      res.writeHead(200).end();
    });
    config.tenants.acme!.webhook!.url = `http://127.0.0.1:${port}/tenant-default`;
    const running = start(config);
    await putWebhookSecrets(running.connection, config.redis.prefix, [{ ref: 'a'.repeat(32), secret: 'job-own-secret-0123456789' }], 60);
    await running.outbox.enqueue([
      { tenant: 'acme', jobId: 'own', type: 'job.completed', view: view('own'), webhook: { url: `http://127.0.0.1:${port}/own`, secretRef: 'a'.repeat(32) } },
      { tenant: 'acme', jobId: 'default', type: 'job.cancelled', view: { ...view('default'), status: 'cancelled' } },
      { tenant: 'globex', jobId: 'none', type: 'job.completed', view: view('none') },
    ]);
    expect(Object.values(await running.queue.getJobCounts()).reduce((sum, n) => sum + n, 0)).toBe(2);
    await until(() => received.length === 2, 10_000, 'two deliveries');
    const byId = new Map(received.map((entry) => [entry.id, entry]));
    expect(() => verifyWebhook({ 'promptqueue-signature': byId.get('own.job.completed')!.signature }, bodies.get('own.job.completed')!, 'job-own-secret-0123456789')).not.toThrow();
    expect(() => verifyWebhook({ 'promptqueue-signature': byId.get('default.job.cancelled')!.signature }, bodies.get('default.job.cancelled')!, TENANT_SECRET)).not.toThrow();
    const event = JSON.parse(bodies.get('default.job.cancelled')!);
    expect(event).toEqual({ id: 'default.job.cancelled', type: 'job.cancelled', createdAt: expect.any(String), data: { ...view('default'), status: 'cancelled' } });
    // The secret itself is nowhere in the delivery's job data.
    const job = await running.queue.getJob('own.job.completed');
    expect(JSON.stringify(job!.data)).not.toContain('job-own-secret');
  });
});
