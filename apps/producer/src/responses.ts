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
