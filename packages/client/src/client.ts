import { PromptQueueApiError, PromptQueueNetworkError, PromptQueueTimeoutError } from './errors.js';
import { backoffMs, resolveRetry, retryAfterMs, sleep, type ResolvedRetry, type RetryOptions } from './retry.js';
import { parseSse } from './sse.js';
import {
  isFinalStatus,
  type Accepted,
  type ErrorBody,
  type JobEvent,
  type JobRequest,
  type JobView,
  type StreamedJobEvent,
  type UsageResponse,
} from './types.js';

/** The server's largest bulk request (`POST /v1/jobs/bulk`). */
export const MAX_BULK_JOBS = 1_000;

export interface ClientOptions {
  /** The producer's base URL, e.g. `http://127.0.0.1:3000` (no `/v1`). */
  url: string;
  /** A tenant's API key (`API_KEYS`), sent as `Authorization: Bearer`. */
  apiKey: string;
  /** Retries on 502/503/504 and network errors. */
  retry?: RetryOptions;
  /** Timeout of one attempt of a request, ms (long-polls add their wait). @defaultValue 30000 */
  timeoutMs?: number;
  /** @defaultValue the global `fetch` */
  fetch?: typeof fetch;
  /** Makes the idempotency key of a job that has none. @defaultValue `crypto.randomUUID()` */
  newIdempotencyKey?: () => string;
}

export interface RequestOptions {
  signal?: AbortSignal;
}

export interface EnqueueBulkOptions extends RequestOptions {
  /** Jobs per request, at most 1,000. @defaultValue 1000 */
  chunkSize?: number;
  /** Keep sending the next chunks after one is rejected. @defaultValue false */
  continueOnError?: boolean;
}

/**
 * One chunk of a bulk enqueue. The server takes a chunk all or none: either every job of it was
 * accepted, or none was (`rejected`, with the error; its `details` paths are `jobs[i]` relative
 * to `offset`). `not-sent`: an earlier chunk was rejected and `continueOnError` was off.
 */
export type BulkChunk =
  | { status: 'accepted'; offset: number; count: number; jobs: Accepted[] }
  | { status: 'rejected'; offset: number; count: number; error: PromptQueueApiError }
  | { status: 'not-sent'; offset: number; count: number };

export interface BulkResult {
  /** True when every chunk was accepted. */
  ok: boolean;
  /** In input order; chunk `i` holds jobs `[offset, offset + count)`. */
  chunks: BulkChunk[];
  /** The accepted jobs of every accepted chunk, in input order. */
  jobs: Accepted[];
}

export interface WaitOptions extends RequestOptions {
  /** Give up after this long, ms, with a PromptQueueTimeoutError. @defaultValue 300000 */
  timeoutMs?: number;
  /** Seconds of each long-poll (`?wait=`), at most the server's `MAX_WAIT_SECONDS` (60). @defaultValue 30 */
  pollSeconds?: number;
}

export interface EventsOptions extends RequestOptions {
  /** One job's events (replayed from its start, ending after its final event); else every job of the tenant from now on. */
  jobId?: string;
  /** Resume after this event id (an event's `id`). `'0'` replays the whole retained history. */
  lastEventId?: string;
  /** Reconnect with `Last-Event-ID` when the stream drops. @defaultValue true */
  reconnect?: boolean;
  /**
   * Called each time the stream is (re)connected and the server is following live events: from
   * then on, nothing that happens is missed. Enqueue after the first call to see every event.
   */
  onOpen?: () => void;
}

/**
 * A typed client of the prompt-queue HTTP API. Needs only `fetch` (Node ≥ 20, browsers).
 *
 * Retries: a request that gets no answer, or a 502/503/504, is sent again with backoff. Every job
 * is sent with an idempotency key (yours, or one made here before the first attempt), so a retry
 * of an enqueue finds the job the first attempt made and never makes a second one.
 *
 * @example
 * ```ts
 * const queue = new PromptQueueClient({ url: 'http://127.0.0.1:3000', apiKey: 'dev-key' });
 * const { id } = await queue.enqueue({ prompt: 'Write a haiku about queues' });
 * const job = await queue.wait(id);
 * console.log(job.result?.text);
 * ```
 */
export class PromptQueueClient {
  private readonly base: string;
  private readonly apiKey: string;
  private readonly retry: ResolvedRetry;
  private readonly timeoutMs: number;
  private readonly fetchFn: typeof fetch;
  private readonly newKey: () => string;

  constructor(options: ClientOptions) {
    if (!options.url) throw new TypeError('PromptQueueClient: url is required');
    if (!options.apiKey) throw new TypeError('PromptQueueClient: apiKey is required');
    this.base = options.url.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.retry = resolveRetry(options.retry);
    this.timeoutMs = options.timeoutMs ?? 30_000;
    this.fetchFn = options.fetch ?? ((input, init) => fetch(input, init));
    this.newKey = options.newIdempotencyKey ?? randomKey;
  }

