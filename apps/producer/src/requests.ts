import { z } from 'zod';
import {
  PromptQueueError,
  cacheOptionSchema,
  canonicalJson,
  estimateTextTokens,
  fileDataPartSchema,
  generationConfigSchema,
  generationLimitIssues,
  imageSize,
  imageTokensByRule,
  inlineDataPartSchema,
  jobFileUriRefusal,
  MIN_WEBHOOK_SECRET_LENGTH,
  newWebhookSecretRef,
  priorityLevelSchema,
  promptJobDataSchema,
  sha256Hex,
  textPartSchema,
  webhookUrlSyntaxRefusal,
  withArticle,
  type Config,
  type ErrorCode,
  type JobWebhookSecret,
  type ModelSpec,
  type PromptJobData,
  type StoredContent,
  type StoredPart,
} from '@prompt-queue/shared';
import { base64DecodedBytes, isBase64, isSupportedImageType, matchesMagicBytes, SUPPORTED_IMAGE_TYPES } from './images.js';
import { idempotentJobId, randomJobId } from './job-ids.js';

/**
 * The HTTP request shapes of `POST /v1/jobs` (and each item of `/v1/jobs/bulk`), and their
 * normalization into the persisted `PromptJobData`. Everything here is pure: no Redis, so a bulk
 * request is validated completely before anything is written.
 */

/** One problem with a request, named by its path in the body (`jobs[3].images[0].data`). */
export interface Issue {
  path: string;
  message: string;
  /** Set when the problem is not plain validation (e.g. `UNSUPPORTED_MEDIA_TYPE` inside a bulk item). */
  code?: ErrorCode;
}

export const MAX_BULK_JOBS = 1_000;
const METADATA_MAX_KEYS = 20;
const METADATA_MAX_JSON_BYTES = 2_048;

export const idempotencyKeySchema = z
  .string()
  .regex(/^[\x20-\x7E]{1,200}$/, 'must be 1-200 printable ASCII characters');

const partSchema = z.union([textPartSchema, inlineDataPartSchema, fileDataPartSchema], {
  error: 'a part is { text }, { inlineData: { mimeType, data } } or { fileData: { mimeType, fileUri } }',
});

const contentSchema = z.strictObject({
  role: z.enum(['user', 'model']).optional(),
  parts: z.array(partSchema).min(1, 'needs at least one part'),
});

const imageSchema = z.strictObject({ mimeType: z.string().min(1), data: z.string() });

const metadataSchema = z
  .record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()], { error: 'values must be string, number, boolean or null' }))
  .refine((value) => Object.keys(value).length <= METADATA_MAX_KEYS, `at most ${METADATA_MAX_KEYS} keys`)
  .refine((value) => Buffer.byteLength(JSON.stringify(value)) <= METADATA_MAX_JSON_BYTES, `at most ${METADATA_MAX_JSON_BYTES} bytes as JSON`);

/**
 * Where the job's end is POSTed, signed with `secret` (or, without one, the tenant's configured
 * secrets). The secret is stored apart from the job (`PreparedJob.webhookSecret`), never in it.
 */
const webhookRequestSchema = z.strictObject({
  url: z.string(),
  secret: z
    .string()
    .regex(/^[\x21-\x7E]+$/, 'must be printable ASCII without spaces')
    .min(MIN_WEBHOOK_SECRET_LENGTH, `must be at least ${MIN_WEBHOOK_SECRET_LENGTH} characters`)
    .max(256)
    .optional(),
});

/** Gemini's embedding task types (embedContent `taskType`). */
export const EMBED_TASK_TYPES = [
  'RETRIEVAL_QUERY',
  'RETRIEVAL_DOCUMENT',
  'SEMANTIC_SIMILARITY',
  'CLASSIFICATION',
  'CLUSTERING',
  'QUESTION_ANSWERING',
  'FACT_VERIFICATION',
  'CODE_RETRIEVAL_QUERY',
] as const;

