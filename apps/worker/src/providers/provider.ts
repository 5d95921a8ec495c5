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
  /** This call's timeout, ms, instead of the link's (a Flex call's is bounded by its job's deadline). */
  timeoutMs?: number;
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
  /**
   * Ask for Google's Flex tier (half price, best effort, minutes, may be shed with a 503). A
   * provider without Flex ignores it; the answer's `servedTier` says what actually served it.
   */
  serviceTier?: 'flex';
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
  /** The tier the provider says served the call, when it says one (Gemini API, Vertex); else standard. */
  servedTier?: 'standard' | 'flex' | 'priority';
}
