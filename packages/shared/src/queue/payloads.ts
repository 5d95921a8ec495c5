import { z } from 'zod';

/**
 * Job payloads are persisted data: jobs enqueued by an older producer must still parse in a newer
 * worker. Add optional fields only; a breaking change gets a new `v` and a parser for both.
 */

export const textPartSchema = z.strictObject({ text: z.string() });

/** Inline data as the Gemini API takes it: base64 bytes with their MIME type. */
export const inlineDataPartSchema = z.strictObject({
  inlineData: z.strictObject({ mimeType: z.string().min(1), data: z.string() }),
});

export const fileDataPartSchema = z.strictObject({
  fileData: z.strictObject({ mimeType: z.string().min(1), fileUri: z.string().min(1) }),
});

/**
 * An image kept out of the job hash: the bytes sit under a content-addressed Redis key
 * (see `blobKey`), so Redis and the dashboard stay light and a repeated image is stored once.
 */
export const blobPartSchema = z.strictObject({
  blob: z.strictObject({
    mimeType: z.string().min(1),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    bytes: z.number().int().nonnegative(),
    /** Pixel size read from the image header by the producer (token estimate); absent in older jobs. */
    width: z.number().int().positive().optional(),
    height: z.number().int().positive().optional(),
  }),
});

export const storedPartSchema = z.union([textPartSchema, blobPartSchema, fileDataPartSchema]);
export type StoredPart = z.infer<typeof storedPartSchema>;

export const storedContentSchema = z.strictObject({
  role: z.enum(['user', 'model']).default('user'),
  parts: z.array(storedPartSchema).min(1),
});
export type StoredContent = z.infer<typeof storedContentSchema>;

/** Gemini's own limit on response schemas is far below this; deeper input is abuse, not a schema. */
export const MAX_SCHEMA_DEPTH = 32;

/**
 * Depth of nested objects and arrays, measured without recursion so that hostile input (thousands
 * of levels) cannot overflow the stack before it is refused. Stops counting past `MAX_SCHEMA_DEPTH`.
 */
export function nestingDepth(value: unknown): number {
  let deepest = 0;
  const stack: { node: unknown; depth: number }[] = [{ node: value, depth: 0 }];
  while (stack.length > 0) {
    const { node, depth } = stack.pop()!;
    if (node === null || typeof node !== 'object') continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_SCHEMA_DEPTH) return deepest;
    for (const child of Object.values(node)) stack.push({ node: child, depth: depth + 1 });
  }
  return deepest;
}

/** Absolute bounds of the numeric generation settings; token counts are bounded per model too (models.ts). */
export const GENERATION_BOUNDS = {
  /** Above every model's output limit: the per-model check (generationLimitIssues) is tighter. */
  maxTokens: 1_048_576,
  /** Gemini's top-K is far below this. */
  topK: 1_000,
  /** Gemini's seed is a 32-bit signed integer. */
  seedMin: -2_147_483_648,
  seedMax: 2_147_483_647,
  /** Gemini's presence and frequency penalties are in [-2, 2). */
  penalty: 2,
} as const;

/**
 * Gemini generationConfig fields we pass through; unknown fields are refused by the producer.
 * Every number is finite (zod refuses Infinity and NaN) and bounded: a job's settings feed the
 * worker's cost math, and an absurd one (thinkingBudget 1e15) must be refused here, not overflow
 * there. Jobs stored before these bounds with a value outside them fail alone, INVALID_JOB.
 */
export const generationConfigSchema = z.strictObject({
  temperature: z.number().min(0).max(2).optional(),
  topP: z.number().min(0).max(1).optional(),
  topK: z.number().int().positive().max(GENERATION_BOUNDS.topK).optional(),
  maxOutputTokens: z.number().int().positive().max(GENERATION_BOUNDS.maxTokens).optional(),
  candidateCount: z.literal(1).optional(),
  stopSequences: z.array(z.string()).max(5).optional(),
  responseMimeType: z.enum(['text/plain', 'application/json', 'text/x.enum']).optional(),
  responseSchema: z
    .record(z.string(), z.unknown())
    .refine((schema) => nestingDepth(schema) <= MAX_SCHEMA_DEPTH, {
      message: `must not nest deeper than ${MAX_SCHEMA_DEPTH} levels`,
    })
    .optional(),
  seed: z.number().int().min(GENERATION_BOUNDS.seedMin).max(GENERATION_BOUNDS.seedMax).optional(),
  presencePenalty: z.number().min(-GENERATION_BOUNDS.penalty).max(GENERATION_BOUNDS.penalty).optional(),
  frequencyPenalty: z.number().min(-GENERATION_BOUNDS.penalty).max(GENERATION_BOUNDS.penalty).optional(),
  thinkingConfig: z
    .strictObject({
      /** -1: dynamic, 0: off, else tokens (bounded per model by generationLimitIssues). */
      thinkingBudget: z.number().int().min(-1).max(GENERATION_BOUNDS.maxTokens).optional(),
      includeThoughts: z.boolean().optional(),
      thinkingLevel: z.string().max(32).optional(),
    })
    .optional(),
});
export type GenerationConfig = z.infer<typeof generationConfigSchema>;

