// HTTP routing and the per-call pipeline: auth -> model -> validation -> faults -> quota ->
// latency -> answer. Counters see every step. node:http only, so nothing between the SDK
// and the emulator can change what goes over the wire.

import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { handleAdmin, type EmulatorControl } from './admin.js';
import { Counters, keyFingerprint, type CountersSnapshot, type WindowStats } from './counters.js';
import {
  ApiError, badRequest, deadlineExceeded, internal, invalidApiKey, invalidJson, missingApiKey, modelNotFound,
  quotaExceeded, unavailable,
} from './errors.js';
import { FaultRegistry, type ActiveFault, type FaultSpec } from './faults.js';
import { runModelMethod, type Prepared } from './gemini.js';
import { describeModel, findModel, isModelMethod, MODELS, supportsMethod } from './models.js';
import { chatModel, invalidBearer, missingBearer, openAiError, openAiFault, openAiRateLimit, prepareChat } from './openai.js';
import { QuotaManager, type QuotaConfig, type QuotaLimit, type QuotaUsage } from './quotas.js';
import { Tokenizer, type TokenizerConfig, type TokenizerSettings } from './tokens.js';

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

  function checkQuota(model: string, prepared: Prepared, openAi: boolean, embedding: boolean): void {
    if (!prepared.consumesQuota) return;
    const decision = quotas.tryConsume(model, prepared.inputTokens);
    if (!decision.ok) {
      if (openAi) throw openAiRateLimit(model, decision.kind, decision.limit, decision.retryAfterMs, 'quota');
      throw quotaExceeded({ model, kind: decision.kind, limit: decision.limit, retryAfterMs: decision.retryAfterMs, embedding, reason: 'quota' });
    }
    counters.recordAccepted(model, prepared.inputTokens);
  }

  /** Shared tail of every model call; `prepare` validates and builds the answer. */
  async function pipeline(
    req: IncomingMessage, res: ServerResponse, model: string, method: string, openAi: boolean, embedding: boolean,
    prepare: () => Prepared,
  ): Promise<void> {
    const ac = new AbortController();
    inflight.add(ac);
    res.once('close', () => {
      if (!res.writableFinished) ac.abort();
      inflight.delete(ac);
    });
    try {
      const prepared = prepare();
      await applyFault(model, method, ac.signal, openAi, embedding);
      checkQuota(model, prepared, openAi, embedding);
      await latency(ac.signal);
      if (prepared.sse) sendSse(res, prepared.sse, openAi);
      else send(res, 200, prepared.body);
      counters.recordSuccess(model, prepared.inputTokens, prepared.outputTokens, prepared.thoughtsTokens);
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
    const info = findModel(model);
    await pipeline(req, res, model, method, false, info?.kind === 'embedding', () => {
      if (!key) throw missingApiKey();
      if (!keySet.has(key)) throw invalidApiKey();
      if (!info || !isModelMethod(method) || !supportsMethod(info, method)) throw modelNotFound(model, version, method);
      if (raw.tooLarge) throw badRequest(`Request payload size exceeds the limit: ${maxBodyBytes} bytes.`);
      let body: unknown;
      try {
        body = JSON.parse(raw.text) as unknown;
      } catch (err) {
        throw invalidJson(err instanceof Error ? err.message : 'Unexpected token.');
      }
      const prepared = runModelMethod(info, method, body, nextId(), tokenizer);
      // Without alt=sse Google streams one JSON array of the same chunks.
      if (prepared.sse && u.searchParams.get('alt') !== 'sse') return { ...prepared, sse: undefined, body: prepared.sse };
      return prepared;
    });
  }

  async function chatRoute(req: IncomingMessage, res: ServerResponse, raw: { text: string; tooLarge: boolean }): Promise<void> {
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
    const m = MODEL_ROUTE.exec(u.pathname);
    if (m && method === 'POST') return geminiRoute(req, res, u, m[1] ?? 'v1beta', m[2] ?? '', m[3] ?? '', raw);
    const g = MODEL_GET.exec(u.pathname);
    if (g && method === 'GET') return listModels(req, res, u, g[1] ?? 'v1beta', g[2]);
    res.writeHead(404, { 'content-type': 'text/html; charset=UTF-8', ...GOOGLE_HEADERS });
    res.end(NOT_FOUND_HTML);
  }

  const control: EmulatorControl = {
    counters: (): CountersSnapshot => counters.snapshot(),
    windowStats: (w?: number): Record<string, WindowStats> => counters.windowStats(w),
    reset: (): void => {
      counters.reset();
      quotas.reset();
      faults.clear();
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
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    route(req, res).catch((e: unknown) => {
      console.error('gemini-emulator: request failed', e instanceof Error ? e.message : e);
      if (!res.headersSent) sendError(res, internal());
      else res.destroy();
    });
  };

  const server = http.createServer(handle);
  // Keep-alive sockets from SDK clients must not hold close() open.
  server.keepAliveTimeout = 5_000;

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
        server.listen(port, host, () => {
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