export const jobRequestSchema = z
  .strictObject({
    /** `generate` (default) or `embed`: an embedding of the text, with an embed model. */
    kind: z.enum(['generate', 'embed']).optional(),
    prompt: z.string().min(1, 'must not be empty').optional(),
    contents: z.array(contentSchema).min(1, 'needs at least one content').optional(),
    model: z.string().min(1).optional(),
    systemInstruction: z.string().optional(),
    generationConfig: generationConfigSchema.optional(),
    images: z.array(imageSchema).optional(),
    priority: priorityLevelSchema.optional(),
    idempotencyKey: idempotencyKeySchema.optional(),
    cache: cacheOptionSchema.optional(),
    metadata: metadataSchema.optional(),
    /** Embed jobs only: Gemini's taskType. */
    taskType: z.enum(EMBED_TASK_TYPES).optional(),
    /** Embed jobs only: length of the returned vector. */
    outputDimensionality: z.number().int().positive().max(3072).optional(),
    /** Signed POST of the job's end (docs/webhooks.md). */
    webhook: webhookRequestSchema.optional(),
    /** When the answer is needed by (ISO 8601 time): a job that can wait may go to a cheaper tier (README, Tiers). */
    deadline: z.iso.datetime({ offset: true }).optional(),
    /** How long the job may wait for its answer, s (instead of `deadline`). */
    maxWaitSeconds: z.number().int().positive().max(30 * 86_400).optional(),
  })
  .superRefine((request, ctx) => {
    if (request.deadline !== undefined && request.maxWaitSeconds !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['maxWaitSeconds'], message: 'give either deadline or maxWaitSeconds, not both' });
    }
    if (request.kind !== 'embed') {
      for (const field of ['taskType', 'outputDimensionality'] as const) {
        if (request[field] !== undefined) ctx.addIssue({ code: 'custom', path: [field], message: 'is only for kind "embed"' });
      }
    } else {
      for (const field of ['generationConfig', 'systemInstruction', 'images'] as const) {
        if (request[field] !== undefined) ctx.addIssue({ code: 'custom', path: [field], message: 'is not used by kind "embed"' });
      }
      request.contents?.forEach((content, c) =>
        content.parts.forEach((part, p) => {
          if (!('text' in part)) ctx.addIssue({ code: 'custom', path: ['contents', c, 'parts', p], message: 'embed jobs take text parts only' });
        }),
      );
    }
    if (request.prompt === undefined && request.contents === undefined) {
      ctx.addIssue({ code: 'custom', path: ['prompt'], message: 'one of prompt or contents is required' });
    } else if (request.prompt !== undefined && request.contents !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['contents'], message: 'give either prompt or contents, not both' });
    }
  });
export type JobRequest = z.infer<typeof jobRequestSchema>;

/**
 * Items are `unknown` here and parsed one by one with `jobRequestSchema` (prepareBulkRequest), so
 * every item's issues are reported under `jobs[i]`; the OpenAPI document shows them as JobRequest.
 */
export const bulkRequestSchema = z.strictObject({
  jobs: z.array(z.unknown()).min(1, 'needs at least one job').max(MAX_BULK_JOBS, `at most ${MAX_BULK_JOBS} jobs`),
});

/** A request turned into what goes to Redis: the job payload and the image bytes stored beside it. */
export interface PreparedJob {
  id: string;
  data: PromptJobData;
  blobs: { mimeType: string; data: Buffer }[];
  /** The job's own webhook secret, stored under `data.webhook.secretRef` beside the job. */
  webhookSecret?: JobWebhookSecret;
}

export interface PrepareContext {
  config: Config;
  tenant: string;
  /** Epoch ms; one value for a whole bulk request. */
  now: number;
  /** The `Idempotency-Key` header (single POST only). */
  headerIdempotencyKey?: string;
}

/** Parses and normalizes one job request; throws a PromptQueueError whose details list the issues. */
export function prepareJobRequest(body: unknown, ctx: PrepareContext): PreparedJob {
  const parsed = jobRequestSchema.safeParse(body);
  if (!parsed.success) throw validationError(zodIssues(parsed.error));
  return normalize(parsed.data, ctx);
}

/**
 * Parses every item of a bulk request and throws one 400 listing the problems of all items (paths
 * prefixed `jobs[i]`), so a client fixes everything in one round trip and nothing is enqueued.
 */
