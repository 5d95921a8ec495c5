/**
 * Every Redis key prompt-queue writes outside BullMQ's own, built in one place. BullMQ's keys use
 * the same prefix (`<prefix>:<queue>:…`).
 */
export function blobKey(prefix: string, sha256: string): string {
  return `${prefix}:blob:${sha256}`;
}

/** Marker kept after a job is cancelled, so `GET /v1/jobs/:id` can say `cancelled`. */
export function cancelledJobKey(prefix: string, jobId: string): string {
  return `${prefix}:cancelled:${jobId}`;
}

/*
 * Accounting (usage aggregates and budgets). On Redis Cluster, give the prefix a hash tag (`{pq}`):
 * one budget script touches the keys of every tenant in a batch, so they must share a slot.
 * Periods are UTC: day `YYYY-MM-DD`, month `YYYY-MM`, hour `YYYY-MM-DDTHH`.
 */

/** Hash of one tenant's usage on one UTC day; fields `<model>|<metric>`. */
export function usageDayKey(prefix: string, day: string, tenant: string): string {
  return `${prefix}:usage:day:${day}:t:${tenant}`;
}

/** Hash of one tenant's usage in one UTC month; fields `<model>|<metric>`. */
export function usageMonthKey(prefix: string, month: string, tenant: string): string {
  return `${prefix}:usage:month:${month}:t:${tenant}`;
}

/** Fleet-wide hash of one UTC hour; fields `<tenant>|<model>|<metric>` (jobs, failures, cost). */
export function usageHourKey(prefix: string, hour: string): string {
  return `${prefix}:usage:hour:${hour}`;
}

/** Set of the tenants (or models) with usage in a day or month: the dashboard's index, no SCAN. */
export function usageIndexKey(prefix: string, scope: 'day' | 'month', period: string, of: 'tenants' | 'models'): string {
  return `${prefix}:usage:${scope}:${period}:${of}`;
}

/** A tenant's settled spend in a UTC day (`YYYY-MM-DD`) or month (`YYYY-MM`), integer nano-USD. */
export function budgetSpentKey(prefix: string, tenant: string, period: string): string {
  return `${prefix}:budget:${tenant}:spent:${period}`;
}

/** A tenant's nano-USD held by open budget reservations. */
export function budgetReservedKey(prefix: string, tenant: string): string {
  return `${prefix}:budget:${tenant}:reserved`;
}

/** Sorted set of a tenant's open reservations (`<id>:<nanoUsd>`), scored by expiry (epoch ms). */
export function budgetReservationsKey(prefix: string, tenant: string): string {
  return `${prefix}:budget:${tenant}:reservations`;
}

/**
 * The parts of one fleet-wide rate-limit scope (packages/shared/src/limits), and the token
 * calibration of that scope (`calib`, packages/shared/src/estimate): the provider's tokenizer is
 * per link and model, exactly the limiter's scope.
 */
export type LimiterKeyPart = 'log' | 'est' | 'total' | 'pause' | 'learned' | 'probe' | 'open' | 'calib';

/**
 * Keys of the fleet-wide limiter, one set per quota scope (provider + model + project), e.g.
 * `<prefix>:limits:{gemini:gemini-3.6-flash:default}:log`. All parts of a scope share the hash tag
 * `{provider:model:project}` so that one Lua script may touch them all on Redis Cluster.
 */
export function limiterKey(
  prefix: string,
  scope: { provider: string; model: string; project?: string },
  part: LimiterKeyPart,
): string {
  return `${prefix}:limits:{${scope.provider}:${scope.model}:${scope.project ?? 'default'}}:${part}`;
}

/**
 * Fairness: how many of a tenant's jobs of one priority level are enqueued and not yet finished
 * (a plain integer string; see queue/fairness.ts). Expires when the tenant is idle at that level.
 */
export function fairBacklogKey(prefix: string, tenant: string, level: 'high' | 'normal' | 'low'): string {
  return `${prefix}:fair:${tenant}:${level}`;
}

/**
 * Shared response cache (apps/worker/src/cache): one string per request digest (sha256 hex of the
 * canonical request), a JSON `CachedAnswer` with a TTL. A batch is read with one MGET, so on Redis
 * Cluster give the prefix a hash tag (`{pq}`) to keep every entry in one slot.
 */
export function responseCacheKey(prefix: string, digest: string): string {
  return `${prefix}:rcache:${digest}`;
}

/**
 * Hash of the latest published circuit-breaker state per provider link (field = link name, value =
 * JSON `{ state, since, retryAt?, updatedAt, workerId }`): written by workers, read by the dashboard.
 */
export function breakerStatesKey(prefix: string): string {
  return `${prefix}:breakers`;
}

/**
 * Hash of the chain links the workers serve (field = link id, value = JSON `PublishedLink`: provider,
 * model, limiter scope, credential fingerprints), refreshed with an expiry: read by the dashboard.
 */
export function publishedLinksKey(prefix: string): string {
  return `${prefix}:links`;
}

/**
 * Recent output + thinking token counts of one model's calls whose output bound falls in one
 * power-of-two class (a list, newest first): the budget's output estimate (estimate/output-estimate.ts).
 */
export function outputSamplesKey(prefix: string, model: string, boundClass: number): string {
  return `${prefix}:outest:${model}:${boundClass}`;
}

/**
 * Fleet history for the dashboard's charts, one key each so that one command (or script) reads or
 * writes it whole on Redis Cluster too:
 * - `depth`: sorted set of queue-depth samples, one per 10 s bucket (score = bucket start, epoch ms);
 * - `latency`: sorted set of recent provider-call latencies (score = when the call ended, epoch ms).
 * See metrics/history.ts.
 */
export function historyKey(prefix: string, series: 'depth' | 'latency'): string {
  return `${prefix}:history:${series}`;
}

/**
 * A tenant's live job events (events/job-events.ts): a Redis Stream trimmed to
 * `events.historyPerTenant` entries. The tenant is the hash tag, so each stream sits in one slot on
 * Redis Cluster (a prefix with its own tag, `{pq}`, puts them all in one slot, which the producer's
 * single XREAD over every watched stream then needs).
 */
export function jobEventsKey(prefix: string, tenant: string): string {
  return `${prefix}:events:{${tenant}}`;
}

/**
 * Webhooks (webhooks/): a job's own webhook secret, by the random reference its payload carries
 * (never the secret itself), kept for the result TTL; and the last delivery errors of a tenant (a
 * capped list, newest first) with the set of tenants that have any (the dashboard's index, no SCAN).
 */
export function webhookSecretKey(prefix: string, ref: string): string {
  return `${prefix}:whsecret:${ref}`;
}

export function webhookErrorsKey(prefix: string, tenant: string): string {
  return `${prefix}:wherrors:t:${tenant}`;
}

export function webhookErrorTenantsKey(prefix: string): string {
  return `${prefix}:wherrors:tenants`;
}
