// OpenAI-compatible `POST /v1/chat/completions`, for clients that speak that dialect.
// Any model name is accepted; answers and token counts follow the same rules as Gemini.

import { canonicalJson, planAnswer, sha256Hex, splitIntoChunks, type Answer } from './answers.js';
import { ApiError, type QuotaKind } from './errors.js';
import type { FaultKind } from './faults.js';
import type { Prepared } from './gemini.js';
import { DEFAULT_TOKENIZER, type Tokenizer } from './tokens.js';
import { isRecord } from './validate.js';

export function openAiError(status: number, message: string, type: string, code: string | null, param: string | null = null, headers: Record<string, string> = {}, reason?: 'quota' | 'fault'): ApiError {
  return new ApiError(status, { error: { message, type, param, code } }, headers, reason);
}

export function missingBearer(): ApiError {
  return openAiError(401, "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).", 'invalid_request_error', 'invalid_api_key');
}

export function invalidBearer(): ApiError {
  // OpenAI echoes a masked key; we never echo keys at all.
  return openAiError(401, 'Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.', 'invalid_request_error', 'invalid_api_key');
}

const RATE_LIMIT_WHAT: Record<QuotaKind, string> = {
  rpm: 'requests per min (RPM)',
  tpm: 'tokens per min (TPM)',
  rpd: 'requests per day (RPD)',
};

export function openAiRateLimit(model: string, kind: QuotaKind, limit: number, retryAfterMs: number, reason: 'quota' | 'fault'): ApiError {
  const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  const what = RATE_LIMIT_WHAT[kind];
  return openAiError(
    429,
    `Rate limit reached for ${model} in organization org-emulator on ${what}: Limit ${limit}. Please try again in ${(retryAfterMs / 1000).toFixed(3)}s.`,
    kind === 'tpm' ? 'tokens' : 'requests',
    'rate_limit_exceeded',
    null,
    { 'retry-after': String(seconds), 'retry-after-ms': String(Math.max(0, Math.round(retryAfterMs))) },
    reason,
  );
}

/** Injected faults in OpenAI's error shape. */
export function openAiFault(kind: Exclude<FaultKind, 'slow' | 'rateLimit'>, message?: string): ApiError {
  switch (kind) {
    case 'unavailable':
      return openAiError(503, message ?? 'The server is overloaded or not ready yet.', 'server_error', null, null, {}, 'fault');
    case 'internal':
      return openAiError(500, message ?? 'The server had an error while processing your request. Sorry about that!', 'server_error', null, null, {}, 'fault');
    case 'deadline':
      return openAiError(504, message ?? 'Request timed out.', 'timeout', null, null, {}, 'fault');
    case 'badRequest':
      return openAiError(400, message ?? 'Invalid request.', 'invalid_request_error', null, null, {}, 'fault');
  }
}

function bad(message: string, param: string | null = null): ApiError {
  return openAiError(400, message, 'invalid_request_error', null, param);
}

interface Message { role: string; text: string; images: number }

/** base64 of each image part of one message; undefined when it is a URL, not a data: URL. */
type ImageData = (string | undefined)[];

const DATA_URL = /^data:image\/[\w.+-]+;base64,([A-Za-z0-9+/_-]*={0,2})$/;

function imageData(part: Record<string, unknown>): string | undefined {
  const ref = part.image_url;
  const url = typeof ref === 'string' ? ref : isRecord(ref) && typeof ref.url === 'string' ? ref.url : undefined;
  return url === undefined ? undefined : DATA_URL.exec(url)?.[1];
}

const ROLES = ['system', 'developer', 'user', 'assistant', 'tool', 'function'];