export function prepareBulkRequest(body: unknown, ctx: PrepareContext): PreparedJob[] {
  const parsed = bulkRequestSchema.safeParse(body);
  if (!parsed.success) throw validationError(zodIssues(parsed.error));
  const prepared: PreparedJob[] = [];
  const issues: Issue[] = [];
  parsed.data.jobs.forEach((item, index) => {
    try {
      prepared.push(prepareJobRequest(item, { ...ctx, headerIdempotencyKey: undefined }));
    } catch (error) {
      if (!(error instanceof PromptQueueError)) throw error;
      for (const issue of issuesOf(error)) {
        issues.push({
          path: issue.path ? `jobs[${index}].${issue.path}` : `jobs[${index}]`,
          message: issue.message,
          ...(error.code === 'VALIDATION_FAILED' ? {} : { code: error.code }),
        });
      }
    }
  });
  if (issues.length > 0) throw validationError(issues);
  return prepared;
}

function normalize(request: JobRequest, ctx: PrepareContext): PreparedJob {
  const { config } = ctx;
  const kind = request.kind ?? 'generate';
  const model = request.model ?? (kind === 'embed' ? defaultEmbedModel(config) : config.gemini.defaultModel);
  const spec = kind === 'embed' ? embedModel(config, model) : generateModel(config, model);

  const [limitIssue] = generationLimitIssues(model, spec, request.generationConfig);
  if (limitIssue) throw fail('VALIDATION_FAILED', limitIssue.path, limitIssue.message);

  const images = new ImageCollector(config.producer.maxImageBytes);
  const contents: StoredContent[] =
    request.prompt !== undefined
      ? [{ role: 'user', parts: [{ text: request.prompt }] }]
      : request.contents!.map((content, c) => ({
          role: content.role ?? 'user',
          parts: content.parts.map((part, p): StoredPart => {
            if ('inlineData' in part) return images.add(part.inlineData, `contents[${c}].parts[${p}].inlineData`);
            if ('fileData' in part) checkFileUri(part.fileData.fileUri, `contents[${c}].parts[${p}].fileData.fileUri`, config);
            return part;
          }),
        }));
  const imageParts = (request.images ?? []).map((image, i) => images.add(image, `images[${i}]`));
  if (imageParts.length > 0) appendToLastUserContent(contents, imageParts);

  const estimatedInputTokens = estimateInputTokens(model, contents, request.systemInstruction);
  if (estimatedInputTokens > spec.inputTokenLimit) {
    throw fail(
      'PROMPT_TOO_LARGE',
      request.prompt !== undefined ? 'prompt' : 'contents',
      `about ${estimatedInputTokens} input tokens, more than the ${spec.inputTokenLimit} that ${model} accepts`,
    );
  }

  const deadline = jobDeadline(request, ctx);
  const idempotencyKey = resolveIdempotencyKey(request.idempotencyKey, ctx.headerIdempotencyKey);
  const webhookSecret = request.webhook?.secret !== undefined ? { ref: newWebhookSecretRef(), secret: request.webhook.secret } : undefined;
  if (request.webhook) checkWebhook(request.webhook, ctx);
  const data: PromptJobData = promptJobDataSchema.parse({
    v: 1,
    kind,
    tenant: ctx.tenant,
    model,
    contents,
    ...defined({
      systemInstruction: request.systemInstruction,
      generationConfig: request.generationConfig,
      cache: request.cache,
      priority: request.priority,
      metadata: request.metadata,
      idempotencyKey,
      taskType: request.taskType,
      outputDimensionality: request.outputDimensionality,
      webhook: request.webhook && { url: request.webhook.url, ...(webhookSecret ? { secretRef: webhookSecret.ref } : {}) },
      deadline,
    }),
    requestHash: requestHash({
      model,
      contents,
      systemInstruction: request.systemInstruction,
      generationConfig: request.generationConfig,
      ...(kind === 'embed' ? { kind, taskType: request.taskType, outputDimensionality: request.outputDimensionality } : {}),
    }),
    enqueuedAt: ctx.now,
    estimatedInputTokens,
  });
  const id = idempotencyKey === undefined ? randomJobId() : idempotentJobId(ctx.tenant, idempotencyKey);
  return { id, data, blobs: images.blobs, ...(webhookSecret ? { webhookSecret } : {}) };
}

/** `gemini-embedding-001` when configured, else the first embed model. */
function defaultEmbedModel(config: Config): string {
  if (config.models['gemini-embedding-001']?.kind === 'embed') return 'gemini-embedding-001';
  return Object.entries(config.models).find(([, spec]) => spec.kind === 'embed')?.[0] ?? 'gemini-embedding-001';
}

