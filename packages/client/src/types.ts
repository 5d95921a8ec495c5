/**
 * The wire types of the prompt-queue HTTP API, written once here so the published package stands
 * alone (no private workspace package at runtime or in its types). `test/contract.types.ts` checks
 * at compile time that they agree with the producer's own types, and the whole-stack tests check
 * real responses against them.
 */

/** Every error code the API answers with or a failed job carries (packages/shared/src/errors.ts). */
export const ERROR_CODES = [
  'INVALID_JSON',
  'VALIDATION_FAILED',
  'UNKNOWN_MODEL',
  'UNAUTHORIZED',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'IDEMPOTENCY_CONFLICT',
  'JOB_NOT_CANCELLABLE',
  'PAYLOAD_TOO_LARGE',
  'PROMPT_TOO_LARGE',
  'UNSUPPORTED_MEDIA_TYPE',
  'BUDGET_EXCEEDED',
  'REDIS_UNAVAILABLE',
  'INTERNAL',
  'INVALID_JOB',
  'IMAGE_EXPIRED',
  'FILE_URI_NOT_ALLOWED',
  'PROVIDER_BAD_REQUEST',
  'PROVIDER_AUTH_FAILED',
  'PROVIDER_MODEL_NOT_FOUND',
  'PROMPT_BLOCKED',
  'RESPONSE_BLOCKED',
  'PROVIDER_RATE_LIMITED',
  'PROVIDER_UNAVAILABLE',
  'PROVIDER_TIMEOUT',
  'PROVIDER_NETWORK_ERROR',
  'CANCELLED',
  'JOB_STALLED',
  'WEBHOOK_URL_NOT_ALLOWED',
  'WEBHOOK_DELIVERY_FAILED',
  'WEBHOOK_SECRET_MISSING',
] as const;

/** A code the server sends. A newer server may send codes this client does not know yet. */
export type ErrorCode = (typeof ERROR_CODES)[number];

/** One part of a Gemini-shaped content. */
export type Part =
  | { text: string }
  | { inlineData: { mimeType: string; data: string } }
  | { fileData: { mimeType: string; fileUri: string } };

export interface Content {
  role?: 'user' | 'model';
  parts: Part[];
}

export interface GenerationConfig {
  temperature?: number;
  topP?: number;
  topK?: number;
  maxOutputTokens?: number;
  candidateCount?: 1;
  stopSequences?: string[];
  responseMimeType?: 'text/plain' | 'application/json' | 'text/x.enum';
  responseSchema?: Record<string, unknown>;
  seed?: number;
  presencePenalty?: number;
  frequencyPenalty?: number;
  thinkingConfig?: { thinkingBudget?: number; includeThoughts?: boolean; thinkingLevel?: string };
}

export type EmbedTaskType =
  | 'RETRIEVAL_QUERY'
  | 'RETRIEVAL_DOCUMENT'
  | 'SEMANTIC_SIMILARITY'
  | 'CLASSIFICATION'
  | 'CLUSTERING'
  | 'QUESTION_ANSWERING'
  | 'FACT_VERIFICATION'
  | 'CODE_RETRIEVAL_QUERY';

/** The body of `POST /v1/jobs`, and each item of `POST /v1/jobs/bulk`. Give `prompt` or `contents`. */
export interface JobRequest {
  /** @defaultValue 'generate' */
  kind?: 'generate' | 'embed';
  prompt?: string;
  contents?: Content[];
  /** @defaultValue the server's `GEMINI_MODEL` (embed jobs: `gemini-embedding-001`) */
  model?: string;
  systemInstruction?: string;
  generationConfig?: GenerationConfig;
  /** Base64 images (png, jpeg, webp, heic, heif) appended to the prompt. */
  images?: { mimeType: string; data: string }[];
  /** @defaultValue 'normal' */
  priority?: 'high' | 'normal' | 'low';
  /** 1-200 printable ASCII characters; the same key always names the same job (per tenant). */
  idempotencyKey?: string;
  cache?: boolean | { ttlSeconds: number };
  /** At most 20 keys, 2 KiB as JSON; shown back in the job view. */
  metadata?: Record<string, string | number | boolean | null>;
  taskType?: EmbedTaskType;
  outputDimensionality?: number;
  /** Signed POST of the job's end (docs/webhooks.md). */
  webhook?: { url: string; secret?: string };
  /** When the answer is needed by (ISO 8601 with offset): a job that can wait may go to a cheaper tier. */
  deadline?: string;
  /** How long the job may wait for its answer, seconds (instead of `deadline`). */
  maxWaitSeconds?: number;
}

