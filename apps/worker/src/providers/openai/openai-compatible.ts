import { fileUriRefusal, isProviderError, ProviderError, withArticle, type TokenUsage } from '@prompt-queue/shared';
import { callSignal, CallNotSentError } from '../call-signal.js';
import { MIN_RATE_LIMIT_RETRY_MS } from '../rate-limit.js';
import { fileUriNotAllowed } from '../file-uris.js';
import type { CallOptions, GenerateRequest, GenerateResult, Provider, ProviderPart } from '../provider.js';

/**
 * An adapter for servers that speak OpenAI's `POST /chat/completions`: OpenAI, Azure OpenAI (the
 * `/openai/v1` API, or any deployment via `baseUrl` + `headers`), Ollama, vLLM, LiteLLM…
 *
 * It translates our Gemini-shaped request into chat messages and the answer back into a
 * `GenerateResult`, and classifies its own failures into the shared `ProviderError`, with the same
 * dispositions as classify.ts does for Gemini (a breaker or a fallback chain reads them alike).
 * Plain `fetch`, no SDK: the dialect is small and every server above varies it slightly.
 *
 * Error messages carry the status and the server's own error message (with anything key-like
 * masked), never the request: no prompt text, no image data, no key.
 */

export interface OpenAICompatibleProviderOptions {
  /** Shown as `result.provider` and in error messages, e.g. `openai`, `ollama`. */
  name: string;
  /** Up to and including the version, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`. */
  baseUrl: string;
  /** Sent as `Authorization: Bearer <apiKey>`; omit for servers without auth (a local Ollama). */
  apiKey?: string;
  /** Per-call timeout, ms, covering the whole response (headers and body). */
  timeoutMs: number;
  /** Extra headers, e.g. Azure's `api-key` or an OpenAI `OpenAI-Organization`. */
  headers?: Record<string, string>;
  /** For tests and custom agents. @defaultValue globalThis.fetch */
  fetch?: typeof fetch;
  /**
   * URL prefixes the server may fetch as `image_url` (config `fileUris.allow`). Any other file URI,
   * a Gemini Files API URI included, fails the job with FILE_URI_NOT_ALLOWED. @defaultValue []
   */
  fileUriAllow?: readonly string[];
}

/** OpenAI's chat message content parts we send. */
type ChatContentPart = { type: 'text'; text: string } | { type: 'image_url'; image_url: { url: string } };

interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string | ChatContentPart[];
}

interface ChatCompletionRequest {
  model: string;
  messages: ChatMessage[];
  max_tokens?: number;
  temperature?: number;
  top_p?: number;
  stop?: string[];
  seed?: number;
}

/** What we read of an answer; every field optional because servers differ. */
interface ChatCompletionResponse {
  model?: string;
  choices?: {
    message?: { content?: string | null; refusal?: string | null };
    finish_reason?: string | null;
  }[];
  usage?: {
    prompt_tokens?: number;
    completion_tokens?: number;
    total_tokens?: number;
    prompt_tokens_details?: { cached_tokens?: number } | null;
    completion_tokens_details?: { reasoning_tokens?: number } | null;
  };
}

const MAX_MESSAGE_CHARS = 300;

export class OpenAICompatibleProvider implements Provider {
  readonly name: string;
  private readonly url: string;
  private readonly fetchImpl: typeof fetch;

