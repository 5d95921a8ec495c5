// Live job events over Server-Sent Events, through a real listening server and a hand-written SSE
// client (fetch reading the body stream). Events the worker would write are appended with
// appendJobEvents directly. Every wait is on an event itself, with a timeout.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { appendJobEvents, readJobEvents, type JobEvent } from '@prompt-queue/shared';
import { startTestRedis, waitFor, type TestRedis } from '@prompt-queue/shared/testing';
import { ACME, GLOBEX, RESULT, startHarness, type Harness } from './harness.js';

interface Frame {
  id?: string;
  event?: string;
  data?: string;
  comment?: string;
}

/** A minimal EventSource: frames in arrival order; `next` waits for the next event (comments skipped). */
interface SseClient {
  status: number;
  headers: Headers;
  frames: Frame[];
  next(timeoutMs?: number): Promise<Frame & { json: JobEvent }>;
  /** Resolves when the server ends the stream. */
  ended: Promise<void>;
  close(): void;
}

let redisServer: TestRedis;
let h: Harness;
let server: Server;
let base: string;
const clients: SseClient[] = [];

async function listen(harness: Harness): Promise<void> {
  server = createServer(harness.app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeAll(async () => {
  redisServer = await startTestRedis();
});
afterAll(async () => {
  await redisServer?.stop();
});
beforeEach(async () => {
  h = await startHarness(redisServer.url, { EVENTS_HEARTBEAT_SECONDS: '1' });
  await listen(h);
});
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await h.close();
});

async function connect(path: string, headers: Record<string, string> = ACME): Promise<SseClient> {
  const controller = new AbortController();
  const response = await fetch(`${base}${path}`, { headers, signal: controller.signal });
  const frames: Frame[] = [];
  let wake: () => void = () => {};
  let done = false;
  let consumed = 0;
  const ended = (async () => {
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for (;;) {
        const { value, done: finished } = await reader.read();
        if (finished) break;
        buffer += decoder.decode(value, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          frames.push(parseFrame(buffer.slice(0, end)));
          buffer = buffer.slice(end + 2);
          wake();
        }
      }
    } catch {
      // aborted by close()
    } finally {
      done = true;
      wake();
    }
  })();
  const client: SseClient = {
    status: response.status,
    headers: response.headers,
    frames,
    ended,
    close: () => controller.abort(),
    async next(timeoutMs = 5_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        while (consumed < frames.length) {
          const frame = frames[consumed++]!;
          if (frame.event !== undefined) return { ...frame, json: JSON.parse(frame.data ?? 'null') as JobEvent };
        }
        if (done) throw new Error(`the stream ended; frames: ${JSON.stringify(frames)}`);
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no event within ${timeoutMs} ms; frames: ${JSON.stringify(frames)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, left);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
  };
  clients.push(client);
  return client;
}

function parseFrame(text: string): Frame {
  const frame: Frame = {};
  for (const line of text.split('\n')) {
    if (line.startsWith(':')) frame.comment = line.slice(1).trim();
    const match = /^(id|event|data): ?(.*)$/.exec(line);
    if (match) frame[match[1] as 'id' | 'event' | 'data'] = match[2]!;
  }
  return frame;
}

async function within<T>(promise: Promise<T>, ms = 5_000, what = 'the stream to end'): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/** Plays the worker: appends events the way its job-end recorder does. */
async function emit(tenant: string, jobId: string, ...events: Omit<JobEvent, 'jobId' | 'tenant' | 'at'>[]): Promise<void> {
  const pipeline = h.redis.pipeline();
  appendJobEvents(pipeline, h.config.redis.prefix, events.map((event) => ({ ...event, jobId, tenant, at: new Date().toISOString() })), h.config.events.historyPerTenant);
  await pipeline.exec();
}

async function enqueue(headers = ACME): Promise<string> {
  const response = await h.http.post('/v1/jobs').set(headers).send({ prompt: 'Tell me about streams' });
  expect(response.status).toBe(202);
  return response.body.id as string;
}

const view = (id: string) => ({ id, status: 'completed' as const, model: 'gemini-3.6-flash', attempts: 1, createdAt: new Date().toISOString(), finishedAt: new Date().toISOString() });