export const cacheOptionSchema = z.union([
  z.boolean(),
  z.strictObject({ ttlSeconds: z.number().int().positive().max(30 * 24 * 3600) }),
]);

export const priorityLevelSchema = z.enum(['high', 'normal', 'low']);
export type PriorityLevel = z.infer<typeof priorityLevelSchema>;

/**
 * A job's own webhook as stored: the URL, and when the job brought its own secret, a random
 * reference to it (`webhookSecretKey`), never the secret: job data shows in bull-board, in logs and
 * to anyone who can read the job hash. Strict, so a secret can never be stored here by mistake.
 */
export const webhookRefSchema = z.strictObject({
  url: z.string().min(1),
  secretRef: z.string().regex(/^[0-9a-f]{32}$/).optional(),
});

/** The payload of a job in the `prompts` queue, version 1. */
export const promptJobDataSchema = z.object({
  v: z.literal(1),
  /**
   * `generate` (generateContent) or `embed` (an embedding of the text parts of `contents`; a batch
   * of embed jobs for one model is one batchEmbedContents call). Older jobs have `generate`.
   */
  kind: z.enum(['generate', 'embed']).default('generate'),
  tenant: z.string().min(1),
  model: z.string().min(1),
  contents: z.array(storedContentSchema).min(1),
  systemInstruction: z.string().optional(),
  generationConfig: generationConfigSchema.optional(),
  cache: cacheOptionSchema.optional(),
  priority: priorityLevelSchema.optional(),
  metadata: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
  idempotencyKey: z.string().optional(),
  /** sha256 of the normalized request: a retried POST with the same idempotency key must match it. */
  requestHash: z.string(),
  /** Epoch ms when the producer accepted the job. */
  enqueuedAt: z.number().int(),
  /**
   * The producer's uncalibrated input-token estimate (its size check). Informational: the worker
   * reserves quota from the fleet's calibrated estimate of the prompt's features instead.
   */
  estimatedInputTokens: z.number().int().nonnegative().optional(),
  /** Embed jobs: Gemini's taskType (RETRIEVAL_QUERY, RETRIEVAL_DOCUMENT, SEMANTIC_SIMILARITY…). */
  taskType: z.string().min(1).optional(),
  /** Embed jobs: length of the returned vector (the model's default when absent). */
  outputDimensionality: z.number().int().positive().optional(),
  /** Where the job's end is POSTed (webhooks/outbox.ts); absent: its tenant's default, if any. */
  webhook: webhookRefSchema.optional(),
  /**
   * Epoch ms by which the job must be answered, from its `deadline`, `maxWaitSeconds` or its
   * tenant's default (the producer works it out). The worker's tier router picks the cheapest tier
   * that meets it; absent: standard, as soon as possible.
   */
  deadline: z.number().int().positive().optional(),
});
export type PromptJobData = z.infer<typeof promptJobDataSchema>;

export const usageSchema = z.object({
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  thoughtsTokens: z.number().int().nonnegative(),
  cachedTokens: z.number().int().nonnegative(),
  totalTokens: z.number().int().nonnegative(),
});

/** What a completed job returns (BullMQ's returnvalue); also persisted, so evolve it compatibly. */
export const promptJobResultSchema = z.object({
  text: z.string(),
  finishReason: z.string(),
  provider: z.string(),
  model: z.string(),
  cached: z.boolean(),
  usage: usageSchema,
  /** USD, for display; `costNanoUsd` is the exact figure. null when the model has no known price. */
  costUsd: z.number().nullable(),
  costNanoUsd: z.number().int().nullable(),
  /** Provider call time, ms. */
  latencyMs: z.number().nonnegative(),
  modelVersion: z.string().optional(),
  /** Embed jobs: the embedding vector (`text` is then ''). */
  embedding: z.array(z.number()).optional(),
  /** The service tier that answered, priced at its rate; absent in older results: standard. */
  tier: z.enum(['standard', 'flex', 'batch']).optional(),
});
export type ServiceTier = 'standard' | 'flex' | 'batch';
export type PromptJobResult = z.infer<typeof promptJobResultSchema>;