function embedModel(config: Config, model: string): ModelSpec {
  const spec = config.models[model];
  if (!spec || spec.kind !== 'embed') {
    const known = Object.entries(config.models)
      .filter(([, s]) => s.kind === 'embed')
      .map(([name]) => name);
    throw fail('UNKNOWN_MODEL', 'model', `"${model}" is not an embed model; known embed models: ${known.join(', ')}`);
  }
  return spec;
}

function generateModel(config: Config, model: string): ModelSpec {
  const spec = config.models[model];
  if (!spec || spec.kind !== 'generate') {
    const known = Object.entries(config.models)
      .filter(([, s]) => s.kind === 'generate')
      .map(([name]) => name);
    throw fail('UNKNOWN_MODEL', 'model', `unknown model "${model}"; known generate models: ${known.join(', ')}`);
  }
  return spec;
}

/**
 * Validates inline images in order and keeps their decoded bytes. Each check runs before the next
 * costs more: type (no decoding), base64 shape, total size (before allocating), then magic bytes.
 */
class ImageCollector {
  readonly blobs: { mimeType: string; data: Buffer }[] = [];
  private totalBytes = 0;

  constructor(private readonly maxBytes: number) {}

  add(image: { mimeType: string; data: string }, path: string): StoredPart {
    const mimeType = image.mimeType.toLowerCase();
    if (!isSupportedImageType(mimeType)) {
      throw fail('UNSUPPORTED_MEDIA_TYPE', `${path}.mimeType`, `"${image.mimeType}" is not supported; use one of ${SUPPORTED_IMAGE_TYPES.join(', ')}`);
    }
    if (!isBase64(image.data)) {
      throw fail('VALIDATION_FAILED', `${path}.data`, 'is not valid base64 (standard alphabet, padded, no data: prefix or line breaks)');
    }
    this.totalBytes += base64DecodedBytes(image.data);
    if (this.totalBytes > this.maxBytes) {
      throw fail('PAYLOAD_TOO_LARGE', `${path}.data`, `images total more than the ${this.maxBytes} bytes allowed per job`);
    }
    const data = Buffer.from(image.data, 'base64');
    if (!matchesMagicBytes(mimeType, data)) {
      throw fail('UNSUPPORTED_MEDIA_TYPE', `${path}.data`, `the bytes are not ${withArticle(mimeType)} image`);
    }
    this.blobs.push({ mimeType, data });
    // The bytes go to a content-addressed key (putBlobs); the job keeps only this reference, with
    // the pixel size from the header: Gemini bills an image by its size.
    const size = imageSize(data, mimeType);
    return { blob: { mimeType, sha256: sha256Hex(data), bytes: data.length, ...(size ?? {}) } };
  }
}

/**
 * A file URI is fetched by the backend (Google, or a vLLM/LiteLLM server inside our network): only
 * Gemini Files API URIs and `fileUris.allow` prefixes (packages/shared/src/queue/file-uris.ts).
 */
function checkFileUri(uri: string, path: string, config: Config): void {
  const refusal = jobFileUriRefusal(uri, config.fileUris.allow);
  if (refusal !== undefined) throw fail('VALIDATION_FAILED', path, refusal);
}

/**
 * What can be checked of a webhook without DNS: an http(s) URL without credentials, and a secret to
 * sign with (every delivery is signed). The producer then resolves the host (webhook-urls.ts).
 */
function checkWebhook(webhook: { url: string; secret?: string }, ctx: PrepareContext): void {
  const refusal = webhookUrlSyntaxRefusal(webhook.url);
  if (refusal) throw fail('WEBHOOK_URL_NOT_ALLOWED', 'webhook.url', refusal);
  if (webhook.secret === undefined && !ctx.config.tenants[ctx.tenant]?.webhook?.secrets.length) {
    throw fail('VALIDATION_FAILED', 'webhook.secret', 'is required: every delivery is signed, and this tenant has no webhook secret configured');
  }
}

/** `images` belong to the user's turn: the last user content, or a new one after a trailing model turn. */
function appendToLastUserContent(contents: StoredContent[], parts: StoredPart[]): void {
  const last = contents.findLast((content) => content.role === 'user');
  if (last) last.parts.push(...parts);
  else contents.push({ role: 'user', parts });
}

/**
 * The size check's estimate, and only that: text by Google's rule of thumb (estimateTextTokens),
 * images by Google's rule from their size (a file reference as one small image). It refuses what
 * is far too large before anything is stored; the provider's own count is the final word (a
 * prompt that passes here and is still too large fails with PROVIDER_BAD_REQUEST). Quota and
 * budget reservations do not use it: the worker reserves from the fleet's calibrated estimate.
 */
