import { z } from 'zod';
import { errorCodeSchema, jobStatusSchema, type ErrorCode } from '@prompt-queue/shared';

/**
 * The producer's own response shapes, as schemas (`.meta({ id })` names them in the OpenAPI document): the TypeScript types the routes answer with are
 * inferred from them, and the OpenAPI document (openapi/document.ts) is generated from them. The
 * job view, live events and webhook bodies are shared with the worker and live in
 * `@prompt-queue/shared` (jobViewSchema, jobEventSchema, webhookEventSchema).
 */

/** One problem with a request (requests.ts `Issue`). */
export const issueSchema = z.object({
  path: z.string().describe('Where in the request: `jobs[3].images[0].data`, `Idempotency-Key`, `wait`; empty for the whole body.'),
  message: z.string(),
  code: errorCodeSchema.optional().describe('Set when the problem is not plain validation (e.g. `UNSUPPORTED_MEDIA_TYPE` inside a bulk item).'),
}).meta({ id: 'Issue' });

/**
 * Every error answer: `{ error: { code, message, details? } }` (http-errors.ts `sendError`).
 * `codes` narrows `code` to what one route answers with one status.
 */
export function errorBodySchema(codes: readonly [ErrorCode, ...ErrorCode[]] = errorCodeSchema.options as [ErrorCode, ...ErrorCode[]]) {
  return z.object({
    error: z.object({
      code: z.enum(codes),
      message: z.string(),
      details: z.array(issueSchema).min(1).optional(),
    }),
  });
}

/** `POST /v1/jobs` (and each item of the bulk answer): the job's id and current status. */
export const acceptedSchema = z.object({
  id: z.string().describe('The job id; deterministic for an idempotency key, so a retry gets the same job.'),
  status: jobStatusSchema.describe('`queued` for a new job; an idempotent replay reports the current status.'),
}).meta({ id: 'Accepted' });
export type Accepted = z.infer<typeof acceptedSchema>;

export const bulkAcceptedSchema = z.object({
  jobs: z.array(acceptedSchema).describe('One entry per requested job, in request order.'),
}).meta({ id: 'BulkAccepted' });

/** One period's usage as `GET /v1/usage` shows it. Costs in USD are derived from integer nano-USD sums. */
export const usageViewSchema = z.object({
  jobs: z.number().int().nonnegative(),
  failures: z.number().int().nonnegative(),
  inputTokens: z.number().int().nonnegative(),
  outputTokens: z.number().int().nonnegative(),
  thoughtsTokens: z.number().int().nonnegative(),
  cachedTokens: z.number().int().nonnegative(),
  costUsd: z.number(),
  costNanoUsd: z.number().int(),
  cacheHits: z.number().int().nonnegative(),
  savedUsd: z.number(),
  savedNanoUsd: z.number().int(),
  /** Jobs of models without a price: their cost counts as 0. */
  unpricedJobs: z.number().int().nonnegative().describe('Jobs of models without a price: their cost counts as 0.'),
}).meta({ id: 'UsageView' });
export type UsageView = z.infer<typeof usageViewSchema>;

export const budgetViewSchema = z.object({
  limitUsd: z.number(),
  spentUsd: z.number(),
  reservedUsd: z.number(),
  remainingUsd: z.number(),
  /** ISO time the period ends (UTC midnight, or the first of next month). */
  resetsAt: z.iso.datetime().describe('When the period ends (UTC midnight, or the first of next month).'),
}).meta({ id: 'BudgetView' });
export type BudgetView = z.infer<typeof budgetViewSchema>;

const periodUsageSchema = usageViewSchema.extend({ byModel: z.record(z.string(), usageViewSchema) });

export const usageResponseSchema = z.object({
  tenant: z.string(),
  /** UTC day, `YYYY-MM-DD`. */
  day: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).describe('UTC day, `YYYY-MM-DD`.'),
  /** UTC month, `YYYY-MM`. */
  month: z.string().regex(/^\d{4}-\d{2}$/).describe('UTC month, `YYYY-MM`.'),
  today: periodUsageSchema,
  thisMonth: periodUsageSchema,
  /** `null` when the tenant has no budget. */
  budget: z
    .object({ daily: budgetViewSchema.optional(), monthly: budgetViewSchema.optional() })
    .nullable()
    .describe('`null` when the tenant has no budget.'),
}).meta({ id: 'Usage' });
export type UsageResponse = z.infer<typeof usageResponseSchema>;

export const livenessSchema = z.object({ status: z.literal('ok') });
export const readinessSchema = z.object({ status: z.literal('ready') });

const pauseReason = z.enum(['rate-limited', 'daily-quota']);

/** `GET /scaling` (scaling/read.ts): what KEDA's metrics-api scaler reads. */
export const scalingResponseSchema = z
  .object({
    queue: z.string(),
    at: z.number().int().describe('Redis server time of the count, ms since the epoch.'),
    backlog: z.number().int().describe('Jobs a worker could start now: waiting + prioritized + delayed and due.'),
    jobs: z.object({
      waiting: z.number().int(),
      prioritized: z.number().int(),
      delayedDue: z.number().int(),
      delayedLater: z.number().int().describe('Delayed until later (retries, quota and budget waits): not backlog yet.'),
      active: z.number().int(),
    }),
    concurrency: z.number().int().describe('WORKER_CONCURRENCY the count assumes.'),
    backlogWorkers: z.number().int().describe('Workers the backlog and the jobs in flight would fill.'),
    quotaWorkers: z.number().int().nullable().describe('Workers the quota can feed (null: no limit known).'),
    recommendedWorkers: z.number().int().describe('What to scale to: the smaller of the two.'),
    capped: z.boolean().describe('The quota capped the recommendation.'),
    saturated: z.boolean().describe('Some quota scope is full now: more workers would only wait.'),
    scopes: z.array(
      z.object({
        scope: z.string(),
        rpmLimit: z.number(),
        tpmLimit: z.number(),
        requests: z.number(),
        tokens: z.number(),
        tokensPerRequest: z.number(),
        latencyMs: z.number(),
        latencySource: z.enum(['observed', 'configured']),
        observedP50Ms: z.number().nullable(),
        requestsPerMinute: z.number().nullable(),
        callsInFlight: z.number().nullable(),
        saturated: z.boolean(),
        pausedUntil: z.number().nullable(),
        pauseReason: pauseReason.optional(),
      }),
    ),
  })
  .meta({ id: 'Scaling' });
export type ScalingResponse = z.infer<typeof scalingResponseSchema>;
