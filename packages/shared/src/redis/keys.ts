/**
 * Every Redis key prompt-queue writes outside BullMQ's own, built in one place.
 *
 * Redis Cluster layout (docs/decisions/redis-cluster.md). `redis.prefix` is BullMQ's prefix and is
 * always hash-tagged (`REDIS_PREFIX=pq` is read as `{pq}`): every BullMQ key of every queue sits in
 * the slot of `pq` (`{pq}:prompts:wait`…), as BullMQ's scripts need. Our own keys use the name
 * inside the tag, untagged (`pq:…`), plus a tag of their own where one command or script touches
 * several keys together: `{<tenant>}` (budgets, usage, fairness, events), the limiter scope
 * `{provider:model:project}`, the cache digest `{<sha256>}`. Every other key is used alone and
 * spreads over slots by its whole name. The builders accept either spelling of the prefix.
 */

/** The name inside the prefix's hash tag: `{pq}` → `pq` (a prefix without a tag is returned as is). */
export function ownPrefix(prefix: string): string {
  return prefix.startsWith('{') && prefix.endsWith('}') ? prefix.slice(1, -1) : prefix;
}

/** BullMQ's prefix: the name in a hash tag (`pq` → `{pq}`), so a queue's keys share one slot. */
export function queuePrefix(prefix: string): string {
  return `{${ownPrefix(prefix)}}`;
}

export function blobKey(prefix: string, sha256: string): string {
  return `${ownPrefix(prefix)}:blob:${sha256}`;
}

/** Marker kept after a job is cancelled, so `GET /v1/jobs/:id` can say `cancelled`. */
export function cancelledJobKey(prefix: string, jobId: string): string {
  return `${ownPrefix(prefix)}:cancelled:${jobId}`;
}

/*
 * Accounting (usage aggregates and budgets). A tenant's keys share the hash tag `{<tenant>}`: one
 * budget script or usage MULTI covers one tenant (a batch of several tenants makes one per tenant,
 * pipelined). Periods are UTC: day `YYYY-MM-DD`, month `YYYY-MM`, hour `YYYY-MM-DDTHH`.
 */

/** Hash of one tenant's usage on one UTC day; fields `<model>|<metric>`. */
export function usageDayKey(prefix: string, day: string, tenant: string): string {
  return `${ownPrefix(prefix)}:usage:day:${day}:t:{${tenant}}`;
}

/** Hash of one tenant's usage in one UTC month; fields `<model>|<metric>`. */
export function usageMonthKey(prefix: string, month: string, tenant: string): string {
  return `${ownPrefix(prefix)}:usage:month:${month}:t:{${tenant}}`;
}

/** Fleet-wide hash of one UTC hour; fields `<tenant>|<model>|<metric>` (jobs, failures, cost). */
export function usageHourKey(prefix: string, hour: string): string {
  return `${ownPrefix(prefix)}:usage:hour:${hour}`;
}

/** Set of the tenants (or models) with usage in a day or month: the dashboard's index, no SCAN. */
export function usageIndexKey(prefix: string, scope: 'day' | 'month', period: string, of: 'tenants' | 'models'): string {
  return `${ownPrefix(prefix)}:usage:${scope}:${period}:${of}`;
}

/** A tenant's settled spend in a UTC day (`YYYY-MM-DD`) or month (`YYYY-MM`), integer nano-USD. */
export function budgetSpentKey(prefix: string, tenant: string, period: string): string {
  return `${ownPrefix(prefix)}:budget:{${tenant}}:spent:${period}`;
}

/** A tenant's nano-USD held by open budget reservations. */
export function budgetReservedKey(prefix: string, tenant: string): string {
  return `${ownPrefix(prefix)}:budget:{${tenant}}:reserved`;
}

/** Sorted set of a tenant's open reservations (`<id>:<nanoUsd>`), scored by expiry (epoch ms). */
export function budgetReservationsKey(prefix: string, tenant: string): string {
  return `${ownPrefix(prefix)}:budget:{${tenant}}:reservations`;
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
  return `${ownPrefix(prefix)}:limits:{${scope.provider}:${scope.model}:${scope.project ?? 'default'}}:${part}`;
}

/**
 * Fairness: how many of a tenant's jobs of one priority level are enqueued and not yet finished
 * (a plain integer string; see queue/fairness.ts). Expires when the tenant is idle at that level.
 * The three levels of a tenant share its tag: one script reads and takes places on all three.
 */
