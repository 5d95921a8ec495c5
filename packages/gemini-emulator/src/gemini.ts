// Gemini model routes: turns a validated request into Google's response JSON (or the list of
// SSE chunks for streams). Everything here is pure; the server does I/O, quotas and faults.

import { planAnswer, requestDigest, safetyRatings, splitIntoChunks, type Answer } from './answers.js';
import { batchEmbedContents, embedContent } from './embeddings.js';
import { badRequest } from './errors.js';
import type { ModelInfo, ModelMethod } from './models.js';
import { countInput, DEFAULT_TOKENIZER, modalityDetails, type CountOptions, type Tokenizer, type TokenCount } from './tokens.js';
import type { ServiceTier } from './tiers.js';
import { isRecord, lastUserText, normalizeKeys, parseGenerateRequest, Violations, type GenerateRequest } from './validate.js';

/** What a model route produced, before quota and faults decide whether it is sent. */
export interface Prepared {
  /** Input tokens, for quota (TPM) and counters. */
  inputTokens: number;
  outputTokens: number;
  thoughtsTokens: number;
  /** countTokens is free; generate and embed calls consume quota. */
  consumesQuota: boolean;
  /** A JSON body, or SSE events when `sse` is set. */
  body?: unknown;
  sse?: unknown[];
  /** The service tier the request asked for (generate calls only); `tierRequested` is false when it named none. */
  tier?: ServiceTier;
  tierRequested?: boolean;
  /** Latency this one request asks for on top of the configured one (`[[slow:<ms>]]` in the prompt). */
  extraLatencyMs?: number;
}

/** `[[slow:<ms>]]` in the last user turn: that call alone answers so much later (at most 10 min). */
export function promptLatencyMs(text: string): number | undefined {
  const match = /\[\[slow:(\d{1,6})\]\]/.exec(text);
  return match ? Math.min(Number(match[1]), 600_000) : undefined;
}

function usageMetadata(input: TokenCount, answer: Answer, candidatesSoFar: number, cached: number | undefined): Record<string, unknown> {
  const usage: Record<string, unknown> = { promptTokenCount: input.total };
  if (candidatesSoFar > 0) usage.candidatesTokenCount = candidatesSoFar;
  usage.totalTokenCount = input.total + candidatesSoFar + answer.thoughtsTokens;
  if (cached !== undefined) usage.cachedContentTokenCount = cached;
  usage.promptTokensDetails = modalityDetails(input);
  if (cached !== undefined) usage.cacheTokensDetails = [{ modality: 'TEXT', tokenCount: cached }];
  if (answer.thoughtsTokens > 0) usage.thoughtsTokenCount = answer.thoughtsTokens;
  return usage;
}

/** A deterministic share of the prompt is "cached" when the request names cachedContent. */
export function cachedTokens(req: GenerateRequest, input: TokenCount): number | undefined {
  return req.cachedContent !== undefined ? Math.floor(input.total / 2) : undefined;
}

/** The tokenizer plus what the request itself says about media (Gemini 3 mediaResolution). */
function countOptions(req: GenerateRequest, tokenizer: Tokenizer): CountOptions {
  const mediaResolution = req.generationConfig?.mediaResolution;
  return typeof mediaResolution === 'string' ? { tokenizer, mediaResolution } : { tokenizer };
}

function plan(model: ModelInfo, req: GenerateRequest, tokenizer: Tokenizer): { answer: Answer; input: TokenCount } {
  const thinkingConfig = req.generationConfig?.thinkingConfig;
  const budget = thinkingConfig?.thinkingBudget;
  if (budget === 0 && model.thinkingRequired) {
    throw badRequest('Budget 0 is invalid. This model only works in thinking mode.');
  }
  const input = countInput(req.contents, req.systemInstruction, req.tools, countOptions(req, tokenizer));
  const answer = planAnswer({
    tokenizer,
    model: model.name,
    digest: requestDigest(req.contents, req.systemInstruction),
    lastUserText: lastUserText(req.contents),
    ...(req.generationConfig?.maxOutputTokens !== undefined ? { maxOutputTokens: req.generationConfig.maxOutputTokens } : {}),
    thinking: model.thinking && budget !== 0,
    ...(budget !== undefined ? { thinkingBudget: budget } : {}),
    ...(thinkingConfig?.includeThoughts ? { includeThoughts: true } : {}),
  });
  return { answer, input };
}

function candidate(answer: Answer, parts: Record<string, unknown>[] | undefined, final: boolean): Record<string, unknown> {
  const c: Record<string, unknown> = {};
  if (parts && parts.length > 0) c.content = { parts, role: 'model' };
  if (final && answer.finishReason) c.finishReason = answer.finishReason;
  if (final || answer.outcome !== 'ok') c.safetyRatings = safetyRatings(answer.outcome === 'safety');
  c.index = 0;
  return c;
}