describe('GET /v1/jobs/:id/events', () => {
  it('streams a job\'s events in order, from its queued event to its final one, then ends the stream', async () => {
    const id = await enqueue();
    const stream = await connect(`/v1/jobs/${id}/events`);
    expect(stream.status).toBe(200);
    expect(stream.headers.get('content-type')).toMatch(/^text\/event-stream/);

    const queued = await stream.next();
    expect(queued).toMatchObject({ event: 'queued', id: expect.stringMatching(/^\d+-\d+$/), json: { type: 'queued', jobId: id, tenant: 'acme' } });
    await emit('acme', id, { type: 'active', attempt: 1 }, { type: 'retrying', attempt: 1, code: 'PROVIDER_UNAVAILABLE' });
    await emit('acme', id, { type: 'waiting', reason: 'quota', until: new Date(Date.now() + 60_000).toISOString() }, { type: 'active', attempt: 2 });
    await emit('acme', id, { type: 'completed', attempt: 2, view: view(id) });

    const rest = [await stream.next(), await stream.next(), await stream.next(), await stream.next(), await stream.next()];
    expect(rest.map((frame) => frame.event)).toEqual(['active', 'retrying', 'waiting', 'active', 'completed']);
    expect(rest.map((frame) => frame.json.type)).toEqual(rest.map((frame) => frame.event));
    expect(rest[1]!.json).toMatchObject({ code: 'PROVIDER_UNAVAILABLE', attempt: 1 });
    expect(rest[4]!.json.view).toMatchObject({ id, status: 'completed' });
    const ids = [queued.id!, ...rest.map((frame) => frame.id!)];
    expect(new Set(ids).size).toBe(6);
    await within(stream.ended);
    expect(JSON.stringify(stream.frames)).not.toContain('Tell me about streams');
  });

  it('shows only its own job\'s events, replayed from the start of the history', async () => {
    const id = await enqueue();
    const other = await enqueue();
    await emit('acme', other, { type: 'active', attempt: 1 });
    await emit('acme', id, { type: 'active', attempt: 1 });
    const stream = await connect(`/v1/jobs/${id}/events`);
    expect((await stream.next()).event).toBe('queued');
    expect((await stream.next()).json).toMatchObject({ type: 'active', jobId: id });
    await emit('acme', other, { type: 'completed', view: view(other) });
    await emit('acme', id, { type: 'failed', code: 'PROMPT_BLOCKED' });
    expect((await stream.next()).json).toMatchObject({ type: 'failed', jobId: id, code: 'PROMPT_BLOCKED' });
    await within(stream.ended);
    expect(stream.frames.every((frame) => !frame.data || JSON.parse(frame.data).jobId === id)).toBe(true);
  });

  it('resumes after a disconnect with Last-Event-ID: nothing missed, nothing repeated', async () => {
    const id = await enqueue();
    const first = await connect(`/v1/jobs/${id}/events`);
    await emit('acme', id, { type: 'active', attempt: 1 });
    const seen = [await first.next(), await first.next()];
    first.close();
    await waitFor(() => h.liveEvents.size === 0, { what: 'the subscription to go' });

    // While nobody listens: a retry, a wait, the second attempt.
    await emit('acme', id, { type: 'retrying', attempt: 1, code: 'PROVIDER_TIMEOUT' }, { type: 'waiting', reason: 'rate-limited', until: new Date().toISOString() }, { type: 'active', attempt: 2 });
    const second = await connect(`/v1/jobs/${id}/events`, { ...ACME, 'Last-Event-ID': seen.at(-1)!.id! });
    seen.push(await second.next(), await second.next(), await second.next());
    await emit('acme', id, { type: 'completed', attempt: 2, view: view(id) });
    seen.push(await second.next());
    await within(second.ended);

    expect(seen.map((frame) => frame.event)).toEqual(['queued', 'active', 'retrying', 'waiting', 'active', 'completed']);
    const stored = await readJobEvents(h.redis, h.config.redis.prefix, 'acme', '0', 100);
    expect(seen.map((frame) => frame.id)).toEqual(stored.filter((event) => event.jobId === id).map((event) => event.id));
  });

  it('takes ?lastEventId= for clients that cannot set headers; the header wins when both are sent', async () => {
    const id = await enqueue();
    await emit('acme', id, { type: 'active', attempt: 1 }, { type: 'completed', view: view(id) });
    const [queued, active] = await readJobEvents(h.redis, h.config.redis.prefix, 'acme', '0', 10);
    const byQuery = await connect(`/v1/jobs/${id}/events?lastEventId=${queued!.id}`);
    expect((await byQuery.next()).id).toBe(active!.id);
    const both = await connect(`/v1/jobs/${id}/events?lastEventId=${queued!.id}`, { ...ACME, 'Last-Event-ID': active!.id });
    expect((await both.next()).event).toBe('completed');
    await within(both.ended);
  });

  it('ends the stream of a job that finished without its final event in the history, and answers 204 to a resume after the end', async () => {
    const worker = await h.startWorker(async () => RESULT);
    const id = await enqueue();
    await waitFor(async () => (await h.http.get(`/v1/jobs/${id}`).set(ACME)).body.status === 'completed', { what: 'the job to complete' });
    await worker.close();

    const stream = await connect(`/v1/jobs/${id}/events`);
    const queued = await stream.next();
    expect(queued.event).toBe('queued');
    const end = await stream.next();
    // From the job itself: no id, as it has no place in the stream.
    expect(end).toMatchObject({ event: 'completed', json: { type: 'completed', jobId: id, view: { id, status: 'completed', result: { text: RESULT.text } } } });
    expect(end.id).toBeUndefined();
    await within(stream.ended);

    const resumed = await fetch(`${base}/v1/jobs/${id}/events`, { headers: { ...ACME, 'Last-Event-ID': queued.id! } });
    expect(resumed.status).toBe(204);
  });

  it('is tenant-scoped: another tenant\'s job is a 404, like GET /v1/jobs/:id', async () => {
    const globexJob = await enqueue(GLOBEX);
    for (const path of [`/v1/jobs/${globexJob}/events`, '/v1/jobs/jffffffffffffffffffffffffffffffff/events', '/v1/jobs/not-a-job/events']) {
      const response = await h.http.get(path).set(ACME);
      expect(response.status, path).toBe(404);
      expect(response.body).toEqual({ error: { code: 'NOT_FOUND', message: 'No such job.' } });
    }
    expect((await h.http.get(`/v1/jobs/${globexJob}/events`)).status).toBe(401);
  });
});

