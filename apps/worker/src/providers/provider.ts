import type { GenerationConfig, TokenUsage } from '@prompt-queue/shared';

/**
 * The one seam between the worker and a model vendor. Deliberately narrow: one call, one answer,
 * failures thrown as a shared `ProviderError` (see classify.ts), so a breaker, a fallback chain or
 * another vendor's adapter (`@google/genai`, OpenAI-compatible) can wrap or replace it later.
 */
export interface Provider {
  /** Stable name, recorded in job results and logs (`gemini`, later `vertex`, `openai`…). */
  readonly name: string;
  /**
   * Runs one generation. Resolves only with a usable answer; a blocked prompt or response, an HTTP
   * error, a timeout or a network failure rejects with a `ProviderError`. Aborting `signal` abandons
   * the call (the provider may still finish, and bill, the work on its side).
   */
  generate(request: GenerateRequest, options?: CallOptions): Promise<GenerateResult>;
  /**
   * Embeds several texts in ONE provider call (Gemini batchEmbedContents), answers in request
   * order. Optional: a provider without it cannot serve `embed` jobs (the chain skips it).
   */
  embedBatch?(request: EmbedBatchRequest, options?: CallOptions): Promise<EmbedBatchResult>;
}

export interface CallOptions {
  /** Abandons the call (the provider may still finish, and bill, the work on its side). */
  signal?: AbortSignal;
  /**
   * Called when the request is about to go out: after any wait inside the provider (a key lease),
   * possibly more than once (a rejected key is retried with the next). The limiter dates the call's
   * quota use from here, as the provider counts it on arrival.
   */
  onSend?: () => void;
}

export interface EmbedItem {
  content: ProviderContent;
  taskType?: string;
  outputDimensionality?: number;
}

export interface EmbedBatchRequest {
  model: string;
  items: EmbedItem[];
}

export interface EmbedBatchResult {
  /** One vector per item, in order. */
  embeddings: number[][];
  provider: string;
  model: string;
}

/** Gemini's wire shapes, which are also our job payload's: other adapters translate from these. */
export type ProviderPart =
  | { text: string }
  | { inlineData: { mimeType: string; data: string } }
  | { fileData: { mimeType: string; fileUri: string } };

export interface ProviderContent {
  role: 'user' | 'model';
  parts: ProviderPart[];
}

export interface GenerateRequest {
  model: string;
  /** Images already resolved from the blob store into base64 `inlineData`. */
  contents: ProviderContent[];
  systemInstruction?: string;
  generationConfig?: GenerationConfig;
}

export interface GenerateResult {
  /** Visible answer text (thought parts excluded); may be '' for e.g. a MAX_TOKENS finish. */
  text: string;
  /** As the provider reported it: STOP, MAX_TOKENS, OTHER… */
  finishReason: string;
  usage: TokenUsage;
  modelVersion?: string;
  /** Which provider and model actually answered (a fallback chain may differ from the request). */
  provider: string;
  model: string;
}
