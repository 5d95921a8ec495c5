// HTTP routing and the per-call pipeline: auth -> model -> validation -> faults -> quota ->
// latency -> answer. Counters see every step. node:http only, so nothing between the SDK
// and the emulator can change what goes over the wire.

import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { handleAdmin, type EmulatorControl } from './admin.js';
import { Counters, keyFingerprint, type CountersSnapshot, type WindowStats } from './counters.js';
import { BatchStore, parseBatchConfig, type BatchConfig, type BatchState, type BatchSummary, type InlineResult } from './batches.js';
import {
  ApiError, badRequest, deadlineExceeded, flexShed, googleError, internal, invalidApiKey, invalidJson, missingApiKey, modelNotFound,
  quotaExceeded, sharedQuotaExhausted, unauthenticated, unavailable, vertexQuotaExceeded,
} from './errors.js';
import { FaultRegistry, type ActiveFault, type FaultSpec } from './faults.js';
import { runModelMethod, type Prepared } from './gemini.js';
import { describeModel, findModel, isModelMethod, MODELS, supportsMethod, type ModelInfo, type ModelMethod } from './models.js';
import { chatModel, invalidBearer, missingBearer, openAiError, openAiFault, openAiRateLimit, prepareChat } from './openai.js';
import { GOOGLE_TOKEN_URL, OAuthServer, TOKEN_PATH, type OAuthStats, type ServiceAccountKey } from './oauth.js';
import { QuotaManager, type QuotaConfig, type QuotaLimit, type QuotaUsage } from './quotas.js';
import { DEFAULT_FLEX, parseFlexConfig, requestedTier, type FlexConfig, type ServiceTier } from './tiers.js';
import { Tokenizer, type TokenizerConfig, type TokenizerSettings } from './tokens.js';
import { SharedQuota, type SharedQuotaConfig, type SharedQuotaUsage } from './vertex.js';

export interface EmulatorOptions {
  /** Accepted API keys (default ["emulator-key"]). */
  apiKeys?: string[];
  /** Base latency added to every model call, ms (default 0). */
  latencyMs?: number;
  /** Extra random latency in [0, jitterMs), from a seeded PRNG (default 0). */
  jitterMs?: number;
  /** Per-model limits: rpm, input tpm, rpd (default: unlimited). */
  quotas?: Record<string, QuotaLimit>;
  /**
   * How tokens are counted for countTokens, usageMetadata and the TPM quota alike
   * (default: ceil(code points / 4) per text part, 258 per image).
   */
  tokenizer?: TokenizerConfig;
  /** Clock for quota windows, the Pacific day of RPD, fault expiry and counters; inject one in tests. */
  now?: () => number;
  /** Rolling window length, ms (default 60000). */
  windowMs?: number;
  /** PRNG seed for jitter (default 1). */
  seed?: number;
  /** Largest accepted request body (default 100 MiB, like Google's inline-data limit). */
  maxBodyBytes?: number;
  /** Lifetime of access tokens issued by the OAuth endpoint, s (default 3600, like Google). */
  tokenTtlSeconds?: number;
  /** Service accounts whose public keys the token endpoint trusts from the start. */
  serviceAccounts?: ServiceAccountKey[];
  /** Vertex AI's own per-model limits (default: unlimited), separate from `quotas`. */
  vertexQuotas?: Record<string, QuotaLimit>;
  /** Vertex Dynamic Shared Quota: a capacity per window shared by all Vertex projects (default off). */
  sharedQuota?: SharedQuotaConfig;
  /** Flex tier latency and shedding (default: no extra latency, never shed). */
  flex?: Partial<FlexConfig>;
  /** Batch API timings, per-request errors and size limit. */
  batch?: Partial<BatchConfig>;
}

export interface Emulator extends EmulatorControl {
  /** Starts listening (port 0 = any free port); resolves with the base URL. */
  listen(port?: number, host?: string): Promise<string>;
  close(): Promise<void>;
  /** Base URL once listening. */
  readonly url: string | undefined;
  readonly apiKeys: readonly string[];
  readonly server: http.Server;
  /** The request handler, to mount on another server. */
  handle(req: IncomingMessage, res: ServerResponse): void;
}

