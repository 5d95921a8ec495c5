// The client against the whole stack as real processes: Redis, the Gemini emulator, the producer
// and a worker. A misbehaving proxy stands in for a lost answer (test/proxy.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ERROR_CODES,
  isApiError,
  isNetworkError,
  isTimeoutError,
  PromptQueueApiError,
  PromptQueueClient,
  type Accepted,
  type BudgetView,
  type JobView,
  type StreamedJobEvent,
  type UsageResponse,
  type UsageView,
} from '../src/index.js';
import { startProxy, type MisbehavingProxy } from './proxy.js';
import { KEY, startStack, type Stack } from './stack.js';

let stack: Stack;
let client: PromptQueueClient;
let proxy: MisbehavingProxy;

beforeAll(async () => {
  stack = await startStack({ env: { RESPONSE_CACHE: 'false', AUDIT_LOG: '/dev/null' } });
  client = new PromptQueueClient({ url: stack.url, apiKey: KEY });
  proxy = await startProxy(stack.url);
});

afterAll(async () => {
  await proxy?.close();
  await stack?.stop();
});

/** Fast retries, through the proxy. */
const viaProxy = () => new PromptQueueClient({ url: proxy.url, apiKey: KEY, retry: { baseDelayMs: 20, maxDelayMs: 100 } });

async function errorOf(promise: Promise<unknown>): Promise<PromptQueueApiError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isApiError(error)).toBe(true);
  return error as PromptQueueApiError;
}