function parseMessages(raw: unknown, images: ImageData): Message[] {
  if (!Array.isArray(raw) || raw.length === 0) throw bad("[] is too short - 'messages'", 'messages');
  return raw.map((m, i) => {
    if (!isRecord(m) || typeof m.role !== 'string' || !ROLES.includes(m.role)) {
      throw bad(`Invalid value for 'messages[${i}].role'.`, `messages[${i}].role`);
    }
    const msg: Message = { role: m.role, text: '', images: 0 };
    if (typeof m.content === 'string') msg.text = m.content;
    else if (Array.isArray(m.content)) {
      for (const part of m.content) {
        if (isRecord(part) && part.type === 'text' && typeof part.text === 'string') msg.text += part.text;
        else if (isRecord(part) && part.type === 'image_url') {
          msg.images++;
          images.push(imageData(part));
        }
        else throw bad(`Invalid content part in 'messages[${i}].content'.`, `messages[${i}].content`);
      }
    } else if (m.content !== null && m.content !== undefined) {
      throw bad(`Invalid type for 'messages[${i}].content'.`, `messages[${i}].content`);
    }
    return msg;
  });
}

export interface ChatRequest { model: string; stream: boolean; includeUsage: boolean }

function finishReason(answer: Answer): string {
  if (answer.outcome !== 'ok') return 'content_filter';
  return answer.finishReason === 'MAX_TOKENS' ? 'length' : 'stop';
}

/** Reads just the model name so faults and counters can be keyed before full validation. */
export function chatModel(body: unknown): string | undefined {
  return isRecord(body) && typeof body.model === 'string' && body.model !== '' ? body.model : undefined;
}

export function prepareChat(body: unknown, id: string, created: number, tokenizer: Tokenizer = DEFAULT_TOKENIZER): Prepared & ChatRequest {
  if (!isRecord(body)) throw bad('We could not parse the JSON body of your request.');
  const model = chatModel(body);
  if (!model) throw bad('you must provide a model parameter', 'model');
  // Image bytes are kept apart from the messages so the answer digest is what it always was.
  const images: ImageData = [];
  const messages = parseMessages(body.messages, images);
  const maxRaw = body.max_completion_tokens ?? body.max_tokens;
  if (maxRaw !== undefined && maxRaw !== null && (typeof maxRaw !== 'number' || !Number.isInteger(maxRaw) || maxRaw < 1)) {
    throw bad('Invalid max_tokens: must be a positive integer.', 'max_tokens');
  }
  const temperature = body.temperature;
  if (temperature !== undefined && temperature !== null && (typeof temperature !== 'number' || temperature < 0 || temperature > 2)) {
    throw bad('Invalid temperature: must be between 0 and 2.', 'temperature');
  }
  const promptTokens =
    messages.reduce((s, m) => s + tokenizer.text(m.text), 0) + images.reduce((s, data) => s + tokenizer.image(data), 0);
  const lastUser = [...messages].reverse().find((m) => m.role === 'user')?.text ?? '';
  const answer = planAnswer({
    model,
    digest: sha256Hex(canonicalJson(messages)),
    lastUserText: lastUser,
    ...(typeof maxRaw === 'number' ? { maxOutputTokens: maxRaw } : {}),
    thinking: false,
    tokenizer,
  });
  const usage = { prompt_tokens: promptTokens, completion_tokens: answer.candidatesTokens, total_tokens: promptTokens + answer.candidatesTokens };
  const stream = body.stream === true;
  const includeUsage = isRecord(body.stream_options) && body.stream_options.include_usage === true;
  const base = { inputTokens: promptTokens, outputTokens: answer.candidatesTokens, thoughtsTokens: 0, consumesQuota: true, model, stream, includeUsage };
  if (!stream) {
    return {
      ...base,
      body: {
        id, object: 'chat.completion', created, model,
        choices: [{ index: 0, message: { role: 'assistant', content: answer.text, refusal: null }, logprobs: null, finish_reason: finishReason(answer) }],
        usage,
        system_fingerprint: 'fp_emulator',
      },
    };
  }
  const chunk = (delta: Record<string, unknown>, finish: string | null): unknown => ({
    id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_emulator',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...(includeUsage ? { usage: null } : {}),
  });
  const events: unknown[] = [chunk({ role: 'assistant', content: '' }, null)];
  for (const piece of answer.text ? splitIntoChunks(answer.text) : []) events.push(chunk({ content: piece }, null));
  events.push(chunk({}, finishReason(answer)));
  if (includeUsage) events.push({ id, object: 'chat.completion.chunk', created, model, system_fingerprint: 'fp_emulator', choices: [], usage });
  return { ...base, sse: events };
}
