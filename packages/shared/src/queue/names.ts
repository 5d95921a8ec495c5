/**
 * Queue names. WARNING: jobs already in Redis live under these names; renaming one strands them.
 * Add a new queue (and drain the old one) instead.
 */
export const QueueName = {
  /** Generation jobs (and, later, embedding jobs) for every provider and model. */
  Prompts: 'prompts',
  /** Webhook deliveries, one job per job end (webhooks/outbox.ts); failed = dead-lettered. */
  Webhooks: 'webhooks',
} as const;

export type QueueName = (typeof QueueName)[keyof typeof QueueName];