describe('client against the whole stack', () => {
  it('enqueue → wait: a completed job with its result, as the client types describe it', async () => {
    const accepted = await client.enqueue({ prompt: 'Write a haiku about queues', metadata: { ticket: 42 } });
    expect(accepted).toEqual({ id: expect.any(String), status: expect.stringMatching(/^(queued|active|completed)$/) } satisfies Record<keyof Accepted, unknown>);
    const view = await client.wait(accepted.id, { timeoutMs: 30_000 });
    expect(view.status).toBe('completed');
    expect(view.result!.text.length).toBeGreaterThan(0);
    expect(view.metadata).toEqual({ ticket: 42 });
    // Runtime contract: no field the client does not know (compile-time checks: contract.types.ts).
    const known: Record<keyof JobView, true> = { id: true, status: true, model: true, attempts: true, createdAt: true, finishedAt: true, metadata: true, waiting: true, tier: true, result: true, error: true };
    expect(Object.keys(view).filter((key) => !(key in known))).toEqual([]);
    expect(await client.get(accepted.id)).toEqual(view);
  });

  it('retries a lost answer (503 after the job was made) with the same idempotency key: one job, one provider call', async () => {
    await stack.emulator.client.reset();
    proxy.plan((req) => req.method === 'POST' && req.path === '/v1/jobs', ['forward-then-503', 'forward-then-reset']);
    const accepted = await viaProxy().enqueue({ prompt: 'retry me, but only once' });

    const posts = proxy.seen.filter((req) => req.method === 'POST' && req.path === '/v1/jobs');
    expect(posts.map((req) => req.action)).toEqual(['forward-then-503', 'forward-then-reset', 'forward']);
    const keys = posts.map((req) => (JSON.parse(req.body) as { idempotencyKey: string }).idempotencyKey);
    expect(new Set(keys).size).toBe(1);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);

    expect((await client.wait(accepted.id, { timeoutMs: 30_000 })).status).toBe('completed');
    expect(await stack.generateCalls()).toBe(1);
  });

  it('gives up after its attempts with a typed error: 503 as PromptQueueApiError, no answer as PromptQueueNetworkError', async () => {
    const twice = new PromptQueueClient({ url: proxy.url, apiKey: KEY, retry: { attempts: 2, baseDelayMs: 10 } });
    proxy.plan((req) => req.path === '/v1/usage', ['forward-then-503', 'forward-then-503']);
    const unavailable = await errorOf(twice.usage());
    expect(unavailable).toMatchObject({ status: 503, code: 'REDIS_UNAVAILABLE', retryable: true });

    const nowhere = new PromptQueueClient({ url: 'http://127.0.0.1:9', apiKey: KEY, retry: { attempts: 2, baseDelayMs: 10 } });
    const error = await nowhere.usage().catch((e: unknown) => e);
    expect(isNetworkError(error)).toBe(true);
    expect((error as Error).message).toMatch(/after 2 attempts/);
  });

  it('carries the API\'s code in typed errors: 400 with details, 401, 404, 409, and known codes only', async () => {
    const invalid = await errorOf(client.enqueue({}));
    expect(invalid).toMatchObject({ status: 400, code: 'VALIDATION_FAILED', details: [{ path: 'prompt' }] });
    expect(await errorOf(client.enqueue({ prompt: 'x', model: 'no-such-model' }))).toMatchObject({ status: 400, code: 'UNKNOWN_MODEL' });
    expect(await errorOf(new PromptQueueClient({ url: stack.url, apiKey: 'wrong-key' }).usage())).toMatchObject({ status: 401, code: 'UNAUTHORIZED' });
    expect(await errorOf(client.get('j0000000000000000000000000000000'))).toMatchObject({ status: 404, code: 'NOT_FOUND' });

    const { id } = await client.enqueue({ prompt: 'finish, then refuse a cancel' });
    await client.wait(id);
    const late = await errorOf(client.cancel(id));
    expect(late).toMatchObject({ status: 409, code: 'JOB_NOT_CANCELLABLE' });
    expect(isApiError(late, 'JOB_NOT_CANCELLABLE')).toBe(true);
    for (const error of [invalid, late]) expect(ERROR_CODES).toContain(error.code);
  });

  it('wait() gives up after its total timeout with the last view', async () => {
    await stack.emulator.client.addFault({ kind: 'slow', delayMs: 3_000, count: 1 });
    const { id } = await client.enqueue({ prompt: 'a slow one' });
    const error = await client.wait(id, { timeoutMs: 1_000, pollSeconds: 1 }).catch((e: unknown) => e);
    expect(isTimeoutError(error)).toBe(true);
    expect(['queued', 'active']).toContain((error as { lastView: JobView }).lastView.status);
    expect((await client.wait(id, { timeoutMs: 30_000 })).status).toBe('completed');
  });

  it('events(): one job\'s stream ends after its final event; a dropped stream resumes with Last-Event-ID, nothing lost or repeated', async () => {
    const { id } = await client.enqueue({ prompt: 'follow me' });
    const whole: StreamedJobEvent[] = [];
    for await (const event of client.events({ jobId: id })) whole.push(event);
    expect(whole.map((event) => event.type)).toEqual(['queued', 'active', 'completed']);
    expect(whole.at(-1)!.view!.status).toBe('completed');

    proxy.plan((req) => req.path === `/v1/jobs/${id}/events`, ['cut-after-first-event']);
    const resumed: StreamedJobEvent[] = [];
    for await (const event of viaProxy().events({ jobId: id })) resumed.push(event);
    expect(resumed.map((event) => event.id)).toEqual(whole.map((event) => event.id));
    const attempts = proxy.seen.filter((req) => req.path === `/v1/jobs/${id}/events`);
    expect(attempts.map((req) => req.headers['last-event-id'])).toEqual([undefined, whole[0]!.id]);

    const after = [];
    for await (const event of client.events({ jobId: id, lastEventId: whole[0]!.id })) after.push(event);
    expect(after.map((event) => event.id)).toEqual(whole.slice(1).map((event) => event.id));
  });

  it('events() of the tenant: live ends of jobs enqueued after it opened; break closes it', async () => {
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    const ids = new Set<string>();
    const ends: string[] = [];
    const following = (async () => {
      for await (const event of client.events({ onOpen: open })) {
        if (ids.has(event.jobId) && event.type === 'completed') ends.push(event.jobId);
        if (ends.length === 3) break;
      }
    })();
    await opened;
    for (const job of (await client.enqueueBulk([{ prompt: 'one' }, { prompt: 'two' }, { prompt: 'three' }])).jobs) ids.add(job.id);
    await following;
    expect(new Set(ends)).toEqual(ids);
  });

  it('usage(): the answer has exactly the fields the client types name', async () => {
    const usage = await client.usage();
    const top: Record<keyof UsageResponse, true> = { tenant: true, day: true, month: true, today: true, thisMonth: true, budget: true };
    const period: Record<keyof UsageView | 'byModel', true> = {
      jobs: true, failures: true, inputTokens: true, outputTokens: true, thoughtsTokens: true, cachedTokens: true, costUsd: true,
      costNanoUsd: true, cacheHits: true, savedUsd: true, savedNanoUsd: true, unpricedJobs: true, byModel: true,
    };
    expect(Object.keys(usage).sort()).toEqual(Object.keys(top).sort());
    expect(Object.keys(usage.today).sort()).toEqual(Object.keys(period).sort());
    expect(usage.tenant).toBe('acme');
    expect(usage.today.jobs).toBeGreaterThan(0);
    for (const model of Object.values(usage.today.byModel)) {
      expect(Object.keys(model).sort()).toEqual(Object.keys(period).filter((key) => key !== 'byModel').sort());
    }
    const budgetKeys: Record<keyof BudgetView, true> = { limitUsd: true, spentUsd: true, reservedUsd: true, remainingUsd: true, resetsAt: true };
    expect(Object.keys(budgetKeys)).toHaveLength(5); // acme has no budget here: budget is null
    expect(usage.budget).toBeNull();
  });

  it('enqueueBulk sends more than 1,000 jobs in chunks, and reports all-or-none per chunk', async () => {
    const many = Array.from({ length: 1_001 }, (_, i) => ({ kind: 'embed' as const, prompt: `bulk embed ${i}` }));
    const sent = proxy.seen.length;
    const big = await viaProxy().enqueueBulk(many);
    expect(big.ok).toBe(true);
    expect(big.chunks.map((chunk) => [chunk.status, chunk.offset, chunk.count])).toEqual([
      ['accepted', 0, 1_000],
      ['accepted', 1_000, 1],
    ]);
    expect(new Set(big.jobs.map((job) => job.id)).size).toBe(1_001);
    expect(proxy.seen.slice(sent).map((req) => req.path)).toEqual(['/v1/jobs/bulk', '/v1/jobs/bulk']);

    const jobs = [{ prompt: 'a' }, { prompt: 'b' }, { prompt: 'c' }, { prompt: 'd', model: 'no-such-model' }, { prompt: 'e' }];
    const stopped = await client.enqueueBulk(jobs, { chunkSize: 2 });
    expect(stopped.ok).toBe(false);
    expect(stopped.chunks.map((chunk) => chunk.status)).toEqual(['accepted', 'rejected', 'not-sent']);
    const rejected = stopped.chunks[1]!;
    if (rejected.status !== 'rejected') throw new Error('expected a rejected chunk');
    expect(rejected.error.details).toEqual([expect.objectContaining({ path: 'jobs[1].model', code: 'UNKNOWN_MODEL' })]);
    expect(stopped.jobs).toHaveLength(2);

    const onward = await client.enqueueBulk(jobs, { chunkSize: 2, continueOnError: true });
    expect(onward.chunks.map((chunk) => chunk.status)).toEqual(['accepted', 'rejected', 'accepted']);
    expect(onward.jobs).toHaveLength(3);
  });
});
