import type { Redis } from 'ioredis';
import type { ErrorCode } from '../errors.js';
import { webhookErrorTenantsKey, webhookErrorsKey } from '../redis/keys.js';
import { slotPipeline } from '../redis/cluster.js';

/**
 * The last delivery errors of each tenant, for the dashboard: a capped list per tenant (newest
 * first) and a set of the tenants that have one, so reading needs no SCAN. Entries carry no secret,
 * no response body, and the URL without its query string (which may hold a token).
 */
export interface WebhookDeliveryError {
  /** Epoch ms of the failed attempt. */
  at: number;
  eventId: string;
  jobId: string;
  /** `https://host/path`, no query string. */
  url: string;
  /** 1 for the first attempt. */
  attempt: number;
  code: ErrorCode;
  message: string;
  /** The delivery used its last attempt (or cannot succeed) and is now in the failed set. */
  deadLettered: boolean;
}

/** A tenant's list lives this long after its last error, s. */
const ERRORS_TTL_SECONDS = 7 * 86_400;

export async function recordWebhookDeliveryError(redis: Redis, prefix: string, tenant: string, entry: WebhookDeliveryError, keep: number): Promise<void> {
  const key = webhookErrorsKey(prefix, tenant);
  // The tenant's list and the fleet's index are in different Cluster slots: one MULTI each.
  await slotPipeline(redis, { transaction: true })
    .lpush(key, JSON.stringify(entry))
    .ltrim(key, 0, keep - 1)
    .expire(key, ERRORS_TTL_SECONDS)
    .sadd(webhookErrorTenantsKey(prefix), tenant)
    .exec();
}

/** Tenants with errors (sorted, at most `maxTenants`) and their newest `perTenant` errors: two round trips. */
export async function readWebhookDeliveryErrors(
  redis: Redis,
  prefix: string,
  { maxTenants = 50, perTenant = 5 }: { maxTenants?: number; perTenant?: number } = {},
): Promise<{ tenant: string; errors: WebhookDeliveryError[] }[]> {
  const tenants = (await redis.smembers(webhookErrorTenantsKey(prefix))).sort().slice(0, maxTenants);
  if (tenants.length === 0) return [];
  const pipeline = slotPipeline(redis);
  for (const tenant of tenants) pipeline.lrange(webhookErrorsKey(prefix, tenant), 0, perTenant - 1);
  const results = (await pipeline.exec()) ?? [];
  return tenants.flatMap((tenant, i) => {
    const [error, raw] = results[i] ?? [null, []];
    if (error) throw error;
    const errors = (raw as string[]).flatMap((line) => {
      try {
        return [JSON.parse(line) as WebhookDeliveryError];
      } catch {
        return [];
      }
    });
    return errors.length > 0 ? [{ tenant, errors }] : [];
  });
}