export function fairBacklogKey(prefix: string, tenant: string, level: 'high' | 'normal' | 'low'): string {
  return `${ownPrefix(prefix)}:fair:{${tenant}}:${level}`;
}

/**
 * Shared response cache (apps/worker/src/cache): one string per request digest (sha256 hex of the
 * canonical request), a JSON `CachedAnswer` with a TTL. The digest is the hash tag, so entries
 * spread over the slots and an entry and its in-flight claim (`…:pending`) share one. A batch is
 * read with one MGET on a single Redis, with GETs pipelined per slot on a Cluster.
 */
export function responseCacheKey(prefix: string, digest: string): string {
  return `${ownPrefix(prefix)}:rcache:{${digest}}`;
}

/**
 * Hash of the latest published circuit-breaker state per provider link (field = link name, value =
 * JSON `{ state, since, retryAt?, updatedAt, workerId }`): written by workers, read by the dashboard.
 */
export function breakerStatesKey(prefix: string): string {
  return `${ownPrefix(prefix)}:breakers`;
}

/**
 * One link's fleet-wide circuit breaker (apps/worker/src/providers/fleet-breaker.ts), tagged by the
 * link id so that one script touches all its parts in one slot: `state` (hash: `state`, `gen`,
 * `openedAt`, `retryAt`, `updatedAt`, `workerId`), `votes` (hash: worker id → its rolling window
 * `failures:calls:at`), `trial` (the half-open trial lease, SET NX PX).
 */
export function breakerFleetKey(prefix: string, link: string, part: 'state' | 'votes' | 'trial'): string {
  return `${breakerStatesKey(prefix)}:{${link}}:${part}`;
}

/** Pub/sub channel of fleet-wide breaker transitions, every link (a message is JSON with its `link`). */
export function breakerChannel(prefix: string): string {
  return `${breakerStatesKey(prefix)}:events`;
}

/**
 * Hash of the chain links the workers serve (field = link id, value = JSON `PublishedLink`: provider,
 * model, limiter scope, credential fingerprints), refreshed with an expiry: read by the dashboard.
 */
export function publishedLinksKey(prefix: string): string {
  return `${ownPrefix(prefix)}:links`;
}

/**
 * Recent output + thinking token counts of one model's calls whose output bound falls in one
 * power-of-two class (a list, newest first): the budget's output estimate (estimate/output-estimate.ts).
 */
export function outputSamplesKey(prefix: string, model: string, boundClass: number): string {
  return `${ownPrefix(prefix)}:outest:${model}:${boundClass}`;
}

/**
 * Fleet history for the dashboard's charts, one key each so that one command (or script) reads or
 * writes it whole on Redis Cluster too:
 * - `depth`: sorted set of queue-depth samples, one per 10 s bucket (score = bucket start, epoch ms);
 * - `latency`: sorted set of recent provider-call latencies (score = when the call ended, epoch ms).
 * See metrics/history.ts.
 */
export function historyKey(prefix: string, series: 'depth' | 'latency'): string {
  return `${ownPrefix(prefix)}:history:${series}`;
}

/**
 * A tenant's live job events (events/job-events.ts): a Redis Stream trimmed to
 * `events.historyPerTenant` entries. The tenant is the hash tag, like its other keys: on a Cluster
 * an XREAD over several tenants' streams is split per slot (`readJobEvents`).
 */
export function jobEventsKey(prefix: string, tenant: string): string {
  return `${ownPrefix(prefix)}:events:{${tenant}}`;
}

/**
 * Webhooks (webhooks/): a job's own webhook secret, by the random reference its payload carries
 * (never the secret itself), kept for the result TTL; and the last delivery errors of a tenant (a
 * capped list, newest first) with the set of tenants that have any (the dashboard's index, no SCAN).
 */
export function webhookSecretKey(prefix: string, ref: string): string {
  return `${ownPrefix(prefix)}:whsecret:${ref}`;
}

export function webhookErrorsKey(prefix: string, tenant: string): string {
  return `${ownPrefix(prefix)}:wherrors:t:${tenant}`;
}

export function webhookErrorTenantsKey(prefix: string): string {
  return `${ownPrefix(prefix)}:wherrors:tenants`;
}