  /**
   * Enqueues one job (`POST /v1/jobs`). Without an `idempotencyKey` the client makes one, so its
   * own retries are safe; with yours, a later call with the same key answers the same job.
   */
  async enqueue(job: JobRequest, options: RequestOptions = {}): Promise<Accepted> {
    const body: JobRequest = { ...job, idempotencyKey: job.idempotencyKey ?? this.newKey() };
    return this.request<Accepted>('POST', '/v1/jobs', { body, signal: options.signal });
  }

  /**
   * Enqueues many jobs, in requests of at most 1,000 (`POST /v1/jobs/bulk`), one after another.
   * Each request is all or none on the server, and the result reports each chunk on its own:
   * check `ok`, or the `chunks`. Jobs without an `idempotencyKey` get one, so retries (and your
   * re-sending of a rejected chunk after a fix) never double a job.
   */
  async enqueueBulk(jobs: readonly JobRequest[], options: EnqueueBulkOptions = {}): Promise<BulkResult> {
    const chunkSize = options.chunkSize ?? MAX_BULK_JOBS;
    if (!Number.isInteger(chunkSize) || chunkSize < 1 || chunkSize > MAX_BULK_JOBS) {
      throw new RangeError(`enqueueBulk: chunkSize must be an integer from 1 to ${MAX_BULK_JOBS}`);
    }
    const keyed = jobs.map((job) => ({ ...job, idempotencyKey: job.idempotencyKey ?? this.newKey() }));
    const chunks: BulkChunk[] = [];
    let stopped = false;
    for (let offset = 0; offset < keyed.length; offset += chunkSize) {
      const part = keyed.slice(offset, offset + chunkSize);
      if (stopped) {
        chunks.push({ status: 'not-sent', offset, count: part.length });
        continue;
      }
      try {
        const answer = await this.request<{ jobs: Accepted[] }>('POST', '/v1/jobs/bulk', { body: { jobs: part }, signal: options.signal });
        chunks.push({ status: 'accepted', offset, count: part.length, jobs: answer.jobs });
      } catch (error) {
        if (!(error instanceof PromptQueueApiError)) throw error; // network or abort: the caller decides
        chunks.push({ status: 'rejected', offset, count: part.length, error });
        if (!options.continueOnError) stopped = true;
      }
    }
    return {
      ok: chunks.every((chunk) => chunk.status === 'accepted'),
      chunks,
      jobs: chunks.flatMap((chunk) => (chunk.status === 'accepted' ? chunk.jobs : [])),
    };
  }

  /** The job now (`GET /v1/jobs/:id`); with `wait` (seconds), long-polls until it finishes or that time passes. */
  async get(id: string, options: RequestOptions & { wait?: number } = {}): Promise<JobView> {
    const query = options.wait ? `?wait=${options.wait}` : '';
    return this.request<JobView>('GET', `/v1/jobs/${encodeURIComponent(id)}${query}`, {
      signal: options.signal,
      extraTimeoutMs: (options.wait ?? 0) * 1_000,
    });
  }

  /**
   * Waits until the job is completed, failed or cancelled, by long-polls of `pollSeconds`, and
   * answers its view. After `timeoutMs` rejects with a PromptQueueTimeoutError (`lastView`).
   */
  async wait(id: string, options: WaitOptions = {}): Promise<JobView> {
    const deadline = Date.now() + (options.timeoutMs ?? 300_000);
    const pollSeconds = options.pollSeconds ?? 30;
    for (;;) {
      const left = Math.floor((deadline - Date.now()) / 1_000);
      const view = await this.get(id, { signal: options.signal, wait: Math.max(0, Math.min(pollSeconds, left)) });
      if (isFinalStatus(view.status)) return view;
      if (Date.now() >= deadline || left <= 0) {
        throw new PromptQueueTimeoutError(`job ${id} did not finish within ${options.timeoutMs ?? 300_000} ms (still ${view.status})`, view);
      }
    }
  }

  /** Cancels a job that has not started (`DELETE /v1/jobs/:id`); 409 `JOB_NOT_CANCELLABLE` once it has. */
  async cancel(id: string, options: RequestOptions = {}): Promise<JobView> {
    return this.request<JobView>('DELETE', `/v1/jobs/${encodeURIComponent(id)}`, { signal: options.signal });
  }

  /** The tenant's usage today and this month, and its budget (`GET /v1/usage`). */
  async usage(options: RequestOptions = {}): Promise<UsageResponse> {
    return this.request<UsageResponse>('GET', '/v1/usage', { signal: options.signal });
  }

