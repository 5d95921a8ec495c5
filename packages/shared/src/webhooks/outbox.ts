import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Config } from '../config/schema.js';
import { QueueName } from '../queue/names.js';
import type { JobView } from '../queue/job-view.js';
import type { PromptJobData } from '../queue/payloads.js';
import { webhookDeliveryOptions, type WebhookDelivery } from './delivery.js';

/**
 * Where a job's end becomes webhook deliveries: the job-end recorder calls `enqueue` once per end,
 * and the delivery worker (apps/worker/src/webhooks) sends them, signed, with retries over about a
 * day. The event id `${jobId}.${type}` is the delivery's BullMQ job id: recording the same end twice
 * (a retried recorder, a stalled job) adds it once.
 */

export type WebhookEventType = 'job.completed' | 'job.failed' | 'job.cancelled';

export interface WebhookEnd {
  tenant: string;
  jobId: string;
  type: WebhookEventType;
  /** Exactly GET /v1/jobs/:id's body for the ended job. */
  view: JobView;
  /** The job's own field as stored, or undefined. */
  webhook?: PromptJobData['webhook'];
}

export function webhookEventId(jobId: string, type: WebhookEventType): string {
  return `${jobId}.${type}`;
}

/** The delivery of one end: the job's own webhook, else its tenant's default, else none. */
export function webhookDeliveryOf(end: WebhookEnd, config: Config, now: Date): WebhookDelivery | undefined {
  const url = end.webhook?.url ?? config.tenants[end.tenant]?.webhook?.url;
  if (url === undefined) return undefined;
  return {
    v: 1,
    tenant: end.tenant,
    jobId: end.jobId,
    url,
    ...(end.webhook?.secretRef !== undefined ? { secretRef: end.webhook.secretRef } : {}),
    event: { id: webhookEventId(end.jobId, end.type), type: end.type, createdAt: now.toISOString(), data: end.view },
  };
}

export class WebhookOutbox {
  private readonly queue: Queue<WebhookDelivery>;

  constructor(
    connection: Redis,
    private readonly config: Config,
  ) {
    this.queue = new Queue<WebhookDelivery>(QueueName.Webhooks, { connection, prefix: config.redis.prefix });
  }

  /**
   * Adds one delivery per end that has a webhook (the job's own, else its tenant's default); ends
   * without one are skipped. Deterministic event id `${jobId}.${type}` used as the BullMQ job id,
   * so recording the same end twice delivers once. One round trip (addBulk).
   */
  async enqueue(ends: readonly WebhookEnd[]): Promise<void> {
    const now = new Date();
    const jobs = ends.flatMap((end) => {
      const delivery = webhookDeliveryOf(end, this.config, now);
      return delivery ? [{ name: end.type, data: delivery, opts: webhookDeliveryOptions(this.config, delivery.event.id) }] : [];
    });
    if (jobs.length > 0) await this.queue.addBulk(jobs);
  }

  close(): Promise<void> {
    return this.queue.close();
  }
}