function generate(model: ModelInfo, body: unknown, responseId: string, stream: boolean, tokenizer: Tokenizer): Prepared {
  const req = parseGenerateRequest(body);
  const { answer, input } = plan(model, req, tokenizer);
  const cached = cachedTokens(req, input);
  const meta = { modelVersion: model.name, responseId };
  const result: Prepared = {
    inputTokens: input.total,
    outputTokens: answer.candidatesTokens + answer.thoughtsTokens,
    thoughtsTokens: answer.thoughtsTokens,
    consumesQuota: true,
  };
  const extraLatencyMs = promptLatencyMs(lastUserText(req.contents));
  if (extraLatencyMs !== undefined) result.extraLatencyMs = extraLatencyMs;

  if (answer.outcome === 'blocked') {
    const blocked = {
      promptFeedback: { blockReason: 'SAFETY', safetyRatings: safetyRatings(true) },
      usageMetadata: usageMetadata(input, answer, 0, cached),
      ...meta,
    };
    return stream ? { ...result, sse: [blocked] } : { ...result, body: blocked };
  }

  const thoughtPart = answer.thoughtSummary !== undefined ? [{ text: answer.thoughtSummary, thought: true }] : [];
  if (!stream) {
    const parts = answer.text ? [...thoughtPart, { text: answer.text }] : thoughtPart;
    result.body = { candidates: [candidate(answer, parts, true)], usageMetadata: usageMetadata(input, answer, answer.candidatesTokens, cached), ...meta };
    return result;
  }

  // Streams: thoughts first (if shown), then the text in 2-3 chunks; usage is cumulative and
  // finishReason appears on the last chunk only.
  const events: unknown[] = [];
  if (thoughtPart.length > 0) {
    events.push({ candidates: [candidate(answer, thoughtPart, false)], usageMetadata: usageMetadata(input, answer, 0, cached), ...meta });
  }
  const chunks = answer.text ? splitIntoChunks(answer.text) : [];
  if (chunks.length === 0) {
    events.push({ candidates: [candidate(answer, undefined, true)], usageMetadata: usageMetadata(input, answer, 0, cached), ...meta });
  }
  let soFar = '';
  chunks.forEach((chunk, i) => {
    soFar += chunk;
    const final = i === chunks.length - 1;
    const count = final ? answer.candidatesTokens : Math.min(answer.candidatesTokens, tokenizer.text(soFar));
    events.push({ candidates: [candidate(answer, [{ text: chunk }], final)], usageMetadata: usageMetadata(input, answer, count, cached), ...meta });
  });
  result.sse = events;
  return result;
}

function countTokens(body: unknown, tokenizer: Tokenizer): Prepared {
  if (!isRecord(body)) throw badRequest('Invalid JSON payload received. Expected an object.');
  const v = new Violations();
  const top = normalizeKeys(body, ['contents', 'generateContentRequest'], v);
  const err = v.toError();
  if (err) throw err;
  if (top.contents !== undefined && top.generateContentRequest !== undefined) {
    throw badRequest('* CountTokensRequest: only one of contents or generate_content_request may be set');
  }
  const req = parseGenerateRequest(top.generateContentRequest ?? { contents: top.contents });
  const input = countInput(req.contents, req.systemInstruction, req.tools, countOptions(req, tokenizer));
  const cached = cachedTokens(req, input);
  const out: Record<string, unknown> = { totalTokens: input.total };
  if (cached !== undefined) out.cachedContentTokenCount = cached;
  out.promptTokensDetails = modalityDetails(input);
  return { inputTokens: 0, outputTokens: 0, thoughtsTokens: 0, consumesQuota: false, body: out };
}

/** Runs a Gemini model method; throws ApiError for invalid requests. `tokenizer` is the provider's truth for every count. */
export function runModelMethod(model: ModelInfo, method: ModelMethod, body: unknown, responseId: string, tokenizer: Tokenizer = DEFAULT_TOKENIZER): Prepared {
  switch (method) {
    case 'generateContent':
      return generate(model, body, responseId, false, tokenizer);
    case 'streamGenerateContent':
      return generate(model, body, responseId, true, tokenizer);
    case 'countTokens':
      return countTokens(body, tokenizer);
    case 'embedContent': {
      const r = embedContent(model.name, body, tokenizer);
      return { inputTokens: r.inputTokens, outputTokens: 0, thoughtsTokens: 0, consumesQuota: true, body: r.body };
    }
    case 'batchEmbedContents': {
      const r = batchEmbedContents(model.name, body, tokenizer);
      return { inputTokens: r.inputTokens, outputTokens: 0, thoughtsTokens: 0, consumesQuota: true, body: r.body };
    }
  }
}