const GOOGLE_HEADERS = {
  vary: 'Origin, X-Origin, Referer',
  server: 'scaffolding on HTTPServer2',
  'x-xss-protection': '0',
  'x-frame-options': 'SAMEORIGIN',
  'x-content-type-options': 'nosniff',
};

const NOT_FOUND_HTML =
  '<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error 404 (Not Found)!!1</title>\n' +
  '  <p><b>404.</b> <ins>That’s an error.</ins>\n  <p>The requested URL was not found on this server.  <ins>That’s all we know.</ins>\n';

const MODEL_ROUTE = /^\/(v1|v1beta|v1alpha)\/models\/([^/:]+):([A-Za-z]+)$/;
const VERTEX_ROUTE = /^\/(v1|v1beta1)\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/google\/models\/([^/:]+):([A-Za-z]+)$/;
const VERTEX_METHODS: ReadonlySet<string> = new Set(['generateContent', 'streamGenerateContent', 'countTokens']);
const BATCHES_LIST = /^\/(v1beta|v1alpha)\/batches$/;
const BATCH_ROUTE = /^\/(v1beta|v1alpha)\/batches\/([^/:]+)(:cancel)?$/;

/** What kind of caller a model call came from; Vertex calls carry their location. */
type CallContext = { api: 'gemini' | 'openai' } | { api: 'vertex'; project: string; location: string };

const TRAFFIC_TYPE: Record<ServiceTier, string> = { standard: 'ON_DEMAND', flex: 'ON_DEMAND_FLEX', priority: 'ON_DEMAND_PRIORITY' };

/**
 * Marks which tier served a response: Vertex always says `usageMetadata.trafficType`
 * (ON_DEMAND, ON_DEMAND_FLEX, …); the Gemini API says `usageMetadata.serviceTier` when the
 * request named a tier, so answers to requests that name none stay as they were.
 */
function markTier(value: unknown, ctx: CallContext, tier: ServiceTier, requested: boolean): void {
  if (Array.isArray(value)) {
    for (const v of value) markTier(v, ctx, tier, requested);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const usage = (value as { usageMetadata?: Record<string, unknown> }).usageMetadata;
  if (!usage) return;
  if (ctx.api === 'vertex') usage.trafficType = TRAFFIC_TYPE[tier];
  else if (requested) usage.serviceTier = tier;
}
const MODEL_GET = /^\/(v1|v1beta|v1alpha)\/models(?:\/([^/:]+))?$/;

class Aborted extends Error {}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (ms <= 0) return signal.aborted ? Promise.reject(new Aborted()) : Promise.resolve();
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Aborted());
    // Cleared on abort so a disconnected client leaves no timer behind.
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(new Aborted());
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** How long an idle keep-alive socket stays open, ms: longer than clients' own idle timeouts. */
const KEEP_ALIVE_TIMEOUT_MS = 65_000;
/** Pending connections the listening socket queues (Node's default is 511). */
const LISTEN_BACKLOG = 4_096;

/** mulberry32: tiny seeded PRNG so jitter is reproducible. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** JSON for one SSE line: U+2028/2029 would break the SDK's line regex, so escape them. */
function sseJson(value: unknown): string {
  return JSON.stringify(value).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029');
}

function readBody(req: IncomingMessage, limit: number): Promise<{ text: string; tooLarge: boolean }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) tooLarge = true;
      else chunks.push(chunk);
    });
    req.on('end', () => resolve({ text: tooLarge ? '' : Buffer.concat(chunks).toString('utf8'), tooLarge }));
    req.on('error', reject);
  });
}

function bearer(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  const m = h ? /^Bearer\s+(.+)$/i.exec(h) : null;
  return m?.[1]?.trim() || undefined;
}

function isCancel(e: unknown): boolean {
  return e instanceof Aborted;
}

