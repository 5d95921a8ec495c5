// The whole system as separate processes, as a user runs it: Redis, the Gemini emulator, the
// producer and a worker. Requests go over HTTP; the worker reaches the emulator through the SDK.
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulatorProcess } from '@prompt-queue/gemini-emulator';
import { startServiceProcess, startTestRedis, uniquePrefix, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const KEY = 'e2e-key';

interface JobView {
  id: string;
  status: string;
  result?: {
    text: string;
    provider: string;
    costUsd: number | null;
    usage: { inputTokens: number; outputTokens: number; thoughtsTokens: number; cachedTokens: number; totalTokens: number };
  };
  error?: { code: string; message: string; retryable: boolean };
}

describe('end to end: producer → Redis → worker → Gemini (emulator)', () => {
  let redis: TestRedis;
  let emulator: Awaited<ReturnType<typeof startEmulatorProcess>>;
  let producer: ServiceProcess;
  let worker: ServiceProcess;
  let api: string;

  beforeAll(async () => {
    redis = await startTestRedis();
    emulator = await startEmulatorProcess();
    const env = {
      NODE_ENV: 'test',
      REDIS_URL: redis.url,
      REDIS_PREFIX: uniquePrefix('e2e'),
      API_KEYS: `acme:${KEY},globex:other-key`,
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      PRODUCER_PORT: '0',
      WORKER_PORT: '0',
      BACKOFF_BASE_MS: '20',
      LOG_LEVEL: 'warn',
    };
    producer = await startServiceProcess({ args: [join(root, 'apps/producer/dist/main.js')], env, readyLine: /listening on (http:\/\/\S+)/ });
    worker = await startServiceProcess({ args: [join(root, 'apps/worker/dist/main.js')], env, readyLine: /listening on (http:\/\/\S+)/ });
    api = producer.ready[1]!;
  });

  afterAll(async () => {
    await worker?.stop();
    await producer?.stop();
    await emulator?.stop();
    await redis?.stop();
  });

  const post = (body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${api}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  const get = (id: string, query = '', key = KEY) => fetch(`${api}/v1/jobs/${id}${query}`, { headers: { authorization: `Bearer ${key}` } });

  it('completes a POSTed job with text, usage and cost, in exactly one provider call', async () => {
    await emulator.client.reset();
    const accepted = await post({ prompt: 'Write a haiku about queues' });
    expect(accepted.status).toBe(202);
    const { id, status } = (await accepted.json()) as { id: string; status: string };
    expect(status).toBe('queued');

    const view = (await (await get(id, '?wait=10')).json()) as JobView;
    expect(view.status).toBe('completed');
    const result = view.result!;
    expect(result.text.length).toBeGreaterThan(0);
    expect(result.provider).toBe('gemini');
    expect(result.usage.inputTokens).toBeGreaterThan(0);
    expect(result.usage.outputTokens).toBeGreaterThan(0);
    expect(result.usage.totalTokens).toBe(
      result.usage.inputTokens + result.usage.outputTokens + result.usage.thoughtsTokens,
    );
    expect(result.costUsd).toBeGreaterThan(0);

    const counters = (await emulator.client.counters()) as { totalCalls: number };
    expect(counters.totalCalls).toBe(1);
  });

  it('serves an idempotent request once: same key → same id, one provider call', async () => {
    await emulator.client.reset();
    const body = { prompt: 'Summarise the queue', idempotencyKey: 'order-42' };
    const first = (await (await post(body)).json()) as { id: string };
    const second = (await (await post(body)).json()) as { id: string };
    expect(second.id).toBe(first.id);
    const view = (await (await get(first.id, '?wait=10')).json()) as { status: string };
    expect(view.status).toBe('completed');
    const third = (await (await post({ prompt: 'Summarise the queue' }, { 'idempotency-key': 'order-42' })).json()) as { id: string };
    expect(third.id).toBe(first.id);
    expect(((await emulator.client.counters()) as { totalCalls: number }).totalCalls).toBe(1);
  });

  it('keeps tenants apart and fails a bad request with its code, once', async () => {
    const { id } = (await (await post({ prompt: 'mine' })).json()) as { id: string };
    expect((await get(id, '', 'other-key')).status).toBe(404);
    expect(((await (await get(id, '?wait=10')).json()) as { status: string }).status).toBe('completed');

    await emulator.client.reset();
    await emulator.client.addFault({ kind: 'badRequest', count: 1 });
    const failing = (await (await post({ prompt: 'this one is refused' })).json()) as { id: string };
    const view = (await (await get(failing.id, '?wait=10')).json()) as JobView;
    expect(view.status).toBe('failed');
    expect(view.error).toMatchObject({ code: 'PROVIDER_BAD_REQUEST', retryable: false });
    expect(((await emulator.client.counters()) as { totalCalls: number }).totalCalls).toBe(1);
  });
});
