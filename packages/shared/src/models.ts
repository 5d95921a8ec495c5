/**
 * What prompt-queue knows about each model: its kind and context limits. Data, not code: a
 * CONFIG_FILE `models` section adds models or overrides these (see docs/configuration.md).
 */
export interface ModelSpec {
  /** `generate` models serve generateContent; `embed` models serve embedContent. */
  kind: 'generate' | 'embed';
  /** Maximum input tokens per request. */
  inputTokenLimit: number;
  /** Maximum output tokens per request. */
  outputTokenLimit: number;
}

const FLASH_OR_PRO: ModelSpec = { kind: 'generate', inputTokenLimit: 1_048_576, outputTokenLimit: 65_536 };

export const DEFAULT_MODELS: Record<string, ModelSpec> = {
  'gemini-3.1-pro-preview': FLASH_OR_PRO,
  'gemini-3.6-flash': FLASH_OR_PRO,
  'gemini-3.5-flash': FLASH_OR_PRO,
  'gemini-3.5-flash-lite': FLASH_OR_PRO,
  'gemini-3-flash-preview': FLASH_OR_PRO,
  'gemini-2.5-pro': FLASH_OR_PRO,
  'gemini-2.5-flash': FLASH_OR_PRO,
  'gemini-2.5-flash-lite': FLASH_OR_PRO,
  'gemini-embedding-001': { kind: 'embed', inputTokenLimit: 2_048, outputTokenLimit: 0 },
};

/**
 * A cheap upper-side estimate of a text's token count, used before any provider call (size checks,
 * later the limiter's reservation). Gemini averages about 4 characters per token for English; we
 * count UTF-8 bytes so that scripts with multi-byte characters are not underestimated.
 */
export function estimateTextTokens(text: string): number {
  return Math.ceil(Buffer.byteLength(text, 'utf8') / 4);
}

/** Gemini bills an image of up to 384 px per side as 258 tokens; larger images are tiled. */
export const IMAGE_TOKEN_ESTIMATE = 258;