  /**
   * Live job events (Server-Sent Events) as an async iterator. When the connection drops, it
   * reconnects with `Last-Event-ID` (the last event's `id`), so no event is lost or repeated
   * within the server's retained history. A job's stream ends after its final event; the
   * tenant-wide one runs until you `break` or abort `signal`.
   *
   * @example
   * ```ts
   * for await (const event of queue.events({ jobId: id })) console.log(event.type);
   * ```
   */
  async *events(options: EventsOptions = {}): AsyncGenerator<StreamedJobEvent, void, undefined> {
    const path = options.jobId ? `/v1/jobs/${encodeURIComponent(options.jobId)}/events` : '/v1/events';
    let lastEventId = options.lastEventId;
    let failures = 0;
    for (;;) {
      if (options.signal?.aborted) return;
      const connection = new AbortController();
      const onAbort = () => connection.abort(options.signal?.reason);
      options.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        let response: Response;
        try {
          response = await this.fetchFn(this.base + path, {
            headers: { ...this.headers(), accept: 'text/event-stream', ...(lastEventId !== undefined ? { 'last-event-id': lastEventId } : {}) },
            signal: connection.signal,
          });
        } catch (error) {
          if (options.signal?.aborted) return;
          if (++failures >= this.retry.attempts || options.reconnect === false) {
            throw new PromptQueueNetworkError(`GET ${path}: ${describe(error)}`, { cause: error });
          }
          await sleep(backoffMs(failures, this.retry), options.signal).catch(() => {});
          continue;
        }
        if (response.status === 204) return; // resuming after the job's end: nothing more will come
        if (!response.ok) {
          const error = await apiError(response);
          if (!error.retryable || ++failures >= this.retry.attempts || options.reconnect === false) throw error;
          await sleep(backoffMs(failures, this.retry, retryAfterMs(response.headers.get('retry-after'))), options.signal).catch(() => {});
          continue;
        }
        failures = 0;
        options.onOpen?.();
        try {
          for await (const message of parseSse(response.body!)) {
            const data = JSON.parse(message.data) as JobEvent;
            if (message.id !== undefined) lastEventId = message.id;
            yield message.id !== undefined ? { ...data, id: message.id } : data;
            if (options.jobId && isFinalStatus(data.type)) return;
          }
        } catch (error) {
          if (options.signal?.aborted) return;
          if (error instanceof SyntaxError) throw error; // not our server
          // The connection broke mid-stream: resume below.
        }
      } finally {
        options.signal?.removeEventListener('abort', onAbort);
        connection.abort();
      }
      if (options.reconnect === false) return;
      await sleep(backoffMs(1, this.retry), options.signal).catch(() => {});
    }
  }

  private headers(): Record<string, string> {
    return { authorization: `Bearer ${this.apiKey}` };
  }

  /**
   * One API call with retries on 502/503/504 and network errors. Bodies keep their idempotency
   * keys across attempts (they are built once, by the caller), so a retried POST is a replay.
   */
  private async request<T>(method: string, path: string, init: { body?: unknown; signal?: AbortSignal | undefined; extraTimeoutMs?: number }): Promise<T> {
    const body = init.body === undefined ? undefined : JSON.stringify(init.body);
    for (let attempt = 1; ; attempt++) {
      const timeout = AbortSignal.timeout(this.timeoutMs + (init.extraTimeoutMs ?? 0));
      const signal = init.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
      let response: Response;
      try {
        response = await this.fetchFn(this.base + path, {
          method,
          headers: { ...this.headers(), accept: 'application/json', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          body,
          signal,
        });
      } catch (error) {
        if (init.signal?.aborted) throw init.signal.reason;
        if (attempt >= this.retry.attempts) throw new PromptQueueNetworkError(`${method} ${path}: ${describe(error)} (after ${attempt} attempts)`, { cause: error });
        await sleep(backoffMs(attempt, this.retry), init.signal);
        continue;
      }
      if (response.ok) {
        const text = await response.text();
        return (text ? JSON.parse(text) : undefined) as T;
      }
      const error = await apiError(response);
      if (!error.retryable || attempt >= this.retry.attempts) throw error;
      await sleep(backoffMs(attempt, this.retry, retryAfterMs(response.headers.get('retry-after'))), init.signal);
    }
  }
}

/** The typed error of an error answer; a body that is not ours still gives one, coded by status. */
async function apiError(response: Response): Promise<PromptQueueApiError> {
  const text = await response.text().catch(() => '');
  try {
    const { error } = JSON.parse(text) as ErrorBody;
    if (error && typeof error.code === 'string') return new PromptQueueApiError(response.status, error.code, error.message, error.details);
  } catch {
    // not JSON: a proxy's page
  }
  const code = response.status === 503 ? 'REDIS_UNAVAILABLE' : response.status >= 500 ? 'INTERNAL' : 'VALIDATION_FAILED';
  return new PromptQueueApiError(response.status, code, `HTTP ${response.status} ${response.statusText}`.trim());
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = (error as { cause?: unknown }).cause;
    return cause instanceof Error ? `${error.message} (${cause.message})` : error.message;
  }
  return String(error);
}

function randomKey(): string {
  if (typeof crypto.randomUUID === 'function') return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}
