// The Gemini API's Batch API (inline requests only): a batch is a long-running operation
// named `batches/{id}`. Its state follows the clock, computed when read (no timers):
// PENDING until `pendingMs`, RUNNING until `completeAfterMs`, then SUCCEEDED with one inlined
// response per request, in request order, each carrying the request's metadata. A batch may
// be cancelled, deleted, forced to another state, or expire (`expireAfterMs`).
//
// Wire facts (checked against @google/genai 2.32.0): create, get and list answer Operations
// `{ name, metadata: GenerateContentBatch, done?, response? }`; the SDK reads
// `metadata.state` (BATCH_STATE_* on the wire, which it renames JOB_STATE_*) and
// `metadata.output.inlinedResponses.inlinedResponses[]`. Counts in batchStats are int64, so
// proto JSON writes them as strings, and zero counts are left out.

import { ApiError, badRequest, googleError } from './errors.js';
import { isRecord } from './validate.js';

export type BatchState = 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED' | 'EXPIRED';

export const BATCH_STATES: readonly BatchState[] = ['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'EXPIRED'];

const TERMINAL: ReadonlySet<BatchState> = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED', 'EXPIRED']);

export interface BatchRequestError { code: number; status: string; message: string }

export interface BatchConfig {
  /** A new batch is PENDING for this long, ms (default 0). */
  pendingMs: number;
  /** A batch SUCCEEDS this long after creation, ms (default 50). */
  completeAfterMs: number;
  /** A batch not done by then EXPIRES instead, ms after creation (default null: never). */
  expireAfterMs: number | null;
  /** Every k-th request (k, 2k, …, counted from 1 within a batch) gets `requestError` instead of a response (default null). */
  requestErrorEvery: number | null;
  /** The per-request error (default 500 INTERNAL). */
  requestError: BatchRequestError;
  /** Largest accepted batchGenerateContent body, bytes (default 20 MiB, Google's inline limit). */
  maxInlineBytes: number;
}

export const DEFAULT_BATCH_CONFIG: BatchConfig = {
  pendingMs: 0,
  completeAfterMs: 50,
  expireAfterMs: null,
  requestErrorEvery: null,
  requestError: { code: 500, status: 'INTERNAL', message: 'An internal error has occurred while processing this request.' },
  maxInlineBytes: 20 * 1024 * 1024,
};

/** One inline request as sent: `{ request: GenerateContentRequest, metadata?: { key } }`. */
export interface InlineRequest { request: unknown; metadata?: unknown }

/** What running one request produced. */
export type InlineResult =
  | { response: Record<string, unknown>; inputTokens: number; outputTokens: number }
  | { error: BatchRequestError };

interface Batch {
  id: string;
  model: string;
  displayName: string;
  createdAt: number;
  /** Timings in force when the batch was created. */
  config: BatchConfig;
  requests: InlineRequest[];
  cancelledAt?: number;
  forced?: { state: BatchState; at: number };
  results?: InlineResult[];
  doneAt?: number;
}

/** An admin view of a batch. */
export interface BatchSummary {
  name: string;
  model: string;
  displayName: string;
  state: BatchState;
  requestCount: number;
  createdAt: number;
}

export interface BatchCounters {
  created: number;
  /** Inline requests in created batches. */
  requests: number;
  cancelled: number;
  deleted: number;
  /** Requests answered with an error in finished batches. */
  failedRequests: number;
  /** Token totals of finished batches' responses (same tokenizer as generateContent). */
  inputTokens: number;
  outputTokens: number;
}

const iso = (ms: number): string => new Date(ms).toISOString();

function emptyCounters(): BatchCounters {
  return { created: 0, requests: 0, cancelled: 0, deleted: 0, failedRequests: 0, inputTokens: 0, outputTokens: 0 };
}

export function batchNotFound(): ApiError {
  return googleError(404, 'NOT_FOUND', 'Requested entity was not found.');
}

export class BatchStore {
  private batches = new Map<string, Batch>();
  private seq = 0;
  private counts = emptyCounters();
  config: BatchConfig = { ...DEFAULT_BATCH_CONFIG };

  constructor(
    private readonly now: () => number,
    /** Runs one request at completion; validation errors come back as `{ error }`. */
    private readonly run: (model: string, request: unknown) => InlineResult,
  ) {}

  /** Validates a batchGenerateContent body and stores the batch; returns its Operation JSON. */
  create(model: string, body: unknown, bodyBytes: number): Record<string, unknown> {
    if (bodyBytes > this.config.maxInlineBytes) {
      throw badRequest(`Request payload size exceeds the limit: ${this.config.maxInlineBytes} bytes.`);
    }
    if (!isRecord(body) || !isRecord(body.batch)) throw badRequest('* BatchGenerateContentRequest.batch: batch is not specified');
    const batch = body.batch;
    const input = batch.inputConfig ?? batch.input_config;
    if (!isRecord(input)) throw badRequest('* GenerateContentBatch.input_config: input_config is not specified');
    if (input.fileName !== undefined || input.file_name !== undefined) {
      throw badRequest('The emulator supports inline requests only (input_config.requests), not file_name.');
    }
    const wrapper = input.requests;
    const list = isRecord(wrapper) ? wrapper.requests : undefined;
    if (!Array.isArray(list) || list.length === 0) throw badRequest('* InlinedRequests.requests: requests is not specified');
    const requests: InlineRequest[] = list.map((item, i) => {
      if (!isRecord(item) || !isRecord(item.request)) throw badRequest(`* input_config.requests.requests[${i}].request: request is not specified`);
      return item.metadata === undefined ? { request: item.request } : { request: item.request, metadata: item.metadata };
    });
    const displayName = typeof batch.displayName === 'string' ? batch.displayName : typeof batch.display_name === 'string' ? batch.display_name : '';
    const id = `emu${(++this.seq).toString(36).padStart(6, '0')}${Math.floor(this.now() % 1e6).toString(36)}`;
    const record: Batch = { id, model, displayName, createdAt: this.now(), config: { ...this.config }, requests };
    this.batches.set(id, record);
    this.counts.created++;
    this.counts.requests += requests.length;
    return this.operation(record);
  }

  private find(id: string): Batch {
    const b = this.batches.get(id);
    if (!b) throw batchNotFound();
    return b;
  }

  get(id: string): Record<string, unknown> {
    return this.operation(this.find(id));
  }

  /** Cancels a batch that has not finished; a finished one is left as it is. */
  cancel(id: string): Record<string, unknown> {
    const b = this.find(id);
    if (!TERMINAL.has(this.state(b))) {
      b.cancelledAt = this.now();
      b.doneAt = b.cancelledAt;
      this.counts.cancelled++;
    }
    return {};
  }

  delete(id: string): Record<string, unknown> {
    this.find(id);
    this.batches.delete(id);
    this.counts.deleted++;
    return {};
  }

  /** Newest first; `pageToken` is the offset handed out as nextPageToken. */
  list(pageSize: number | undefined, pageToken: string | undefined): Record<string, unknown> {
    const all = [...this.batches.values()].sort((a, b) => b.createdAt - a.createdAt || b.id.localeCompare(a.id));
    const start = pageToken ? Number.parseInt(pageToken, 10) || 0 : 0;
    const size = pageSize && pageSize > 0 ? Math.min(pageSize, 1000) : 50;
    const page = all.slice(start, start + size);
    const out: Record<string, unknown> = { operations: page.map((b) => this.operation(b)) };
    if (start + size < all.length) out.nextPageToken = String(start + size);
    return out;
  }

  /** Control API: forces a batch into a state (FAILED, EXPIRED, SUCCEEDED, …) now. */
  force(id: string, state: BatchState): BatchSummary {
    const b = this.find(id);
    b.forced = { state, at: this.now() };
    if (TERMINAL.has(state)) b.doneAt = b.forced.at;
    return this.summary(b);
  }

  summaries(): BatchSummary[] {
    return [...this.batches.values()].map((b) => this.summary(b));
  }

  counters(): BatchCounters {
    return { ...this.counts };
  }

  /** Forgets every batch and count (the config stays). */
  reset(): void {
    this.batches.clear();
    this.counts = emptyCounters();
  }

  private summary(b: Batch): BatchSummary {
    return { name: `batches/${b.id}`, model: b.model, displayName: b.displayName, state: this.state(b), requestCount: b.requests.length, createdAt: b.createdAt };
  }

  private state(b: Batch): BatchState {
    if (b.forced) return b.forced.state;
    if (b.cancelledAt !== undefined) return 'CANCELLED';
    const age = this.now() - b.createdAt;
    const { expireAfterMs, completeAfterMs, pendingMs } = b.config;
    if (expireAfterMs !== null && expireAfterMs < completeAfterMs && age >= expireAfterMs) {
      b.doneAt ??= b.createdAt + expireAfterMs;
      return 'EXPIRED';
    }
    if (age >= completeAfterMs) {
      b.doneAt ??= b.createdAt + completeAfterMs;
      return 'SUCCEEDED';
    }
    return age >= pendingMs ? 'RUNNING' : 'PENDING';
  }

  /** Runs every request once, the first time the batch is seen SUCCEEDED. */
  private results(b: Batch): InlineResult[] {
    if (b.results) return b.results;
    const every = b.config.requestErrorEvery;
    b.results = b.requests.map((r, i) => {
      if (every !== null && (i + 1) % every === 0) return { error: { ...b.config.requestError } };
      return this.run(b.model, r.request);
    });
    for (const r of b.results) {
      if ('error' in r) this.counts.failedRequests++;
      else {
        this.counts.inputTokens += r.inputTokens;
        this.counts.outputTokens += r.outputTokens;
      }
    }
    return b.results;
  }

  private operation(b: Batch): Record<string, unknown> {
    const state = this.state(b);
    const name = `batches/${b.id}`;
    const done = TERMINAL.has(state);
    const stats: Record<string, string> = { requestCount: String(b.requests.length) };
    let output: Record<string, unknown> | undefined;
    if (state === 'SUCCEEDED') {
      const results = this.results(b);
      const failed = results.filter((r) => 'error' in r).length;
      if (results.length - failed > 0) stats.successfulRequestCount = String(results.length - failed);
      if (failed > 0) stats.failedRequestCount = String(failed);
      const inlined = results.map((r, i) => {
        const metadata = b.requests[i]?.metadata;
        const item: Record<string, unknown> = 'error' in r ? { error: r.error } : { response: r.response };
        if (metadata !== undefined) item.metadata = metadata;
        return item;
      });
      output = { inlinedResponses: { inlinedResponses: inlined } };
    } else if (!done) {
      stats.pendingRequestCount = String(b.requests.length);
    }
    const updated = b.doneAt ?? (state === 'RUNNING' ? b.createdAt + b.config.pendingMs : b.createdAt);
    const metadata: Record<string, unknown> = {
      '@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch',
      model: `models/${b.model}`,
      displayName: b.displayName,
      ...(output ? { output } : {}),
      createTime: iso(b.createdAt),
      ...(done && b.doneAt !== undefined ? { endTime: iso(b.doneAt) } : {}),
      updateTime: iso(updated),
      batchStats: stats,
      state: `BATCH_STATE_${state}`,
      name,
    };
    const op: Record<string, unknown> = { name, metadata };
    if (done) op.done = true;
    if (output) op.response = { '@type': 'type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput', ...output };
    if (state === 'FAILED') op.error = { code: 13, message: 'The batch failed.' };
    if (state === 'EXPIRED') op.error = { code: 4, message: 'The batch expired before it could complete.' };
    return op;
  }
}

/** Validates a (partial) batch configuration from the control API; unset fields keep `base`. */
export function parseBatchConfig(raw: unknown, base: BatchConfig = DEFAULT_BATCH_CONFIG): BatchConfig {
  if (!isRecord(raw)) throw new Error('batch config must be a JSON object');
  const out: BatchConfig = { ...base, requestError: { ...base.requestError } };
  const int = (key: string, v: unknown, min: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) throw new Error(`batch ${key} must be an integer >= ${min}`);
    return v;
  };
  for (const [key, v] of Object.entries(raw)) {
    switch (key) {
      case 'pendingMs':
      case 'completeAfterMs':
        out[key] = int(key, v, 0);
        break;
      case 'maxInlineBytes':
        out.maxInlineBytes = int(key, v, 1);
        break;
      case 'expireAfterMs':
        out.expireAfterMs = v === null ? null : int(key, v, 0);
        break;
      case 'requestErrorEvery':
        out.requestErrorEvery = v === null ? null : int(key, v, 1);
        break;
      case 'requestError': {
        if (!isRecord(v)) throw new Error('batch requestError must be {"code","status","message"}');
        const code = int('requestError.code', v.code ?? out.requestError.code, 100);
        const status = v.status ?? out.requestError.status;
        const message = v.message ?? out.requestError.message;
        if (typeof status !== 'string' || typeof message !== 'string') throw new Error('batch requestError status and message must be strings');
        out.requestError = { code, status, message };
        break;
      }
      default:
        throw new Error(`unknown batch config field "${key}"`);
    }
  }
  return out;
}