export function createEmulator(options: EmulatorOptions = {}): Emulator {
  const now = options.now ?? Date.now;
  const apiKeys = [...(options.apiKeys ?? ['emulator-key'])];
  if (apiKeys.length === 0) throw new Error('apiKeys must not be empty');
  const keySet = new Set(apiKeys);
  const maxBodyBytes = options.maxBodyBytes ?? 100 * 1024 * 1024;
  const windowMs = options.windowMs ?? 60_000;
  const counters = new Counters(now, windowMs);
  const quotas = new QuotaManager(now, windowMs);
  const faults = new FaultRegistry(now);
  const random = prng(options.seed ?? 1);
  const oauth = new OAuthServer(now, options.tokenTtlSeconds ?? 3600);
  for (const key of options.serviceAccounts ?? []) oauth.register(key);
  const vertexQuotas = new QuotaManager(now, windowMs);
  if (options.vertexQuotas) vertexQuotas.setLimits(options.vertexQuotas);
  let sharedQuota: SharedQuota | null = options.sharedQuota ? new SharedQuota(now, { ...options.sharedQuota }) : null;
  let flex: FlexConfig = parseFlexConfig(options.flex ?? {}, DEFAULT_FLEX);
  let flexInFlight = 0;
  // Replaced whole by setTokenizer; each request reads the current one once.
  let tokenizer = new Tokenizer(options.tokenizer);
  let latencyMs = options.latencyMs ?? 0;
  let jitterMs = options.jitterMs ?? 0;
  let responseSeq = 0;
  let url: string | undefined;
  // In-flight calls, aborted on close() so pending delays do not keep the process alive.
  const inflight = new Set<AbortController>();
  if (options.quotas) quotas.setLimits(options.quotas);

  const nextId = (): string => createHash('sha256').update(`response:${++responseSeq}`).digest('base64url').slice(0, 22);

  /** One inline batch request, answered like generateContent with the tokenizer in force. */
  function runInline(model: string, request: unknown): InlineResult {
    const info = findModel(model);
    try {
      if (!info || !supportsMethod(info, 'generateContent')) throw modelNotFound(model, 'v1beta', 'generateContent');
      const prepared = runModelMethod(info, 'generateContent', request, nextId(), tokenizer);
      return { response: prepared.body as Record<string, unknown>, inputTokens: prepared.inputTokens, outputTokens: prepared.outputTokens };
    } catch (e) {
      const body = e instanceof ApiError ? (e.body as { error?: { code: number; status: string; message: string } }) : undefined;
      const err = body?.error ?? { code: 500, status: 'INTERNAL', message: 'An internal error has occurred.' };
      return { error: { code: err.code, status: err.status, message: err.message } };
    }
  }
  const batches = new BatchStore(now, runInline);
  if (options.batch) batches.config = parseBatchConfig(options.batch, batches.config);

  function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.writableEnded || res.destroyed) return;
    const text = JSON.stringify(body, null, 2);
    res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8', ...GOOGLE_HEADERS, ...headers, 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  function sendSse(res: ServerResponse, events: unknown[], openAi: boolean): void {
    if (res.writableEnded || res.destroyed) return;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...(openAi ? {} : GOOGLE_HEADERS) });
    // Google terminates events with \r\n\r\n and sends no [DONE]; OpenAI uses \n\n and [DONE].
    for (const e of events) res.write(openAi ? `data: ${sseJson(e)}\n\n` : `data: ${sseJson(e)}\r\n\r\n`);
    if (openAi) res.write('data: [DONE]\n\n');
    res.end();
  }

  function latency(signal: AbortSignal): Promise<void> {
    const extra = jitterMs > 0 ? Math.floor(random() * jitterMs) : 0;
    return sleep(latencyMs + extra, signal);
  }

  /** Applies the first matching fault: throws its error, or waits for `slow`. */
  async function applyFault(model: string, method: string, signal: AbortSignal, openAi: boolean, embedding: boolean): Promise<void> {
    const fault: ActiveFault | undefined = faults.match(model, method);
    if (!fault) return;
    if (fault.kind === 'slow') {
      counters.recordSlowFault(model);
      await sleep(fault.delayMs ?? 30_000, signal);
      return;
    }
    if (fault.kind === 'rateLimit') {
      const seconds = fault.retryDelaySeconds ?? 10;
      const limit = quotas.getLimits()[model]?.rpm ?? 0;
      if (openAi) throw openAiRateLimit(model, 'rpm', limit, seconds * 1000, 'fault');
      throw quotaExceeded({ model, kind: 'rpm', limit, retryAfterMs: seconds * 1000, embedding, reason: 'fault', retryDelayOverride: `${seconds}s` });
    }
    if (openAi) throw openAiFault(fault.kind, fault.message);
    const err =
      fault.kind === 'unavailable' ? unavailable(fault.message)
      : fault.kind === 'internal' ? internal(fault.message)
      : fault.kind === 'deadline' ? deadlineExceeded(fault.message)
      : badRequest(fault.message ?? 'Request contains an invalid argument.');
    throw new ApiError(err.status, err.body, err.headers, 'fault');
  }

  function checkQuota(model: string, prepared: Prepared, openAi: boolean, embedding: boolean, ctx: CallContext): void {
    if (!prepared.consumesQuota) return;
    if (ctx.api === 'vertex') {
      // The shared capacity is checked first, so a refusal there consumes nothing.
      if (sharedQuota && !sharedQuota.tryConsume()) throw sharedQuotaExhausted();
      const d = vertexQuotas.tryConsume(model, prepared.inputTokens);
      if (!d.ok) throw vertexQuotaExceeded({ model, location: ctx.location, kind: d.kind, limit: d.limit, retryAfterMs: d.retryAfterMs });
      counters.recordAccepted(model, prepared.inputTokens);
      return;
    }
    const decision = quotas.tryConsume(model, prepared.inputTokens);
    if (!decision.ok) {
      if (openAi) throw openAiRateLimit(model, decision.kind, decision.limit, decision.retryAfterMs, 'quota');
      throw quotaExceeded({ model, kind: decision.kind, limit: decision.limit, retryAfterMs: decision.retryAfterMs, embedding, reason: 'quota' });
    }
    counters.recordAccepted(model, prepared.inputTokens);
  }

  /** Shared tail of every model call; `prepare` validates and builds the answer. */
  /** Flex calls are shed (503) when over the concurrency limit or by the seeded draw. */
  function shouldShed(): boolean {
    if (flex.maxConcurrent !== null && flexInFlight >= flex.maxConcurrent) return true;
    return flex.shedProbability > 0 && random() < flex.shedProbability;
  }

  /** The wait before answering: the tier's latency (Flex has its own), cancelled on disconnect. */
  async function tierLatency(tier: ServiceTier, signal: AbortSignal): Promise<void> {
    if (tier !== 'flex') return latency(signal);
    const extra = flex.jitterMs > 0 ? Math.floor(random() * flex.jitterMs) : 0;
    flexInFlight++;
    try {
      await sleep(flex.latencyMs + extra, signal);
    } finally {
      flexInFlight--;
    }
  }

  async function pipeline(
    req: IncomingMessage, res: ServerResponse, model: string, method: string, openAi: boolean, embedding: boolean,
    prepare: () => Prepared, ctx: CallContext = { api: openAi ? 'openai' : 'gemini' },
  ): Promise<void> {
    const ac = new AbortController();
    inflight.add(ac);
    counters.callStarted();
    res.once('close', () => {
      if (!res.writableFinished) ac.abort();
      inflight.delete(ac);
      counters.callEnded();
    });
    try {
      const prepared = prepare();
      const tier = prepared.tier ?? 'standard';
      if (prepared.tier) counters.recordTier(tier, 'call');
      await applyFault(model, method, ac.signal, openAi, embedding);
      if (tier === 'flex' && shouldShed()) {
        counters.recordTier(tier, 'shed');
        throw flexShed();
      }
      checkQuota(model, prepared, openAi, embedding, ctx);
      await tierLatency(tier, ac.signal);
      if (prepared.extraLatencyMs) await sleep(prepared.extraLatencyMs, ac.signal);
      if (prepared.tier) markTier(prepared.sse ?? prepared.body, ctx, tier, prepared.tierRequested === true);
      if (prepared.sse) sendSse(res, prepared.sse, openAi);
      else send(res, 200, prepared.body);
      counters.recordSuccess(model, prepared.inputTokens, prepared.outputTokens, prepared.thoughtsTokens);
      if (prepared.tier) counters.recordTier(tier, 'served');
    } catch (e) {
      await fail(res, model, e, ac.signal, openAi);
    }
  }

  async function fail(res: ServerResponse, model: string, e: unknown, signal: AbortSignal, openAi: boolean): Promise<void> {
    if (isCancel(e)) {
      counters.recordAborted(model);
      return;
    }
    const err = e instanceof ApiError ? e : openAi ? openAiError(500, 'The server had an error while processing your request.', 'server_error', null) : internal();
    if (!(e instanceof ApiError)) console.error('gemini-emulator: unexpected error', e instanceof Error ? e.message : e);
    counters.recordStatus(model, err.status, err.reason);
    try {
      await latency(signal);
    } catch {
      counters.recordAborted(model);
      return;
    }
    send(res, err.status, err.body, err.headers);
  }

  async function geminiRoute(req: IncomingMessage, res: ServerResponse, u: URL, version: string, rawModel: string, method: string, raw: { text: string; tooLarge: boolean }): Promise<void> {
    const model = decodeURIComponent(rawModel);
    const key = (req.headers['x-goog-api-key'] as string | undefined) || u.searchParams.get('key') || undefined;
    counters.recordCall(model, method, keyFingerprint(key));
    counters.recordApi('gemini');
    const info = findModel(model);
    await pipeline(req, res, model, method, false, info?.kind === 'embedding', () => {
      if (!key) throw missingApiKey();
      if (!keySet.has(key)) throw invalidApiKey();
      if (!info || !isModelMethod(method) || !supportsMethod(info, method)) throw modelNotFound(model, version, method);
      return prepareModelCall(info, method, u, raw);
    });
  }

  /** Body -> Prepared for a Gemini model method, shared by the Gemini API and Vertex routes. */
  function prepareModelCall(info: ModelInfo, method: ModelMethod, u: URL, raw: { text: string; tooLarge: boolean }): Prepared {
    if (raw.tooLarge) throw badRequest(`Request payload size exceeds the limit: ${maxBodyBytes} bytes.`);
    let body: unknown;
    try {
      body = JSON.parse(raw.text) as unknown;
    } catch (err) {
      throw invalidJson(err instanceof Error ? err.message : 'Unexpected token.');
    }
    let prepared = runModelMethod(info, method, body, nextId(), tokenizer);
    if (method === 'generateContent' || method === 'streamGenerateContent') {
      const r = body as Record<string, unknown>;
      prepared = { ...prepared, tier: requestedTier(body), tierRequested: r.serviceTier !== undefined || r.service_tier !== undefined };
    }
    // Without alt=sse Google streams one JSON array of the same chunks.
    if (prepared.sse && u.searchParams.get('alt') !== 'sse') return { ...prepared, sse: undefined, body: prepared.sse };
    return prepared;
  }

  /** Vertex AI: `/{v1,v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:{method}` with a Bearer token. */
  async function vertexRoute(
    req: IncomingMessage, res: ServerResponse, u: URL, project: string, location: string, rawModel: string, method: string,
    raw: { text: string; tooLarge: boolean },
  ): Promise<void> {
    const model = decodeURIComponent(rawModel);
    const token = bearer(req);
    counters.recordCall(model, `vertex.${method}`, keyFingerprint(token));
    counters.recordApi('vertex');
    const info = findModel(model);
    const ctx: CallContext = { api: 'vertex', project: decodeURIComponent(project), location: decodeURIComponent(location) };
    await pipeline(req, res, model, method, false, false, () => {
      const auth = oauth.authenticate(token);
      if (!auth.ok) throw unauthenticated(auth.reason, method);
      if (!info || !VERTEX_METHODS.has(method) || !isModelMethod(method) || !supportsMethod(info, method)) {
        throw googleError(
          404,
          'NOT_FOUND',
          `Publisher Model \`projects/${ctx.project}/locations/${ctx.location}/publishers/google/models/${model}\` was not found or your project does not have access to it. Please ensure you are using a valid model version. For more information, see: https://cloud.google.com/vertex-ai/generative-ai/docs/learn/model-versions`,
        );
      }
      return prepareModelCall(info, method, u, raw);
    }, ctx);
  }

  /** Gemini API key check for the batch routes; sends the error and returns false when it fails. */
  function batchAuth(req: IncomingMessage, res: ServerResponse, u: URL): boolean {
    const key = (req.headers['x-goog-api-key'] as string | undefined) || u.searchParams.get('key') || undefined;
    const err = !key ? missingApiKey() : !keySet.has(key) ? invalidApiKey() : undefined;
    if (err) sendError(res, err);
    return err === undefined;
  }

  function batchCreate(req: IncomingMessage, res: ServerResponse, u: URL, version: string, rawModel: string, raw: { text: string; tooLarge: boolean }): void {
    const model = decodeURIComponent(rawModel);
    const key = (req.headers['x-goog-api-key'] as string | undefined) || u.searchParams.get('key') || undefined;
    counters.recordCall(model, 'batchGenerateContent', keyFingerprint(key));
    counters.recordApi('gemini');
    if (!batchAuth(req, res, u)) return;
    const info = findModel(model);
    try {
      if (!info || !supportsMethod(info, 'generateContent')) throw modelNotFound(model, version, 'batchGenerateContent');
      if (raw.tooLarge) throw badRequest(`Request payload size exceeds the limit: ${maxBodyBytes} bytes.`);
      let body: unknown;
      try {
        body = JSON.parse(raw.text) as unknown;
      } catch (err) {
        throw invalidJson(err instanceof Error ? err.message : 'Unexpected token.');
      }
      send(res, 200, batches.create(model, body, Buffer.byteLength(raw.text)));
      counters.recordSuccess(model, 0, 0, 0);
    } catch (e) {
      const err = e instanceof ApiError ? e : internal();
      counters.recordStatus(model, err.status);
      sendError(res, err);
    }
  }

  function batchRoute(req: IncomingMessage, res: ServerResponse, u: URL, method: string, id: string | undefined, cancel: boolean): void {
    if (!batchAuth(req, res, u)) return;
    try {
      if (id === undefined) {
        if (method !== 'GET') return void sendError(res, googleError(405, 'METHOD_NOT_ALLOWED', 'Method not allowed.'));
        const pageSize = u.searchParams.get('pageSize') ?? u.searchParams.get('page_size');
        return void send(res, 200, batches.list(pageSize ? Number(pageSize) : undefined, u.searchParams.get('pageToken') ?? u.searchParams.get('page_token') ?? undefined));
      }
      const name = decodeURIComponent(id);
      if (cancel && method === 'POST') return void send(res, 200, batches.cancel(name));
      if (!cancel && method === 'GET') return void send(res, 200, batches.get(name));
      if (!cancel && method === 'DELETE') return void send(res, 200, batches.delete(name));
      sendError(res, googleError(405, 'METHOD_NOT_ALLOWED', 'Method not allowed.'));
    } catch (e) {
      sendError(res, e instanceof ApiError ? e : internal());
    }
  }

  /** POST /oauth2/token: the JWT-bearer grant, answered in Google's OAuth JSON. */
  function tokenRoute(req: IncomingMessage, res: ServerResponse, raw: { text: string }): void {
    const audiences = [GOOGLE_TOKEN_URL, `http://${req.headers.host ?? ''}${TOKEN_PATH}`];
    if (url) audiences.push(`${url}${TOKEN_PATH}`);
    const reply = oauth.exchange(raw.text, req.headers['content-type'], audiences);
    send(res, reply.status, reply.body, { 'cache-control': 'no-cache, no-store, max-age=0, must-revalidate', pragma: 'no-cache' });
  }

  async function chatRoute(req: IncomingMessage, res: ServerResponse, raw: { text: string; tooLarge: boolean }): Promise<void> {
    counters.recordApi('openai');
    let body: unknown;
    let parseError = false;
    try {
      body = JSON.parse(raw.text) as unknown;
    } catch {
      parseError = true;
    }
    const model = chatModel(body) ?? 'unknown';
    const key = bearer(req);
    counters.recordCall(model, 'chat.completions', keyFingerprint(key));
    const created = Math.floor(now() / 1000);
    await pipeline(req, res, model, 'chat.completions', true, false, () => {
      if (!key) throw missingBearer();
      if (!keySet.has(key)) throw invalidBearer();
      if (raw.tooLarge || parseError) {
        throw openAiError(400, 'We could not parse the JSON body of your request.', 'invalid_request_error', null);
      }
      return prepareChat(body, `chatcmpl-${nextId()}`, created, tokenizer);
    });
  }

  function listModels(req: IncomingMessage, res: ServerResponse, u: URL, version: string, name: string | undefined): void {
    const googleKey = (req.headers['x-goog-api-key'] as string | undefined) || u.searchParams.get('key') || undefined;
    const openAiKey = googleKey ? undefined : bearer(req);
    if (openAiKey !== undefined && version === 'v1' && name === undefined) {
      if (!keySet.has(openAiKey)) return void send(res, 401, invalidBearer().body);
      const created = Math.floor(now() / 1000);
      return void send(res, 200, { object: 'list', data: MODELS.map((m) => ({ id: m.name, object: 'model', created, owned_by: 'google' })) });
    }
    if (!googleKey) return void sendError(res, missingApiKey());
    if (!keySet.has(googleKey)) return void sendError(res, invalidApiKey());
    if (name === undefined) return void send(res, 200, { models: MODELS.map(describeModel) });
    const info = findModel(decodeURIComponent(name));
    if (!info) return void sendError(res, modelNotFound(decodeURIComponent(name), version, 'get'));
    send(res, 200, describeModel(info));
  }

  function sendError(res: ServerResponse, err: ApiError): void {
    send(res, err.status, err.body, err.headers);
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://emulator.local');
    const method = req.method ?? 'GET';
    const raw = method === 'GET' || method === 'HEAD' ? { text: '', tooLarge: false } : await readBody(req, maxBodyBytes);

    if (u.pathname === '/_emulator' || u.pathname.startsWith('/_emulator/')) {
      const reply = handleAdmin(control, method, u.pathname.slice('/_emulator'.length), u.searchParams, raw.text);
      return void send(res, reply.status, reply.body);
    }
    if (u.pathname === '/v1/chat/completions' && method === 'POST') return chatRoute(req, res, raw);
    if ((u.pathname === TOKEN_PATH || u.pathname === '/token') && method === 'POST') return tokenRoute(req, res, raw);
    const v = VERTEX_ROUTE.exec(u.pathname);
    if (v && method === 'POST') return vertexRoute(req, res, u, v[2] ?? '', v[3] ?? '', v[4] ?? '', v[5] ?? '', raw);
    const m = MODEL_ROUTE.exec(u.pathname);
    if (m && method === 'POST' && m[3] === 'batchGenerateContent') return batchCreate(req, res, u, m[1] ?? 'v1beta', m[2] ?? '', raw);
    if (m && method === 'POST') return geminiRoute(req, res, u, m[1] ?? 'v1beta', m[2] ?? '', m[3] ?? '', raw);
    if (BATCHES_LIST.test(u.pathname)) return batchRoute(req, res, u, method, undefined, false);
    const b = BATCH_ROUTE.exec(u.pathname);
    if (b) return batchRoute(req, res, u, method, b[2], b[3] !== undefined);
    const g = MODEL_GET.exec(u.pathname);
    if (g && method === 'GET') return listModels(req, res, u, g[1] ?? 'v1beta', g[2]);
    res.writeHead(404, { 'content-type': 'text/html; charset=UTF-8', ...GOOGLE_HEADERS });
    res.end(NOT_FOUND_HTML);
  }

  const control: EmulatorControl = {
    counters: (): CountersSnapshot => ({ ...counters.snapshot(), batches: batches.counters() }),
    windowStats: (w?: number): Record<string, WindowStats> => counters.windowStats(w),
    reset: (): void => {
      counters.reset();
      quotas.reset();
      vertexQuotas.reset();
      sharedQuota?.reset();
      faults.clear();
      batches.reset();
      oauth.resetCounts();
    },
    addFault: (spec: FaultSpec): ActiveFault => faults.add(spec),
    removeFault: (id: string): boolean => faults.remove(id),
    clearFaults: (): void => faults.clear(),
    listFaults: (): ActiveFault[] => faults.list(),
    setQuotas: (q: Record<string, QuotaLimit | null>): void => quotas.setLimits(q),
    getQuotas: (): QuotaConfig => quotas.getLimits(),
    quotaUsage: (): Record<string, QuotaUsage> => quotas.usageAll(),
    setTokenizer: (config: TokenizerConfig): TokenizerSettings => {
      tokenizer = new Tokenizer(config);
      return { ...tokenizer.settings };
    },
    getTokenizer: (): TokenizerSettings => ({ ...tokenizer.settings }),
    setLatency: (ms: number, jitter?: number): void => {
      latencyMs = ms;
      if (jitter !== undefined) jitterMs = jitter;
    },
    getLatency: () => ({ ms: latencyMs, jitterMs }),
    registerServiceAccount: (key: ServiceAccountKey): void => oauth.register(key),
    revokeServiceAccountKey: (keyId: string): boolean => oauth.revokeKey(keyId),
    expireAllTokens: (): number => oauth.expireAllTokens(),
    setTokenTtl: (seconds: number): void => {
      oauth.tokenTtlSeconds = seconds;
    },
    oauthStats: (): OAuthStats => oauth.stats(),
    setVertexQuotas: (q: Record<string, QuotaLimit | null>): void => vertexQuotas.setLimits(q),
    getVertexQuotas: (): QuotaConfig => vertexQuotas.getLimits(),
    vertexQuotaUsage: (): Record<string, QuotaUsage> => vertexQuotas.usageAll(),
    setSharedQuota: (config: SharedQuotaConfig | null): void => {
      sharedQuota = config ? new SharedQuota(now, { ...config }) : null;
    },
    sharedQuotaUsage: (): SharedQuotaUsage | null => sharedQuota?.usage() ?? null,
    setFlex: (config: FlexConfig): FlexConfig => {
      flex = { ...config };
      return { ...flex };
    },
    getFlex: (): FlexConfig => ({ ...flex }),
    setBatchConfig: (config: BatchConfig): BatchConfig => {
      batches.config = { ...config, requestError: { ...config.requestError } };
      return { ...batches.config };
    },
    getBatchConfig: (): BatchConfig => ({ ...batches.config }),
    listBatches: (): BatchSummary[] => batches.summaries(),
    forceBatchState: (name: string, state: BatchState): BatchSummary => batches.force(name.replace(/^batches\//, ''), state),
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    route(req, res).catch((e: unknown) => {
      console.error('gemini-emulator: request failed', e instanceof Error ? e.message : e);
      if (!res.headersSent) sendError(res, internal());
      else res.destroy();
    });
  };

  // One client process may hold thousands of calls in flight, each on its own keep-alive socket
  // (a worker at concurrency 4096): no cap on connections, and idle sockets kept longer than a
  // client's own idle timeout (undici: 4 s by default, the worker's PROVIDER_KEEP_ALIVE_MS),
  // so the client closes first and never writes into a socket we just closed.
  const server = http.createServer(handle);
  server.maxConnections = Infinity;
  // Connections clients opened (keep-alive reuse shows as few of them for many calls).
  server.on('connection', () => counters.connectionOpened());
  // Keep-alive sockets from SDK clients must not hold close() open (close() ends them all).
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;

  return {
    ...control,
    apiKeys,
    server,
    handle,
    get url() {
      return url;
    },
    listen(port = 0, host = '127.0.0.1'): Promise<string> {
      return new Promise((resolve, reject) => {
        const onError = (e: Error): void => reject(e);
        server.once('error', onError);
        // A deep accept queue: a client opening a thousand sockets at once must not see SYNs dropped
        // (each drop costs it a 1 s retransmit). The kernel caps it at net.core.somaxconn.
        server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
          server.off('error', onError);
          const addr = server.address() as AddressInfo;
          const h = host.includes(':') ? `[${host}]` : host;
          url = `http://${h}:${addr.port}`;
          resolve(url);
        });
      });
    },
    close(): Promise<void> {
      for (const ac of inflight) ac.abort();
      return new Promise((resolve, reject) => {
        if (!server.listening) return resolve();
        server.close((e) => (e ? reject(e) : resolve()));
        server.closeAllConnections();
      });
    },
  };
}
