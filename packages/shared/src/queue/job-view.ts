import type { Job, JobState } from 'bullmq';
import { z } from 'zod';
import { ERROR_CATALOG, errorCodeSchema, parseFailedReason, type ErrorCode } from '../errors.js';
import { promptJobResultSchema, type PromptJobResult } from './payloads.js';

/**
 * What `GET /v1/jobs/:id` answers. BullMQ's states are an implementation detail; clients see five
 * statuses, and finished jobs carry either `result` or `error`. The schema is the contract: the
 * type is inferred from it, and the producer's OpenAPI document is generated from it, so the
 * documented view cannot drift from the one we build.
 */
export const jobStatusSchema = z.enum(['queued', 'active', 'completed', 'failed', 'cancelled']);
export type JobStatus = z.infer<typeof jobStatusSchema>;

const usageViewSchema = z.object({
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  thoughtsTokens: z.number().int().nonnegative(),
  cachedTokens: z.number().int().nonnegative(),
  totalTokens: z.number().int().nonnegative(),
});

export const jobViewSchema = z.object({
  id: z.string(),
  status: jobStatusSchema,
  model: z.string(),
  /** BullMQ's attemptsMade: provider attempts that ended (retries included). */
  attempts: z.number().int().nonnegative().describe('Provider attempts that ended (retries included).'),
  createdAt: z.iso.datetime(),
  finishedAt: z.iso.datetime().nullable(),
  metadata: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
  /**
   * A queued job held back for hours, and why: `daily-quota` (every link's requests-per-day quota is
   * spent until Google's reset) or `budget` (the tenant's budget, until its period ends).
   */
  waiting: z
    .object({ reason: z.string(), until: z.string() })
    .optional()
    .describe("A queued job held back for hours, and why: `daily-quota` (until Google's reset) or `budget` (until the period ends)."),
  /**
   * The service tier: of a finished job, the one that answered; of a queued job, the one it waits
   * in (`batch` with `waiting.reason` `waiting-in-batch`). Absent: standard.
   */
  tier: z.enum(['standard', 'flex', 'batch']).optional().describe('The service tier that answered (or, queued, the one the job waits in); absent: standard.'),
  result: z
    .object({
      text: z.string(),
      finishReason: z.string(),
      provider: z.string(),
      model: z.string(),
      cached: z.boolean(),
      usage: usageViewSchema,
      costUsd: z.number().nullable().describe('USD, for display; null when the model has no known price.'),
      /** Exact cost, integer nano-USD (1e-9 USD); sum these, never costUsd. 0 for cache hits. */
      costNanoUsd: z.number().int().nullable().describe('Exact cost in integer nano-USD (1e-9 USD); sum these, never costUsd. 0 for cache hits.'),
      /** Embed jobs: the embedding vector (`text` is then ''). */
      embedding: z.array(z.number()).optional().describe("Embed jobs: the embedding vector (`text` is then '')."),
    })
    .optional(),
  error: z.object({ code: errorCodeSchema, message: z.string(), retryable: z.boolean() }).optional(),
})
  // Its name in JSON Schema and OpenAPI documents: wherever it is nested, it is one `$ref`.
  .meta({ id: 'JobView' });
export type JobView = z.infer<typeof jobViewSchema>;

export function isFinished(status: JobStatus): boolean {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

/** undefined for `unknown` (the job vanished between reads). */
export function statusOf(state: JobState | 'unknown'): JobStatus | undefined {
  switch (state) {
    case 'active':
    case 'completed':
    case 'failed':
      return state;
    case 'unknown':
      return undefined;
    default:
      // waiting, wait, prioritized, delayed (backoff between attempts), waiting-children
      return 'queued';
  }
}

/** The parts of the payload a view needs, already checked by the caller. */
export interface ViewSource {
  model: string;
  metadata?: Record<string, string | number | boolean | null>;
}

export function jobView(job: Job, status: JobStatus, source: ViewSource): JobView {
  const view: JobView = {
    id: job.id!,
    status,
    model: source.model,
    attempts: job.attemptsMade,
    createdAt: new Date(job.timestamp).toISOString(),
    finishedAt: status === 'completed' || status === 'failed' ? isoOrNull(job.finishedOn) : null,
    ...(source.metadata ? { metadata: source.metadata } : {}),
  };
  const waiting = waitingOf(job.progress);
  if (status === 'queued' && waiting) view.waiting = waiting;
  const waitingTier = tierOf(job.progress);
  if (status === 'queued' && waitingTier) view.tier = waitingTier;
  if (status === 'completed') {
    const parsed = promptJobResultSchema.safeParse(job.returnvalue);
    if (parsed.success) {
      view.result = resultView(parsed.data);
      if (parsed.data.tier !== undefined) view.tier = parsed.data.tier;
    } else {
      view.error = { code: 'INTERNAL', message: 'The job completed but its result could not be read.', retryable: false };
    }
  } else if (status === 'failed') {
    view.error = parseFailedReason(job.failedReason);
  }
  return view;
}

/**
 * The view of a job at the moment it ends, built from what ended it rather than read back from
 * BullMQ (which records the end a moment later): what webhooks and final events carry. It equals
 * what GET /v1/jobs/:id answers once BullMQ has recorded the end.
 */
export function endedJobView(end: {
  id: string;
  model: string;
  /** attemptsMade once this end is recorded (this attempt included). */
  attempts: number;
  createdAtMs: number;
  finishedAt: Date;
  metadata?: ViewSource['metadata'];
  outcome: 'completed' | 'failed' | 'cancelled';
  result?: PromptJobResult;
  error?: { code: ErrorCode; message: string };
}): JobView {
  const view: JobView = {
    id: end.id,
    status: end.outcome,
    model: end.model,
    attempts: end.attempts,
    createdAt: new Date(end.createdAtMs).toISOString(),
    finishedAt: end.finishedAt.toISOString(),
    ...(end.metadata ? { metadata: end.metadata } : {}),
  };
  if (end.outcome === 'completed' && end.result) view.result = resultView(end.result);
  if (end.outcome === 'completed' && end.result?.tier !== undefined) view.tier = end.result.tier;
  if (end.outcome === 'failed' && end.error) view.error = { ...end.error, retryable: ERROR_CATALOG[end.error.code].retryable };
  return view;
}

function resultView(result: PromptJobResult): NonNullable<JobView['result']> {
  const { text, finishReason, provider, model, cached, usage, costUsd, costNanoUsd, embedding } = result;
  return { text, finishReason, provider, model, cached, usage, costUsd, costNanoUsd, ...(embedding !== undefined ? { embedding } : {}) };
}

/** The worker's `{ waiting: { reason, until } }` progress note, if the job carries one. */
function waitingOf(progress: unknown): JobView['waiting'] {
  if (typeof progress !== 'object' || progress === null) return undefined;
  const waiting = (progress as { waiting?: unknown }).waiting;
  if (typeof waiting !== 'object' || waiting === null) return undefined;
  const { reason, until } = waiting as { reason?: unknown; until?: unknown };
  return typeof reason === 'string' && typeof until === 'string' ? { reason, until } : undefined;
}

/** The tier a queued job waits in (the worker's `{ tier }` progress note). */
function tierOf(progress: unknown): JobView['tier'] {
  if (typeof progress !== 'object' || progress === null) return undefined;
  const tier = (progress as { tier?: unknown }).tier;
  return tier === 'batch' || tier === 'flex' || tier === 'standard' ? tier : undefined;
}

function isoOrNull(epochMs: number | undefined): string | null {
  return epochMs ? new Date(epochMs).toISOString() : null;
}
