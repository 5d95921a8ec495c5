import { ProviderError, type TokenUsage } from '@prompt-queue/shared';
import type { GenerateResult } from '../provider.js';

/**
 * A generateContent answer read into our result, for every adapter that speaks Gemini's wire
 * format (the Gemini API here, Vertex AI in vertex/): candidates and promptFeedback are read
 * directly, because an HTTP 200 can still be a refusal.
 */

/**
 * Finish reasons that mean the answer was withheld. The SDK's `response.text()` throws only for
 * some of them (SAFETY, RECITATION, LANGUAGE) and returns '' for the rest, so we read
 * `finishReason` ourselves.
 */
const BLOCKED_FINISH_REASONS = new Set([
  'SAFETY',
  'RECITATION',
  'LANGUAGE',
  'PROHIBITED_CONTENT',
  'BLOCKLIST',
  'SPII',
  'IMAGE_SAFETY',
]);

/** What Google sends; the SDK 0.24 types lag behind (no thoughts, no modelVersion). */
export interface WireResponse {
  candidates?: {
    content?: { parts?: { text?: string; thought?: boolean }[] };
    finishReason?: string;
  }[];
  promptFeedback?: { blockReason?: string };
  usageMetadata?: {
    promptTokenCount?: number;
    candidatesTokenCount?: number;
    thoughtsTokenCount?: number;
    cachedContentTokenCount?: number;
    totalTokenCount?: number;
    /** Gemini API: the tier that served a request that named one (`flex`, `standard`, `priority`). */
    serviceTier?: string;
    /** Vertex AI: ON_DEMAND, ON_DEMAND_FLEX, ON_DEMAND_PRIORITY, PROVISIONED_THROUGHPUT. */
    trafficType?: string;
  };
  modelVersion?: string;
}

/** The answer of a call, or the ProviderError its refusal means. `label` names the API in messages. */
export function readAnswer(response: WireResponse, call: { label: string; provider: string; model: string }): GenerateResult {
  const candidate = response.candidates?.[0];
  if (!candidate) {
    const blockReason = response.promptFeedback?.blockReason;
    if (blockReason) throw new ProviderError('PROMPT_BLOCKED', `${call.label} blocked the prompt (${blockReason})`, { disposition: 'fail' });
    throw new ProviderError('PROVIDER_UNAVAILABLE', `${call.label} returned no candidates`, { disposition: 'backoff' });
  }
  const finishReason = candidate.finishReason ?? 'FINISH_REASON_UNSPECIFIED';
  if (BLOCKED_FINISH_REASONS.has(finishReason)) {
    throw new ProviderError('RESPONSE_BLOCKED', `${call.label} withheld the answer (finishReason ${finishReason})`, { disposition: 'fail' });
  }
  const text = (candidate.content?.parts ?? [])
    .filter((part) => !part.thought && typeof part.text === 'string')
    .map((part) => part.text)
    .join('');
  return {
    text,
    finishReason,
    usage: toUsage(response.usageMetadata),
    ...(response.modelVersion !== undefined ? { modelVersion: response.modelVersion } : {}),
    provider: call.provider,
    model: call.model,
    ...servedTierOf(response.usageMetadata),
  };
}

/** What the answer says served it; nothing when it says nothing (then it is priced as standard). */
function servedTierOf(meta: WireResponse['usageMetadata']): { servedTier?: 'standard' | 'flex' | 'priority' } {
  const said = (meta?.serviceTier ?? meta?.trafficType)?.toLowerCase().replace(/^(service_tier_|on_demand_?)/, '');
  if (said === 'flex' || said === 'priority') return { servedTier: said };
  if (said === '' || said === 'standard') return { servedTier: 'standard' };
  return {};
}

export function toUsage(meta: WireResponse['usageMetadata']): TokenUsage {
  return {
    inputTokens: meta?.promptTokenCount ?? 0,
    outputTokens: meta?.candidatesTokenCount ?? 0,
    thoughtsTokens: meta?.thoughtsTokenCount ?? 0,
    cachedTokens: meta?.cachedContentTokenCount ?? 0,
    totalTokens: meta?.totalTokenCount ?? 0,
  };
}