describe('GET /v1/events', () => {
  it('follows all of the tenant\'s jobs from now on, and never another tenant\'s', async () => {
    const before = await enqueue();
    const stream = await connect('/v1/events');
    expect(stream.status).toBe(200);
    const globexJob = await enqueue(GLOBEX);
    await emit('globex', globexJob, { type: 'active', attempt: 1 });
    const after = await h.http.post('/v1/jobs/bulk').set(ACME).send({ jobs: [{ prompt: 'a' }, { prompt: 'b' }] });
    const [a, b] = after.body.jobs.map((job: { id: string }) => job.id) as string[];
    await emit('acme', a!, { type: 'active', attempt: 1 });

    const frames = [await stream.next(), await stream.next(), await stream.next()];
    expect(frames.map((frame) => [frame.event, frame.json.jobId])).toEqual([['queued', a], ['queued', b], ['active', a]]);
    expect(frames.every((frame) => frame.json.tenant === 'acme')).toBe(true);
    expect(stream.frames.some((frame) => frame.data?.includes(before) || frame.data?.includes(globexJob))).toBe(false);
  });

  it('resumes with Last-Event-ID over the retained history: nothing missed, nothing repeated', async () => {
    const stream = await connect('/v1/events');
    const ids = [await enqueue(), await enqueue()];
    const seen = [await stream.next(), await stream.next()];
    stream.close();
    await waitFor(() => h.liveEvents.size === 0, { what: 'the subscription to go' });
    await emit('acme', ids[0]!, { type: 'active', attempt: 1 }, { type: 'completed', view: view(ids[0]!) });
    const third = await enqueue();

    const resumed = await connect('/v1/events', { ...ACME, 'Last-Event-ID': seen[1]!.id! });
    seen.push(await resumed.next(), await resumed.next(), await resumed.next());
    await emit('acme', third, { type: 'active', attempt: 1 });
    seen.push(await resumed.next());

    expect(seen.map((frame) => [frame.event, frame.json.jobId])).toEqual([
      ['queued', ids[0]], ['queued', ids[1]], ['active', ids[0]], ['completed', ids[0]], ['queued', third], ['active', third],
    ]);
    const stored = await readJobEvents(h.redis, h.config.redis.prefix, 'acme', '0', 100);
    expect(seen.map((frame) => frame.id)).toEqual(stored.map((event) => event.id));
    // lastEventId=0 replays the whole retained history.
    const replay = await connect('/v1/events?lastEventId=0');
    for (const event of stored) expect((await replay.next()).id).toBe(event.id);
  });

  it('sends a ": ping" comment while idle, so proxies keep the connection', async () => {
    const stream = await connect('/v1/events');
    await waitFor(() => stream.frames.some((frame) => frame.comment === 'ping'), { timeoutMs: 5_000, what: 'a heartbeat' });
  });

  it('ends open streams when the producer shuts down', async () => {
    const all = await connect('/v1/events');
    const one = await connect(`/v1/jobs/${await enqueue()}/events`);
    expect((await one.next()).event).toBe('queued');
    await h.liveEvents.close();
    await within(Promise.all([all.ended, one.ended]));
  });
});

describe('bad input and outages', () => {
  it('answers 400 VALIDATION_FAILED to a malformed Last-Event-ID or lastEventId', async () => {
    const id = await enqueue();
    for (const path of ['/v1/events', `/v1/jobs/${id}/events`]) {
      for (const bad of ['abc', '1-2-3', '-1', '99999999999999999999999', '$']) {
        const byHeader = await h.http.get(path).set(ACME).set('Last-Event-ID', bad);
        expect(byHeader.status, `${path} ${bad}`).toBe(400);
        expect(byHeader.body.error).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('Last-Event-ID') });
      }
      const byQuery = await h.http.get(`${path}?lastEventId=nope`).set(ACME);
      expect(byQuery.status).toBe(400);
      expect(byQuery.body.error).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('lastEventId') });
    }
  });

  it('answers 503 REDIS_UNAVAILABLE while Redis is down', async () => {
    const id = await enqueue();
    const own = await startTestRedis();
    const down = await startHarness(own.url);
    try {
      await own.stop();
      await waitFor(() => down.redis.status !== 'ready', { what: 'the client to notice' });
      for (const path of ['/v1/events', '/v1/events?lastEventId=0', `/v1/jobs/${id}/events`]) {
        const response = await down.http.get(path).set(ACME);
        expect(response.status, path).toBe(503);
        expect(response.body.error.code).toBe('REDIS_UNAVAILABLE');
      }
    } finally {
      await down.close();
    }
  });
});