  constructor(private readonly options: OpenAICompatibleProviderOptions) {
    this.name = options.name;
    this.url = `${options.baseUrl.replace(/\/+$/, '')}/chat/completions`;
    // Looked up per call, unbound: works with fetch mocks installed later and in any runtime.
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  async generate(request: GenerateRequest, callOptions: CallOptions = {}): Promise<GenerateResult> {
    // Before the timer: a request we cannot translate fails without a call.
    const body = JSON.stringify(toChatRequest(request, this.name, this.options.fileUriAllow));
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json', ...this.options.headers };
    if (this.options.apiKey !== undefined) headers.authorization = `Bearer ${this.options.apiKey}`;

    // Abandoned already (a shutdown handing the job back): nothing goes out, and onSend is not told.
    if (callOptions.signal?.aborted) throw new CallNotSentError(this.name, callOptions.signal.reason);
    // Not AbortSignal.any: it leaks one signal per call once fetch listens to it (call-signal.ts).
    const call$ = callSignal(callOptions.signal, this.options.timeoutMs);
    let status: number;
    let answer: unknown;
    let responseHeaders: Headers;
    try {
      callOptions.onSend?.();
      const response = await this.fetchImpl(this.url, { method: 'POST', headers, body, signal: call$.signal });
      status = response.status;
      responseHeaders = response.headers;
      const text = await response.text();
      answer = parseJson(text);
    } catch (error) {
      throw this.classifyThrown(error, { timedOut: call$.timedOut, aborted: callOptions.signal?.aborted === true });
    } finally {
      call$.dispose();
    }
    if (status < 200 || status >= 300) {
      throw classifyOpenAIError(status, answer, responseHeaders, { provider: this.name, apiKey: this.options.apiKey });
    }
    return this.toResult(request.model, answer);
  }

  /** Failures without an HTTP answer: our timeout, the caller's abort, the network. */
  private classifyThrown(error: unknown, { timedOut, aborted }: { timedOut: boolean; aborted: boolean }): ProviderError {
    return classifyOpenAIThrown(error, { provider: this.name, timeoutMs: this.options.timeoutMs, timedOut, aborted, apiKey: this.options.apiKey });
  }

  private toResult(requestedModel: string, answer: unknown): GenerateResult {
    if (!isRecord(answer)) {
      throw new ProviderError('INTERNAL', `${this.name} answered 2xx with a body that is not a JSON object`, { disposition: 'backoff' });
    }
    const response = answer as ChatCompletionResponse;
    const choice = Array.isArray(response.choices) ? response.choices[0] : undefined;
    if (!choice) throw new ProviderError('PROVIDER_UNAVAILABLE', `${this.name} returned no choices`, { disposition: 'backoff' });

    const raw = choice.finish_reason ?? undefined;
    if (raw === 'content_filter') {
      throw new ProviderError('RESPONSE_BLOCKED', `${this.name} withheld the answer (finish_reason content_filter)`, { disposition: 'fail' });
    }
    const refusal = choice.message?.refusal;
    if (typeof refusal === 'string' && refusal !== '') {
      // The refusal text is the model's, but it may quote the prompt: not in the message.
      throw new ProviderError('RESPONSE_BLOCKED', `${this.name} refused to answer`, { disposition: 'fail' });
    }
    const content = choice.message?.content;
    return {
      text: typeof content === 'string' ? content : '',
      finishReason: mapFinishReason(raw),
      usage: toOpenAIUsage(response.usage),
      ...(typeof response.model === 'string' ? { modelVersion: response.model } : {}),
      provider: this.name,
      model: requestedModel,
    };
  }
}

/** OpenAI's finish_reason in Gemini's words (content_filter is a failure, handled above). */
function mapFinishReason(reason: string | undefined): string {
  switch (reason) {
    case 'stop':
      return 'STOP';
    case 'length':
      return 'MAX_TOKENS';
    case undefined:
    case '':
      return 'FINISH_REASON_UNSPECIFIED';
    default:
      return reason.toUpperCase(); // tool_calls → TOOL_CALLS…
  }
}

/**
 * OpenAI usage → our TokenUsage. `completion_tokens` includes reasoning tokens, while our
 * `outputTokens` excludes thinking (Gemini's candidatesTokenCount) and `thoughtsTokens` holds it;
 * so outputTokens = completion − reasoning, and output + thoughts is not double counted.
 * `cached_tokens` is part of `prompt_tokens`, as Gemini's cached count is part of its prompt count.
 */
export function toOpenAIUsage(usage: ChatCompletionResponse['usage']): TokenUsage {
  const input = count(usage?.prompt_tokens);
  const completion = count(usage?.completion_tokens);
  const reasoning = Math.min(count(usage?.completion_tokens_details?.reasoning_tokens), completion);
  return {
    inputTokens: input,
    outputTokens: completion - reasoning,
    thoughtsTokens: reasoning,
    cachedTokens: count(usage?.prompt_tokens_details?.cached_tokens),
    totalTokens: typeof usage?.total_tokens === 'number' ? usage.total_tokens : input + completion,
  };
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0;
}

/**
 * Gemini-shaped request → chat completion body. `systemInstruction` becomes a leading system
 * message, role `model` becomes `assistant`. A message with text only is sent as one string (its
 * parts joined, as Gemini reads adjacent parts); one with images as content parts in their order.
 * An image file URI is sent only when it starts with a prefix of `fileUriAllow`: the server
 * fetches it itself, from wherever it runs.
 */
export function toChatRequest(
  request: GenerateRequest,
  providerName = 'OpenAI-compatible provider',
  fileUriAllow: readonly string[] = [],
): ChatCompletionRequest {
  const messages: ChatMessage[] = [];
  if (request.systemInstruction !== undefined && request.systemInstruction !== '') {
    messages.push({ role: 'system', content: request.systemInstruction });
  }
  for (const [c, content] of request.contents.entries()) {
    const role = content.role === 'model' ? 'assistant' : 'user';
    const parts = content.parts.map((part, p) => toContentPart(part, providerName, fileUriAllow, `contents[${c}].parts[${p}]`));
    const textOnly = parts.every((part) => part.type === 'text');
    messages.push({
      role,
      content: textOnly ? parts.map((part) => (part as { text: string }).text).join('') : parts,
    });
  }

  const config = request.generationConfig;
  const body: ChatCompletionRequest = { model: request.model, messages };
  if (config?.maxOutputTokens !== undefined) body.max_tokens = config.maxOutputTokens;
  if (config?.temperature !== undefined) body.temperature = config.temperature;
  if (config?.topP !== undefined) body.top_p = config.topP;
  if (config?.stopSequences !== undefined && config.stopSequences.length > 0) body.stop = config.stopSequences;
  if (config?.seed !== undefined) body.seed = config.seed;
  return body;
}

function toContentPart(part: ProviderPart, providerName: string, fileUriAllow: readonly string[], where: string): ChatContentPart {
  if ('text' in part) return { type: 'text', text: part.text };
  if ('inlineData' in part) {
    const { mimeType, data } = part.inlineData;
    if (!mimeType.startsWith('image/')) throw unsupported(providerName, `inline ${mimeType} data`);
    return { type: 'image_url', image_url: { url: `data:${mimeType};base64,${data}` } };
  }
  const { mimeType, fileUri } = part.fileData;
  // Chat completions fetch http(s) image URLs themselves; gs:// and Files API URIs are Google's.
  if (!mimeType.startsWith('image/') || !/^https?:\/\//i.test(fileUri)) throw unsupported(providerName, `${withArticle(mimeType)} file reference`);
  // The server fetches it from inside our network: an allowlisted prefix only (file-uris.ts).
  const refusal = fileUriRefusal(fileUri, 'openai', fileUriAllow);
  if (refusal !== undefined) throw fileUriNotAllowed(`${providerName} (OpenAI-compatible)`, where, refusal);
  return { type: 'image_url', image_url: { url: fileUri } };
}

function unsupported(providerName: string, what: string): ProviderError {
  return new ProviderError('PROVIDER_BAD_REQUEST', `${providerName} (OpenAI-compatible) cannot take ${what}`, { disposition: 'fail' });
}

type HeaderSource = Headers | Record<string, string | string[] | undefined>;

/**
 * A failure without an HTTP answer: our timeout (`timedOut`), the caller's abort, the network.
 * Anything key-like in the message is masked.
 */
export function classifyOpenAIThrown(
  error: unknown,
  context: { provider: string; timeoutMs?: number; timedOut: boolean; aborted: boolean; apiKey?: string | undefined },
): ProviderError {
  if (isProviderError(error)) return error;
  const { provider, timedOut, aborted } = context;
  if (timedOut) {
    const within = context.timeoutMs === undefined ? '' : ` within ${context.timeoutMs} ms`;
    return new ProviderError('PROVIDER_TIMEOUT', `${provider} did not answer${within}`, { disposition: 'backoff', cause: error });
  }
  const name = (error as { name?: unknown } | null)?.name;
  if (aborted || name === 'AbortError' || name === 'TimeoutError') {
    return new ProviderError('PROVIDER_TIMEOUT', `The call to ${provider} was aborted`, { disposition: 'backoff', cause: error });
  }
  const message = error instanceof Error ? error.message : String(error);
  return new ProviderError('PROVIDER_NETWORK_ERROR', `Cannot reach ${provider}: ${causeCode(error) ?? clip(mask(message, context.apiKey))}`, {
    disposition: 'backoff',
    cause: error,
  });
}

/**
 * THE classification of an OpenAI-compatible HTTP error answer, with classify.ts's dispositions:
 * - 400, 422 → PROVIDER_BAD_REQUEST (a 400 with code `content_filter`, Azure's prompt filter → PROMPT_BLOCKED); 404 → PROVIDER_MODEL_NOT_FOUND: `fail`
 * - 401, 403 → PROVIDER_AUTH_FAILED: `fail` (the server's message is left out: OpenAI echoes part of the key)
 * - 429 → PROVIDER_RATE_LIMITED: `rate-limit`, retryAfterMs from `retry-after-ms`, `retry-after`
 *   (seconds or an HTTP date), "try again in 1.5s" in the message, else none (the call chain backs off)
 * - 504 → PROVIDER_TIMEOUT; other 5xx → PROVIDER_UNAVAILABLE: `backoff`
 * - other 4xx → PROVIDER_BAD_REQUEST `fail` (as classify.ts)
 * `body` is the parsed JSON answer (or its text); `context.apiKey`, if given, is masked out of messages.
 */
export function classifyOpenAIError(
  status: number,
  body: unknown,
  headers: HeaderSource,
  context: { provider?: string; apiKey?: string | undefined; now?: number } = {},
): ProviderError {
  const provider = context.provider ?? 'OpenAI-compatible provider';
  const { message: serverMessage, code } = errorFields(body);
  const cleaned = clip(mask(serverMessage, context.apiKey).replace(/\s+/g, ' ').trim());
  const base = { httpStatus: status };
  const text = (withMessage: boolean) => `${provider} answered ${status}${withMessage && cleaned ? `: ${cleaned}` : code ? ` (${code})` : ''}`;

  if (status === 429) {
    const named = retryAfterFromHeaders(headers, context.now ?? Date.now()) ?? retryAfterFromMessage(serverMessage);
    return new ProviderError('PROVIDER_RATE_LIMITED', text(true), {
      ...base,
      disposition: 'rate-limit',
      ...(named !== undefined ? { retryAfterMs: Math.max(MIN_RATE_LIMIT_RETRY_MS, named) } : {}),
    });
  }
  if (status === 401 || status === 403) return new ProviderError('PROVIDER_AUTH_FAILED', text(false), { ...base, disposition: 'fail' });
  if (status === 404) return new ProviderError('PROVIDER_MODEL_NOT_FOUND', text(true), { ...base, disposition: 'fail' });
  if (status === 400 && code === 'content_filter') return new ProviderError('PROMPT_BLOCKED', text(true), { ...base, disposition: 'fail' });
  if (status === 504) return new ProviderError('PROVIDER_TIMEOUT', text(true), { ...base, disposition: 'backoff' });
  if (status >= 500) return new ProviderError('PROVIDER_UNAVAILABLE', text(true), { ...base, disposition: 'backoff' });
  if (status >= 400) return new ProviderError('PROVIDER_BAD_REQUEST', text(true), { ...base, disposition: 'fail' });
  // 1xx/3xx: fetch follows redirects, so this is a server we do not understand.
  return new ProviderError('INTERNAL', text(true), { ...base, disposition: 'backoff' });
}

/** OpenAI: `{error:{message,type,code}}`; vLLM (older): `{message,type,code}`; Ollama: `{error:"…"}`. */
function errorFields(body: unknown): { message: string; code: string | undefined } {
  if (typeof body === 'string') return { message: body, code: undefined };
  if (!isRecord(body)) return { message: '', code: undefined };
  const inner = isRecord(body.error) ? body.error : body;
  const message = typeof body.error === 'string' ? body.error : typeof inner.message === 'string' ? inner.message : '';
  const code = typeof inner.code === 'string' ? inner.code : typeof inner.type === 'string' ? inner.type : undefined;
  return { message, code };
}

function header(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as Headers).get === 'function') return (headers as Headers).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((k) => k.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value[0] : value;
}

function retryAfterFromHeaders(headers: HeaderSource, now: number): number | undefined {
  const ms = header(headers, 'retry-after-ms')?.trim();
  if (ms && /^\d+(\.\d+)?$/.test(ms)) return Math.ceil(Number(ms));
  const after = header(headers, 'retry-after')?.trim();
  if (!after) return undefined;
  if (/^\d+(\.\d+)?$/.test(after)) return Math.ceil(Number(after) * 1000);
  const date = Date.parse(after);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** OpenAI: "… Please try again in 1.5s." / "in 20ms" / "in 1m30s" is rare; seconds and ms are read. */
function retryAfterFromMessage(message: string): number | undefined {
  const match = /try again in (\d+(?:\.\d+)?)\s*(ms|s)\b/i.exec(message);
  if (!match) return undefined;
  return Math.ceil(Number(match[1]) * (match[2]!.toLowerCase() === 'ms' ? 1 : 1000));
}

/**
 * Key-like tokens a server may echo (OpenAI masks `sk-…`, others may not), our own key, and the
 * `input_value=…` that pydantic validation errors (vLLM, LiteLLM) quote from the request.
 */
function mask(text: string, apiKey: string | undefined): string {
  let out = text;
  if (apiKey) out = out.split(apiKey).join('[redacted]');
  return out
    .replace(/input_value=[\s\S]*?(?=, input_type=|\]|$)/g, 'input_value=[redacted]')
    .replace(/\b(sk|rk|pk)-[A-Za-z0-9_*.-]{6,}/g, '[redacted]')
    .replace(/Bearer\s+\S+/gi, 'Bearer [redacted]');
}

function parseJson(text: string): unknown {
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

const NETWORK_CODES = ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH'];

/** undici hides the errno in `cause` (sometimes two levels deep). */
function causeCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && isRecord(current); depth++) {
    if (typeof current.code === 'string' && (NETWORK_CODES.includes(current.code) || current.code.startsWith('UND_ERR'))) return current.code;
    current = current.cause;
  }
  return undefined;
}

function clip(text: string): string {
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS - 1)}…` : text;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
