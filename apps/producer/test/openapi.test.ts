// The OpenAPI document (issue 13, item 1): it is valid OpenAPI 3.1, it is served at /openapi.json
// and /docs, and no answer of the running producer disagrees with it. One producer on a real
// listening server and a private Redis for the whole file; every request goes through `call`,
// which checks the answer against the document. The last test stops Redis (the 503s), and a final
// check fails if a documented answer was never exercised.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { UnrecoverableError } from 'bullmq';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BudgetGuard, formatFailedReason } from '@prompt-queue/shared';
import { startTestRedis, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import { buildOpenApiDocument, openApiOptions } from '../src/openapi/document.js';
import { Contract, parseFrames } from './contract.js';
import { ACME, GLOBEX, RESULT, startHarness, type Harness } from './harness.js';

const METRICS = { authorization: 'Bearer metrics-secret-token-1234' };
const SECRET = 'a-webhook-secret-of-enough-length';

let redisServer: TestRedis;
let h: Harness;
let server: Server;
let base: string;
let contract: Contract;

interface Called {
  status: number;
  headers: Headers;
  text: string;
  json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

/** One request to the running producer; its answer is checked against the document. */
async function call(
  method: string,
  path: string,
  options: { headers?: Record<string, string>; body?: unknown; raw?: string; contentType?: string; until?: (text: string) => boolean } = {},
): Promise<Called> {
  const controller = new AbortController();
  const body = options.raw ?? (options.body === undefined ? undefined : JSON.stringify(options.body));
  const headers = { ...(body !== undefined ? { 'content-type': options.contentType ?? 'application/json' } : {}), ...options.headers };
  const response = await fetch(`${base}${path}`, { method, headers, body, signal: controller.signal });
  let text = '';
  if (options.until) {
    // A stream that stays open: read until the test has what it needs, then hang up.
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    const deadline = Date.now() + 5_000;
    while (!options.until(text) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    controller.abort();
  } else {
    text = await response.text();
  }
  const answer = { status: response.status, headers: response.headers, text };
  contract.check(method, path, answer);
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { ...answer, json };
}

beforeAll(async () => {
  redisServer = await startTestRedis();
  h = await startHarness(
    redisServer.url,
    { MAX_REQUEST_BYTES: '65536', MAX_IMAGE_BYTES: '32768', METRICS_TOKEN: 'metrics-secret-token-1234', EVENTS_HEARTBEAT_SECONDS: '1' },
    (config) => {
      config.tenants = { globex: { dailyUsd: 0.01, onExceeded: 'fail' } } as typeof config.tenants;
      // Small enough that a few hundred characters are PROMPT_TOO_LARGE, well under the body limit.
      config.models[config.gemini.defaultModel]!.inputTokenLimit = 50;
    },
  );
  server = createServer(h.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  contract = new Contract((await (await fetch(`${base}/openapi.json`)).json()) as Record<string, unknown>);
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => server?.close(resolve));
  await h?.close();
  await redisServer?.stop();
});

describe('the OpenAPI document', () => {
  it('is valid OpenAPI 3.1 (schema validator) and every schema in it compiles under JSON Schema 2020-12', async () => {
    const document = buildOpenApiDocument(openApiOptions(h.config));
    const validator = new Validator();
    const result = await validator.validate(document);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
    expect(validator.version).toBe('3.1');
    for (const name of Object.keys(contract.document.components.schemas)) contract.compile(`#/components/schemas/${name}`);
    // The same document is served.
    expect(contract.document).toEqual(JSON.parse(JSON.stringify(document)));
  });

  it('lists every error code of the catalogue, the webhook with its signature headers, and the request headers', () => {
    const { components, paths, webhooks } = contract.document;
    expect(components.schemas.ErrorCode.enum).toContain('BUDGET_EXCEEDED');
    const headerNames = (op: { parameters?: { in: string; name: string }[] }) => (op.parameters ?? []).filter((p) => p.in === 'header').map((p) => p.name);
    expect(headerNames(paths['/v1/jobs'].post)).toEqual(['Idempotency-Key']);
    expect(headerNames(paths['/v1/events'].get)).toEqual(['Last-Event-ID']);
    expect(headerNames(webhooks.jobEnded.post)).toEqual(['PromptQueue-Signature', 'PromptQueue-Event-Id', 'PromptQueue-Delivery-Attempt']);
    expect(webhooks.jobEnded.post.requestBody.content['application/json'].schema).toEqual({ $ref: '#/components/schemas/WebhookEvent' });
    expect(components.securitySchemes.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
  });

  it('is served at /openapi.json and rendered at /docs without any script', async () => {
    const json = await call('GET', '/openapi.json');
    expect(json.status).toBe(200);
    const page = await call('GET', '/docs');
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toMatch(/^default-src 'none'; style-src 'sha256-/);
    expect(page.text).not.toMatch(/<script|https?:\/\/(?!127\.0\.0\.1)/i);
    expect(page.text).toContain('/v1/jobs/{id}/events');
    expect(page.text).toContain('id="schema-JobView"');
  });
});

describe('every answer of the running producer agrees with the document', () => {
  it('POST /v1/jobs: accepted, replayed, and each refusal', async () => {
    expect((await call('POST', '/v1/jobs', { headers: ACME, body: { prompt: 'hello' } })).status).toBe(202);
    const keyed = { headers: { ...ACME, 'Idempotency-Key': 'k-1' }, body: { prompt: 'same' } };
    expect((await call('POST', '/v1/jobs', keyed)).status).toBe(202);
    expect((await call('POST', '/v1/jobs', keyed)).status).toBe(202);
    const conflict = await call('POST', '/v1/jobs', { ...keyed, body: { prompt: 'different' } });
    expect([conflict.status, conflict.json.error.code]).toEqual([409, 'IDEMPOTENCY_CONFLICT']);

    const refusals: [unknown, number, string][] = [
      [{}, 400, 'VALIDATION_FAILED'],
      [{ prompt: 'x', colour: 'blue' }, 400, 'VALIDATION_FAILED'],
      [{ prompt: 'x', model: 'no-such-model' }, 400, 'UNKNOWN_MODEL'],
      [{ prompt: 'x', webhook: { url: 'http://127.0.0.1:9/hook', secret: SECRET } }, 400, 'WEBHOOK_URL_NOT_ALLOWED'],
      [{ prompt: 'word '.repeat(200) }, 413, 'PROMPT_TOO_LARGE'],
      [{ prompt: 'x'.repeat(70_000) }, 413, 'PAYLOAD_TOO_LARGE'],
      [{ prompt: 'x', images: [{ mimeType: 'image/gif', data: 'R0lGODlh' }] }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ];
    for (const [body, status, code] of refusals) {
      const answer = await call('POST', '/v1/jobs', { headers: ACME, body });
      expect([answer.status, answer.json.error.code], JSON.stringify(body).slice(0, 80)).toEqual([status, code]);
    }
    expect((await call('POST', '/v1/jobs', { headers: ACME, raw: '{"prompt":' })).json.error.code).toBe('INVALID_JSON');
    expect((await call('POST', '/v1/jobs', { headers: ACME, raw: 'hello', contentType: 'text/plain' })).status).toBe(415);
    expect((await call('POST', '/v1/jobs', { body: { prompt: 'x' } })).status).toBe(401);
    expect((await call('POST', '/v1/jobs', { headers: { authorization: 'Bearer wrong' }, body: { prompt: 'x' } })).status).toBe(401);

    const guard = new BudgetGuard(h.redis, h.config.redis.prefix, h.config.tenants);
    const [decision] = await guard.reserve([{ tenant: 'globex', amountNanoUsd: 10_000_000 }]);
    if (!decision?.ok) throw new Error('reservation refused');
    await guard.settle([{ reservation: decision.reservation, actualNanoUsd: 10_000_000 }]);
    expect((await call('POST', '/v1/jobs', { headers: GLOBEX, body: { prompt: 'over budget' } })).status).toBe(402);
  });

  it('POST /v1/jobs/bulk: accepted and each refusal', async () => {
    const accepted = await call('POST', '/v1/jobs/bulk', { headers: ACME, body: { jobs: [{ prompt: 'a' }, { prompt: 'b', idempotencyKey: 'b-1' }] } });
    expect(accepted.status).toBe(202);
    const invalid = await call('POST', '/v1/jobs/bulk', { headers: ACME, body: { jobs: [{ prompt: 'ok' }, { images: [{ mimeType: 'image/gif', data: '' }], prompt: 'x' }] } });
    expect([invalid.status, invalid.json.error.details[0].code]).toEqual([400, 'UNSUPPORTED_MEDIA_TYPE']);
    const header = await call('POST', '/v1/jobs/bulk', { headers: { ...ACME, 'Idempotency-Key': 'x' }, body: { jobs: [{ prompt: 'a' }] } });
    expect(header.status).toBe(400);
    const conflict = await call('POST', '/v1/jobs/bulk', { headers: ACME, body: { jobs: [{ prompt: 'c', idempotencyKey: 'b-1' }] } });
    expect(conflict.status).toBe(409);
    const webhook = await call('POST', '/v1/jobs/bulk', { headers: ACME, body: { jobs: [{ prompt: 'c', webhook: { url: 'http://10.0.0.1/', secret: SECRET } }] } });
    expect(webhook.json.error.code).toBe('WEBHOOK_URL_NOT_ALLOWED');
    expect((await call('POST', '/v1/jobs/bulk', { headers: ACME, raw: '[', contentType: 'application/json' })).status).toBe(400);
    expect((await call('POST', '/v1/jobs/bulk', { headers: ACME, body: { jobs: [{ prompt: 'x'.repeat(70_000) }] } })).status).toBe(413);
    expect((await call('POST', '/v1/jobs/bulk', { headers: ACME, raw: 'a', contentType: 'text/plain' })).status).toBe(415);
    expect((await call('POST', '/v1/jobs/bulk', { body: { jobs: [] } })).status).toBe(401);
    expect((await call('POST', '/v1/jobs/bulk', { headers: GLOBEX, body: { jobs: [{ prompt: 'over budget' }] } })).status).toBe(402);
  });

  it('GET and DELETE /v1/jobs/{id} and the events of a job: queued, completed, failed, cancelled', async () => {
    const worker = await h.startWorker(async (job) => {
      if (job.data.metadata?.outcome === 'fail') throw new UnrecoverableError(formatFailedReason('PROVIDER_BAD_REQUEST', 'the provider refused it'));
      return RESULT;
    });
    const done = (await call('POST', '/v1/jobs', { headers: ACME, body: { prompt: 'finish me', metadata: { outcome: 'complete' } } })).json.id;
    const failed = (await call('POST', '/v1/jobs', { headers: ACME, body: { prompt: 'fail me', metadata: { outcome: 'fail' } } })).json.id;
    const completed = await call('GET', `/v1/jobs/${done}?wait=5`, { headers: ACME });
    expect(completed.json.status).toBe('completed');
    const failedView = await call('GET', `/v1/jobs/${failed}?wait=5`, { headers: ACME });
    expect(failedView.json.error.code).toBe('PROVIDER_BAD_REQUEST');
    await worker.close();

    const queued = (await call('POST', '/v1/jobs', { headers: ACME, body: { prompt: 'cancel me' } })).json.id;
    expect((await call('GET', `/v1/jobs/${queued}?wait=0.1`, { headers: ACME })).json.status).toBe('queued');
    expect((await call('DELETE', `/v1/jobs/${queued}`, { headers: ACME })).json.status).toBe('cancelled');
    expect((await call('GET', `/v1/jobs/${queued}`, { headers: ACME })).json.status).toBe('cancelled');
    expect((await call('DELETE', `/v1/jobs/${done}`, { headers: ACME })).status).toBe(409);
    expect((await call('GET', `/v1/jobs/${done}?wait=soon`, { headers: ACME })).status).toBe(400);
    for (const method of ['GET', 'DELETE']) {
      expect((await call(method, '/v1/jobs/no-such-job', { headers: ACME })).status).toBe(404);
      expect((await call(method, `/v1/jobs/${done}`, { headers: GLOBEX })).status).toBe(404);
      expect((await call(method, `/v1/jobs/${done}`)).status).toBe(401);
    }

    // A cancelled job's stream: its events from the history, ending with `cancelled`.
    const cancelledEvents = await call('GET', `/v1/jobs/${queued}/events`, { headers: ACME });
    expect(parseFrames(cancelledEvents.text).map((frame) => frame.event)).toEqual(['queued', 'cancelled']);
    // A completed job whose end is not in the history (no real worker wrote it): rebuilt from the job.
    const completedEvents = await call('GET', `/v1/jobs/${done}/events`, { headers: ACME });
    expect(parseFrames(completedEvents.text).at(-1)?.event).toBe('completed');
    // Resuming after everything, the job already ended: 204.
    const resumed = await call('GET', `/v1/jobs/${done}/events`, { headers: { ...ACME, 'Last-Event-ID': `${Date.now() + 60_000}-0` } });
    expect(resumed.status).toBe(204);
    expect((await call('GET', `/v1/jobs/${done}/events?lastEventId=yesterday`, { headers: ACME })).status).toBe(400);
    expect((await call('GET', '/v1/jobs/no-such-job/events', { headers: ACME })).status).toBe(404);
    expect((await call('GET', `/v1/jobs/${done}/events`)).status).toBe(401);
  });

  it('GET /v1/events streams the tenant\'s events', async () => {
    const streaming = call('GET', '/v1/events', { headers: ACME, until: (text) => text.includes('event: queued') });
    let answer: Called | undefined;
    void streaming.then((value) => (answer = value));
    await waitFor(
      async () => {
        await call('POST', '/v1/jobs', { headers: ACME, body: { prompt: 'tell the stream' } });
        return answer;
      },
      { what: 'a queued event on /v1/events', intervalMs: 200 },
    );
    expect(answer!.status).toBe(200);
    expect((await call('GET', '/v1/events', { headers: { ...ACME, 'Last-Event-ID': 'not-an-id' } })).status).toBe(400);
    expect((await call('GET', '/v1/events')).status).toBe(401);
  });

  it('GET /v1/usage, health, metrics, unknown paths and methods', async () => {
    const usage = await call('GET', '/v1/usage', { headers: GLOBEX });
    expect(usage.json.budget.daily.limitUsd).toBe(0.01);
    expect((await call('GET', '/v1/usage', { headers: ACME })).json.budget).toBeNull();
    expect((await call('GET', '/v1/usage')).status).toBe(401);
    expect((await call('GET', '/healthz')).status).toBe(200);
    expect((await call('GET', '/readyz')).status).toBe(200);
    expect((await call('GET', '/metrics', { headers: METRICS })).status).toBe(200);
    expect((await call('GET', '/metrics')).status).toBe(401);
    const scaling = await call('GET', '/scaling', { headers: METRICS });
    expect(scaling.status).toBe(200);
    expect(scaling.json.recommendedWorkers).toBeGreaterThanOrEqual(0);
    expect((await call('GET', '/scaling')).status).toBe(401);

    expect((await call('GET', '/nope')).status).toBe(404);
    expect((await call('GET', '/v1/nope', { headers: ACME })).status).toBe(404);
    for (const path of Object.keys(contract.document.paths)) {
      const concrete = path.replace('{id}', 'some-id');
      expect((await call('PUT', concrete, { headers: path.startsWith('/v1') ? ACME : {} })).status, path).toBe(405);
    }
  });

  it('while Redis is down: 503 REDIS_UNAVAILABLE where documented', async () => {
    const id = (await call('POST', '/v1/jobs', { headers: ACME, body: { prompt: 'before the outage' } })).json.id;
    await redisServer.stop();
    await waitFor(() => h.redis.status !== 'ready', { what: 'the client to notice' });
    const down: [string, string, unknown?][] = [
      ['POST', '/v1/jobs', { prompt: 'x' }],
      ['POST', '/v1/jobs/bulk', { jobs: [{ prompt: 'x' }] }],
      ['GET', `/v1/jobs/${id}`],
      ['DELETE', `/v1/jobs/${id}`],
      ['GET', `/v1/jobs/${id}/events`],
      ['GET', '/v1/events'],
      ['GET', '/v1/usage'],
      ['GET', '/readyz'],
    ];
    for (const [method, path, body] of down) {
      const answer = await call(method, path, { headers: ACME, ...(body ? { body } : {}) });
      expect([answer.status, answer.json?.error?.code], `${method} ${path}`).toEqual([503, 'REDIS_UNAVAILABLE']);
    }
    const scaling = await call('GET', '/scaling', { headers: METRICS });
    expect([scaling.status, scaling.json?.error?.code]).toEqual([503, 'REDIS_UNAVAILABLE']);
  });

  it('no documented answer went unexercised (500 INTERNAL aside)', () => {
    const missing = contract.documented().filter((entry) => !entry.endsWith(' 500') && !contract.seen.has(entry));
    expect(missing).toEqual([]);
    expect(contract.seen).toContain('* * 405');
    expect(contract.seen).toContain('* * 404');
  });
});
