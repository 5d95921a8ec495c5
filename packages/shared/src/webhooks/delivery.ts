import type { JobsOptions } from 'bullmq';
import { z } from 'zod';
import type { Config } from '../config/schema.js';
import { jobViewSchema, type JobView } from '../queue/job-view.js';

/**
 * The payload of a job in the `webhooks` queue (QueueName.Webhooks): one delivery of one event.
 * Persisted data like prompt jobs: add optional fields only. The event is fixed at enqueue, so every
 * attempt sends the same body (only the signature's timestamp changes); the secret is never here,
 * only the job's `secretRef` or, without one, the tenant's configured secrets.
 */
export const webhookEventTypeSchema = z.enum(['job.completed', 'job.failed', 'job.cancelled']);

/**
 * The request body of a delivery. `data` is the job's view, exactly GET /v1/jobs/:id's body. The
 * type is inferred from the schema, which is also the `webhooks` section of the OpenAPI document.
 */
export const webhookEventSchema = z.object({
  /** `${jobId}.${type}`: the same for every attempt, so receivers deduplicate on it. */
  id: z.string().describe('`<jobId>.<type>`: the same for every attempt, so receivers deduplicate on it.'),
  type: webhookEventTypeSchema,
  /** When the job's end was recorded, ISO 8601. */
  createdAt: z.iso.datetime().describe("When the job's end was recorded."),
  data: jobViewSchema,
}).meta({ id: 'WebhookEvent' });
export type WebhookEvent = z.infer<typeof webhookEventSchema>;

export const webhookDeliverySchema = z.object({
  v: z.literal(1),
  tenant: z.string().min(1),
  jobId: z.string().min(1),
  url: z.string().min(1),
  /** The job's own secret (secrets.ts); absent: the tenant's `webhook.secrets`. */
  secretRef: z.string().optional(),
  event: z.object({
    id: z.string().min(1),
    type: webhookEventTypeSchema,
    createdAt: z.string(),
    data: z.custom<JobView>((value) => typeof value === 'object' && value !== null && typeof (value as { id?: unknown }).id === 'string'),
  }),
});
export type WebhookDelivery = z.infer<typeof webhookDeliverySchema>;

/** Name of the delivery worker's backoff strategy (apps/worker/src/webhooks/backoff.ts). */
export const WEBHOOK_BACKOFF = 'webhook';

/** How long dead-lettered deliveries stay in the failed set for ops to retry them, s. */
export const WEBHOOK_DEAD_LETTER_TTL_SECONDS = 30 * 86_400;

/**
 * BullMQ options of a delivery. The event id is the job id, so recording the same end twice adds
 * one delivery; a delivered event is kept for the result TTL to keep that true. Dead letters stay
 * in the failed set (bull-board shows and retries them) for 30 days.
 */
export function webhookDeliveryOptions(config: Config, eventId: string): JobsOptions {
  return {
    jobId: eventId,
    attempts: config.webhooks.attempts,
    backoff: { type: WEBHOOK_BACKOFF },
    removeOnComplete: { age: config.producer.resultTtlSeconds },
    removeOnFail: { age: WEBHOOK_DEAD_LETTER_TTL_SECONDS },
  };
}

/**
 * Upper bound of a delivery's remaining retry schedule from attempt `attemptsMade` on, s: how long a
 * job's secret must still live. Without jitter (the longest case), plus an hour of slack.
 */
export function remainingDeliverySeconds(config: Config, attemptsMade: number): number {
  const { attempts, backoffBaseMs, backoffMaxMs } = config.webhooks;
  let totalMs = 3_600_000;
  for (let made = Math.max(1, attemptsMade); made < attempts; made += 1) totalMs += Math.min(backoffMaxMs, backoffBaseMs * 2 ** (made - 1));
  return Math.ceil(totalMs / 1000);
}