function estimateInputTokens(model: string, contents: StoredContent[], systemInstruction: string | undefined): number {
  let tokens = systemInstruction === undefined ? 0 : estimateTextTokens(systemInstruction);
  for (const part of contents.flatMap((content) => content.parts)) {
    if ('text' in part) tokens += estimateTextTokens(part.text);
    else tokens += imageTokensByRule(model, 'blob' in part && part.blob.width && part.blob.height ? { width: part.blob.width, height: part.blob.height } : undefined);
  }
  return tokens;
}

function resolveIdempotencyKey(fromBody: string | undefined, fromHeader: string | undefined): string | undefined {
  if (fromHeader !== undefined) {
    if (!idempotencyKeySchema.safeParse(fromHeader).success) {
      throw fail('VALIDATION_FAILED', 'Idempotency-Key', 'header must be 1-200 printable ASCII characters');
    }
    if (fromBody !== undefined && fromBody !== fromHeader) {
      throw fail('VALIDATION_FAILED', 'idempotencyKey', 'differs from the Idempotency-Key header');
    }
  }
  return fromBody ?? fromHeader;
}

/**
 * What makes two requests "the same" for idempotency: what the model sees. Metadata, priority and
 * cache options do not change the answer, so a retry may change them.
 */
export function requestHash(
  request: Pick<PromptJobData, 'model' | 'contents' | 'systemInstruction' | 'generationConfig'> & Partial<Pick<PromptJobData, 'kind' | 'taskType' | 'outputDimensionality'>>,
): string {
  return sha256Hex(
    canonicalJson({
      model: request.model,
      contents: request.contents,
      systemInstruction: request.systemInstruction ?? null,
      generationConfig: request.generationConfig ?? null,
      // Only embed requests name their kind, so generate hashes of older jobs still match.
      ...(request.kind === 'embed' ? { kind: 'embed', taskType: request.taskType ?? null, outputDimensionality: request.outputDimensionality ?? null } : {}),
    }),
  );
}

function defined<T extends Record<string, unknown>>(fields: T): Partial<T> {
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined)) as Partial<T>;
}

// --- Issues and errors ---------------------------------------------------------------------

function formatPath(path: readonly PropertyKey[]): string {
  return path.reduce<string>((out, segment) => {
    if (typeof segment === 'number') return `${out}[${segment}]`;
    return out ? `${out}.${String(segment)}` : String(segment);
  }, '');
}

export function zodIssues(error: z.ZodError): Issue[] {
  return error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ path: formatPath([...issue.path, key]), message: 'unknown field' }))
      : [{ path: formatPath(issue.path), message: issue.message }],
  );
}

export function validationError(issues: Issue[]): PromptQueueError {
  const [first] = issues;
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
  const message = first ? `Invalid request: ${first.path || 'body'}: ${first.message}${more}` : 'Invalid request';
  return new PromptQueueError('VALIDATION_FAILED', message, { issues });
}

/**
 * The job's deadline, epoch ms: its `deadline`, else now + its `maxWaitSeconds`, else now + its
 * tenant's `maxWaitSeconds`, else none (standard, as soon as possible). A deadline already past is
 * refused (400).
 */
function jobDeadline(request: Pick<JobRequest, 'deadline' | 'maxWaitSeconds'>, ctx: PrepareContext): number | undefined {
  if (request.deadline !== undefined) {
    const at = Date.parse(request.deadline);
    if (at <= ctx.now) throw fail('VALIDATION_FAILED', 'deadline', 'is in the past');
    return at;
  }
  const seconds = request.maxWaitSeconds ?? ctx.config.tenants[ctx.tenant]?.maxWaitSeconds;
  return seconds === undefined ? undefined : ctx.now + seconds * 1000;
}

function fail(code: ErrorCode, path: string, message: string): PromptQueueError {
  return new PromptQueueError(code, `${path}: ${message}`, { issues: [{ path, message }] });
}

/** The issues a PromptQueueError from this module carries (see `fail` and `validationError`). */
export function issuesOf(error: PromptQueueError): Issue[] {
  const issues = error.details?.issues;
  return Array.isArray(issues) ? (issues as Issue[]) : [{ path: '', message: error.message }];
}
