import { UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  displayWebhookUrl,
  EVENT_ID_HEADER,
  formatFailedReason,
  QueueName,
  readWebhookSecret,
  recordWebhookDeliveryError,
  remainingDeliverySeconds,
  SIGNATURE_HEADER,
  signatureHeader,
  webhookDeliverySchema,
  WebhookUrlGuard,
  webhookUrlRefusalOf,
  type Config,
  type ErrorCode,
  type Logger,
  type WebhookDelivery,
  type WebhookResolver,
} from '@prompt-queue/shared';
import { webhookBackoffStrategy } from './backoff.js';
import { postWebhook } from './post.js';

/**
 * The delivery worker of the `webhooks` queue: one signed POST per attempt, retried with backoff
 * over about a day, at least once (receivers deduplicate on the event id). A delivery that cannot
 * succeed (its URL now reaches a refused address, its secret is gone) fails at once; one that used
 * every attempt stays in the failed set: the dead letters, shown and retryable in bull-board. Every
 * failed attempt is kept in its tenant's recent errors for the dashboard.
 */

export const WEBHOOK_USER_AGENT = 'prompt-queue-webhooks/1';

export interface WebhookWorkerDeps {
  config: Config;
  /** A `worker` connection (BullMQ blocks on a duplicate of it). */
  connection: Redis;
  logger: Logger;
  /** @defaultValue the system resolver (tests point names anywhere) */
  resolve?: WebhookResolver;
}

export interface WebhookWorker {
  worker: Worker<WebhookDelivery>;
  /** Lets deliveries in flight finish (each bounded by `webhooks.timeoutMs`). Idempotent. */
  close(): Promise<void>;
}

/** A failed attempt, classified once: its code, and whether another attempt could succeed. */
class DeliveryFailure extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly final: boolean,
  ) {
    super(message);
  }
}

export function createWebhookWorker({ config, connection, logger, resolve }: WebhookWorkerDeps): WebhookWorker {
  const prefix = config.redis.prefix;
  const guard = new WebhookUrlGuard({ allowPrivate: config.webhooks.allowPrivate, ...(resolve ? { resolve } : {}) });

  /** The job's own secret, kept alive for the remaining retries; else the tenant's. */
  async function secretsOf(delivery: WebhookDelivery, attemptsMade: number): Promise<string[]> {
    if (delivery.secretRef !== undefined) {
      const secret = await readWebhookSecret(connection, prefix, delivery.secretRef, remainingDeliverySeconds(config, attemptsMade));
      if (secret === undefined) throw new DeliveryFailure('WEBHOOK_SECRET_MISSING', "The job's webhook secret expired (producer.resultTtlSeconds) before its delivery.", true);
      return [secret];
    }
    const secrets = config.tenants[delivery.tenant]?.webhook?.secrets ?? [];
    if (secrets.length === 0) throw new DeliveryFailure('WEBHOOK_SECRET_MISSING', `Tenant ${delivery.tenant} has no webhook secret configured.`, true);
    return secrets;
  }

  async function deliver(delivery: WebhookDelivery, attempt: number): Promise<{ status: number }> {
    const secrets = await secretsOf(delivery, attempt - 1);
    let target;
    try {
      target = await guard.check(delivery.url);
    } catch (error) {
      const refusal = webhookUrlRefusalOf(error);
      if (refusal === undefined) throw error;
      // A name that does not resolve now may again later; an address that is refused stays refused.
      throw refusal === 'refused'
        ? new DeliveryFailure('WEBHOOK_URL_NOT_ALLOWED', (error as Error).message, true)
        : new DeliveryFailure('WEBHOOK_DELIVERY_FAILED', (error as Error).message, false);
    }
    const body = JSON.stringify(delivery.event);
    const headers = {
      'content-type': 'application/json',
      'user-agent': WEBHOOK_USER_AGENT,
      [SIGNATURE_HEADER]: signatureHeader(body, secrets, Math.floor(Date.now() / 1000)),
      [EVENT_ID_HEADER]: delivery.event.id,
      'PromptQueue-Delivery-Attempt': String(attempt),
    };
    let answer;
    try {
      answer = await postWebhook(target, body, headers, config.webhooks);
    } catch (error) {
      throw new DeliveryFailure('WEBHOOK_DELIVERY_FAILED', `${displayWebhookUrl(delivery.url)}: ${(error as Error).message}`, false);
    }
    if (answer.status >= 200 && answer.status < 300) return { status: answer.status };
    const redirect = answer.status >= 300 && answer.status < 400 ? ` (a redirect${answer.location ? ` to ${displayWebhookUrl(answer.location)}` : ''}; redirects are not followed)` : '';
    throw new DeliveryFailure('WEBHOOK_DELIVERY_FAILED', `${displayWebhookUrl(delivery.url)} answered ${answer.status}${redirect}.`, false);
  }

  async function processDelivery(job: Job<WebhookDelivery>): Promise<{ status: number; attempt: number }> {
    const parsed = webhookDeliverySchema.safeParse(job.data);
    if (!parsed.success) throw new UnrecoverableError(formatFailedReason('INVALID_JOB', `Unreadable webhook delivery: ${parsed.error.issues[0]?.message ?? ''}`));
    const delivery = parsed.data;
    const attempt = job.attemptsMade + 1;
    try {
      return { ...(await deliver(delivery, attempt)), attempt };
    } catch (error) {
      const failure = error instanceof DeliveryFailure ? error : new DeliveryFailure('WEBHOOK_DELIVERY_FAILED', (error as Error).message, false);
      const deadLettered = failure.final || attempt >= (job.opts.attempts ?? 1);
      const entry = {
        at: Date.now(),
        eventId: delivery.event.id,
        jobId: delivery.jobId,
        url: displayWebhookUrl(delivery.url),
        attempt,
        code: failure.code,
        message: failure.message,
        deadLettered,
      };
      await recordWebhookDeliveryError(connection, prefix, delivery.tenant, entry, config.webhooks.errorsPerTenant).catch((recordError: unknown) =>
        logger.warn('could not record a webhook delivery error', { error: String(recordError) }),
      );
      logger[deadLettered ? 'warn' : 'info'](deadLettered ? 'webhook delivery dead-lettered' : 'webhook delivery attempt failed', { tenant: delivery.tenant, ...entry });
      const reason = formatFailedReason(failure.code, failure.message);
      throw failure.final ? new UnrecoverableError(reason) : new Error(reason);
    }
  }

  const worker = new Worker<WebhookDelivery>(QueueName.Webhooks, processDelivery, {
    connection,
    prefix,
    concurrency: config.webhooks.concurrency,
    // A delivery whose worker died goes back to the queue rather than to the dead letters.
    maxStalledCount: config.worker.maxStalledCount,
    settings: { backoffStrategy: webhookBackoffStrategy(config.webhooks) },
  });
  worker.on('error', (error) => logger.warn('webhook worker error', { error: error.message }));
  let closing: Promise<void> | undefined;
  return { worker, close: () => (closing ??= worker.close()) };
}