export type JobStatus = 'queued' | 'active' | 'completed' | 'failed' | 'cancelled';

/** What `POST /v1/jobs` answers, and each item of a bulk answer. */
export interface Accepted {
  id: string;
  status: JobStatus;
}

export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  thoughtsTokens: number;
  cachedTokens: number;
  totalTokens: number;
}

export interface JobResult {
  text: string;
  finishReason: string;
  provider: string;
  model: string;
  cached: boolean;
  usage: TokenUsage;
  /** USD; `null` for models without a price. Sum `costNanoUsd`, not this. */
  costUsd: number | null;
  /** Exact cost in integer nano-USD (1e-9 USD). 0 for cache hits. */
  costNanoUsd: number | null;
  /** Embed jobs: the vector (`text` is then ''). */
  embedding?: number[];
}

/** `GET /v1/jobs/:id`: finished jobs carry `result` (completed) or `error` (failed). */
export interface JobView {
  id: string;
  status: JobStatus;
  model: string;
  /** Provider attempts that ended (retries included). */
  attempts: number;
  createdAt: string;
  finishedAt: string | null;
  metadata?: Record<string, string | number | boolean | null>;
  /** A queued job held back for hours, and why (`daily-quota`, `budget`). */
  waiting?: { reason: string; until: string };
  /** The service tier that answered (queued: the one it waits in); absent: standard. */
  tier?: 'standard' | 'flex' | 'batch';
  result?: JobResult;
  error?: { code: ErrorCode; message: string; retryable: boolean };
}

export const JOB_EVENT_TYPES = ['queued', 'active', 'retrying', 'waiting', 'completed', 'failed', 'cancelled'] as const;
export type JobEventType = (typeof JOB_EVENT_TYPES)[number];

/** The `data:` of one Server-Sent Event. */
export interface JobEvent {
  type: JobEventType;
  jobId: string;
  tenant: string;
  /** ISO time */
  at: string;
  /** 1-based attempt, when known */
  attempt?: number;
  /** `waiting`: why (`quota`, `rate-limited`, `daily-quota`, `budget`) and until when (ISO) */
  reason?: string;
  until?: string;
  /** `failed` / `retrying`: the error code */
  code?: string;
  /** Final events (`completed`, `failed`, `cancelled`): the job as `GET /v1/jobs/:id` shows it */
  view?: JobView;
}

/** An event as the client yields it: `id` is the SSE `id:` to resume after (absent on a synthesized final event). */
export type StreamedJobEvent = JobEvent & { id?: string };

export function isFinalStatus(status: JobStatus | JobEventType): boolean {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

/** One problem with a request, by its path in the body (`jobs[3].prompt`). */
export interface Issue {
  path: string;
  message: string;
  code?: ErrorCode;
}

/** Every error answer of the API. */
export interface ErrorBody {
  error: { code: ErrorCode; message: string; details?: Issue[] };
}

export interface UsageView {
  jobs: number;
  failures: number;
  inputTokens: number;
  outputTokens: number;
  thoughtsTokens: number;
  cachedTokens: number;
  costUsd: number;
  costNanoUsd: number;
  cacheHits: number;
  savedUsd: number;
  savedNanoUsd: number;
  /** Jobs of models without a price (their cost counts as 0). */
  unpricedJobs: number;
}

export interface BudgetView {
  limitUsd: number;
  spentUsd: number;
  reservedUsd: number;
  remainingUsd: number;
  /** ISO time the period ends */
  resetsAt: string;
}

/** `GET /v1/usage`. */
export interface UsageResponse {
  tenant: string;
  /** UTC day, `YYYY-MM-DD` */
  day: string;
  /** UTC month, `YYYY-MM` */
  month: string;
  today: UsageView & { byModel: Record<string, UsageView> };
  thisMonth: UsageView & { byModel: Record<string, UsageView> };
  /** `null` when the tenant has no budget */
  budget: { daily?: BudgetView; monthly?: BudgetView } | null;
}

/** The body of a webhook request (docs/webhooks.md). */
export interface WebhookEvent {
  /** `<jobId>.<type>`, the same on every attempt: deduplicate on it. */
  id: string;
  type: 'job.completed' | 'job.failed' | 'job.cancelled';
  createdAt: string;
  data: JobView;
}
