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

/**
 * The largest `thinkingConfig.thinkingBudget` each model accepts, tokens (Google's documented
 * ranges: 32,768 for the Pro family, 24,576 for Flash and Flash-Lite). Data, like DEFAULT_MODELS:
 * a model not listed here (a CONFIG_FILE model) is bounded by its `outputTokenLimit`.
 */
export const THINKING_BUDGET_LIMITS: Record<string, number> = {
  'gemini-3.1-pro-preview': 32_768,
  'gemini-2.5-pro': 32_768,
  'gemini-3.6-flash': 24_576,
  'gemini-3.5-flash': 24_576,
  'gemini-3.5-flash-lite': 24_576,
  'gemini-3-flash-preview': 24_576,
  'gemini-2.5-flash': 24_576,
  'gemini-2.5-flash-lite': 24_576,
};

/** The largest thinkingBudget `model` accepts (see THINKING_BUDGET_LIMITS). */
export function thinkingBudgetLimit(model: string, spec: ModelSpec): number {
  return THINKING_BUDGET_LIMITS[model] ?? spec.outputTokenLimit;
}

/**
 * The generation settings that exceed `model`'s own limits, as `{ path, message }` (empty when
 * none). The schema (generationConfigSchema) bounds every number absolutely; this bounds the
 * token counts by the model. The producer refuses such a request with 400; the worker fails such
 * a job alone with INVALID_JOB (a job enqueued before the check existed), never its batch.
 */
export function generationLimitIssues(
  model: string,
  spec: ModelSpec,
  config: { maxOutputTokens?: number | undefined; thinkingConfig?: { thinkingBudget?: number | undefined } | undefined } | undefined,
): { path: string; message: string }[] {
  const issues: { path: string; message: string }[] = [];
  const maxOutputTokens = config?.maxOutputTokens;
  if (maxOutputTokens !== undefined && maxOutputTokens > spec.outputTokenLimit) {
    issues.push({ path: 'generationConfig.maxOutputTokens', message: `must not exceed ${spec.outputTokenLimit}, the output limit of ${model}` });
  }
  const thinkingBudget = config?.thinkingConfig?.thinkingBudget;
  const thinkingLimit = thinkingBudgetLimit(model, spec);
  if (thinkingBudget !== undefined && thinkingBudget > thinkingLimit) {
    issues.push({ path: 'generationConfig.thinkingConfig.thinkingBudget', message: `must not exceed ${thinkingLimit}, the thinking limit of ${model} (-1: dynamic, 0: off)` });
  }
  return issues;
}
