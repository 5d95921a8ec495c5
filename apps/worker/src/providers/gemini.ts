import { GoogleGenerativeAI, type Content, type GenerationConfig as SdkGenerationConfig } from '@google/generative-ai';
import { ProviderError, type Config, type TokenUsage } from '@prompt-queue/shared';
import { classifyProviderError } from './classify.js';
import type { GenerateRequest, GenerateResult, Provider } from './provider.js';

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
interface WireResponse {
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
  };
  modelVersion?: string;
}

export interface GeminiProviderOptions {
  apiKeys: readonly string[];
  baseUrl: string;
  apiVersion: string;
  /** Per-call timeout, ms. */
  timeoutMs: number;
}

export function geminiOptionsFromConfig(config: Config): GeminiProviderOptions {
  return { ...config.gemini };
}

/**
 * Gemini API adapter over `@google/generative-ai` (deprecated upstream but wire-compatible; kept
 * behind `Provider` so a `@google/genai` adapter can replace it).
 */
export class GeminiProvider implements Provider {
  readonly name = 'gemini';
  private readonly clients: GoogleGenerativeAI[];
  private nextClient = 0;

  constructor(private readonly options: GeminiProviderOptions) {
    if (options.apiKeys.length === 0) throw new Error('GeminiProvider needs at least one API key');
    this.clients = options.apiKeys.map((key) => new GoogleGenerativeAI(key));
  }

  async generate(request: GenerateRequest, callOptions: { signal?: AbortSignal } = {}): Promise<GenerateResult> {
    // Round-robin over keys. Quota is per Google Cloud project, so keys of one project add no
    // throughput; keys of several projects do.
    const client = this.clients[this.nextClient++ % this.clients.length]!;
    const model = client.getGenerativeModel(
      {
        model: request.model,
        ...(request.systemInstruction !== undefined ? { systemInstruction: request.systemInstruction } : {}),
        // Our schema is a superset of the SDK's type (thinkingConfig…); the SDK passes it through.
        ...(request.generationConfig !== undefined ? { generationConfig: request.generationConfig as SdkGenerationConfig } : {}),
      },
      // No `timeout` here: the SDK never clears that timer, so every call would leave one pending
      // for timeoutMs. Our own timer below is cleared as soon as the call settles.
      { baseUrl: this.options.baseUrl, apiVersion: this.options.apiVersion },
    );

    const timeout = new AbortController();
    const timer = setTimeout(() => timeout.abort(), this.options.timeoutMs);
    const signal = callOptions.signal ? AbortSignal.any([callOptions.signal, timeout.signal]) : timeout.signal;
    let response: WireResponse;
    try {
      const result = await model.generateContent({ contents: request.contents as Content[] }, { signal });
      response = result.response as WireResponse;
    } catch (error) {
      throw classifyProviderError(error, timeout.signal.aborted ? { timeoutMs: this.options.timeoutMs } : {});
    } finally {
      clearTimeout(timer);
    }
    return this.toResult(request.model, response);
  }

  /** Reads candidates and promptFeedback directly: an HTTP 200 can still be a refusal. */
  private toResult(requestedModel: string, response: WireResponse): GenerateResult {
    const candidate = response.candidates?.[0];
    if (!candidate) {
      const blockReason = response.promptFeedback?.blockReason;
      if (blockReason) {
        throw new ProviderError('PROMPT_BLOCKED', `Gemini blocked the prompt (${blockReason})`, { disposition: 'fail' });
      }
      throw new ProviderError('PROVIDER_UNAVAILABLE', 'Gemini returned no candidates', { disposition: 'backoff' });
    }
    const finishReason = candidate.finishReason ?? 'FINISH_REASON_UNSPECIFIED';
    if (BLOCKED_FINISH_REASONS.has(finishReason)) {
      throw new ProviderError('RESPONSE_BLOCKED', `Gemini withheld the answer (finishReason ${finishReason})`, { disposition: 'fail' });
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
      provider: this.name,
      model: requestedModel,
    };
  }
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
