import { createHash } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import { fairBacklogKey } from '../redis/keys.js';
import type { PriorityLevel } from './payloads.js';
import { slotPipeline } from '../redis/cluster.js';

/**
 * Fairness between tenants with plain BullMQ priorities (BullMQ's groups are a paid feature).
 *
 * Redis keeps, per tenant and priority level, a backlog counter: jobs enqueued and not finished.
 * A job's BullMQ priority is its place in its own tenant's line, so tenants interleave: a tenant
 * that enqueued 2,000 jobs holds priorities up to ~6,000, and another tenant's 10 new jobs get
 * 2..29 and run next. Within a tenant, a job's place counts the backlog of its own level and of
 * every higher level, so high runs before normal before low:
 *
 *   place(job)    = Σ backlog(tenant, levels ≤ job's) before the request  + jobs of the request ahead of it
 *   priority(job) = min(1 + levelIndex + 3 × place, 2^21 − 1)            levelIndex: high 0, normal 1, low 2
 *
 * Only the levels tie-break across tenants (places are equal): at equal places high goes first.
 *
 * Bookkeeping: the producer increments at enqueue (`assignFairPriorities`, one round trip per
 * request, bulk included); the worker decrements when a job finishes for good, completed or failed
 * after its last attempt (`appendBacklogDone`, inside its per-batch settle pipeline); a cancel
 * decrements too (`releaseBacklog`). Retries and rate-limit requeues keep their place.
 *
 * Drift (a worker dies between finishing a job and decrementing; jobs removed behind the API's
 * back) only costs that tenant: its new jobs queue a little further back than they should. It is
 * bounded two ways: counters never go below 0 (a Lua guard), and every counter expires after
 * `backlogTtlMs` without an increment or decrement at that level, so an idle tenant starts from 0
 * again. An expired counter while old jobs still wait only means the tenant's next jobs interleave
 * with its own old ones (and, after an idle hour, it has waited long enough to deserve that).
 * See docs/decisions/fairness.md.
 */

/** BullMQ's largest priority (`PRIORITY_LIMIT`); larger values are refused. */
export const MAX_BULLMQ_PRIORITY = 2 ** 21 - 1;

/** Priority levels from most to least urgent; the index is the level's tie-break. */
export const FAIRNESS_LEVELS = ['high', 'normal', 'low'] as const satisfies readonly PriorityLevel[];

/**
 * How long a backlog counter lives without an increment or decrement at its level, ms.
 * @defaultValue 3_600_000 (1 hour)
 */
export const DEFAULT_BACKLOG_TTL_MS = 3_600_000;

/** What the worker and the cancel path need to know about a finished job (from its payload). */
export interface BacklogItem {
  tenant: string;
  /** The job's `priority` field; absent means `normal`. */
  level?: PriorityLevel | undefined;
}

interface LuaScript {
  lua: string;
  sha: string;
}

function script(lua: string): LuaScript {
  return { lua, sha: createHash('sha1').update(lua).digest('hex') };
}

/**
 * Takes places for one request of one tenant.
 * KEYS[1..3]: the tenant's backlog counters for high, normal, low.
 * ARGV[1..3]: jobs of the request per level; ARGV[4]: counter TTL (ms).
 * Returns the three counters as they were before the increment (a missing key reads as 0).
 * Counters that grow get their TTL refreshed; the others are only read.
 */
const TAKE_PLACES = script(`
local before = {}
for i = 1, 3 do
  before[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if before[i] < 0 then before[i] = 0 end
end
for i = 1, 3 do
  local n = tonumber(ARGV[i])
  if n > 0 then
    redis.call('SET', KEYS[i], string.format('%d', before[i] + n), 'PX', ARGV[4])
  end
end
return before
`);

/**
 * Gives back places when jobs finish or are cancelled.
 * KEYS[1]: one backlog counter. ARGV[1]: how many jobs finished; ARGV[2]: counter TTL (ms).
 * Never leaves a counter at 0 or below: the key is deleted instead. Returns the new value (≥ 0).
 */
const RELEASE_PLACES_LUA = `
local left = redis.call('DECRBY', KEYS[1], ARGV[1])
if left <= 0 then
  redis.call('DEL', KEYS[1])
  return 0
end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return left
`;

function levelIndex(level: PriorityLevel | undefined): number {
  return FAIRNESS_LEVELS.indexOf(level ?? 'normal');
}

/** The BullMQ priority of a job at `place` (0-based) in its tenant's line at `level`. */
export function fairPriority(level: PriorityLevel | undefined, place: number): number {
  return Math.min(1 + levelIndex(level) + 3 * place, MAX_BULLMQ_PRIORITY);
}

/**
 * Reserves places for one request's jobs (all of the same tenant, in request order) and returns
 * their BullMQ priorities, in the same order. One round trip (EVALSHA, EVAL on NOSCRIPT), so a
 * bulk request of 1,000 jobs costs the same as one job. Increments the counters by the number
 * of jobs per level: call it only for jobs that will be added, and `releaseBacklog` for any that
 * turn out not to be (an idempotent replay that lost a race).
 */
export async function assignFairPriorities(
  redis: Redis,
  prefix: string,
  tenant: string,
  levels: readonly (PriorityLevel | undefined)[],
  options: { backlogTtlMs?: number } = {},
): Promise<number[]> {
  if (levels.length === 0) return [];
  const counts = [0, 0, 0];
  for (const level of levels) counts[levelIndex(level)]! += 1;
  const keys = FAIRNESS_LEVELS.map((level) => fairBacklogKey(prefix, tenant, level));
  const args = [...counts, options.backlogTtlMs ?? DEFAULT_BACKLOG_TTL_MS];
  let before: number[];
  try {
    before = (await redis.evalsha(TAKE_PLACES.sha, keys.length, ...keys, ...args)) as number[];
  } catch (error) {
    if (!(error instanceof Error) || !error.message.startsWith('NOSCRIPT')) throw error;
    before = (await redis.eval(TAKE_PLACES.lua, keys.length, ...keys, ...args)) as number[];
  }
  // A job's place counts its own level and every higher one: first the backlog that was there,
  // then this request's jobs of higher levels, then its own level's jobs ahead of it.
  const base = [0, 1, 2].map((i) => {
    let sum = 0;
    for (let j = 0; j <= i; j++) sum += before[j]! + (j < i ? counts[j]! : 0);
    return sum;
  });
  const taken = [0, 0, 0];
  return levels.map((level) => {
    const i = levelIndex(level);
    const place = base[i]! + taken[i]!;
    taken[i]! += 1;
    return fairPriority(level, place);
  });
}

/**
 * Appends the fairness bookkeeping for finished jobs to a pipeline or MULTI, without executing
 * it: the worker calls this inside its per-batch settle pipeline, once per batch, for every job
 * that finished for good in it: completed, or failed with no attempt left (not for a retry, a
 * backoff or a rate-limit requeue: those jobs keep their place). Items of the same tenant and
 * level are summed, so a batch costs one small EVAL per (tenant, level), never one per job.
 *
 * ```ts
 * const settle = redis.pipeline();
 * appendBacklogDone(settle, config.redis.prefix, finished.map((job) => ({ tenant: job.data.tenant, level: job.data.priority })));
 * await settle.exec();
 * ```
 */
export function appendBacklogDone(
  pipeline: ChainableCommander,
  prefix: string,
  items: readonly BacklogItem[],
  options: { backlogTtlMs?: number } = {},
): ChainableCommander {
  const ttl = options.backlogTtlMs ?? DEFAULT_BACKLOG_TTL_MS;
  const counts = new Map<string, number>();
  for (const { tenant, level } of items) {
    const key = fairBacklogKey(prefix, tenant, level ?? 'normal');
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  // EVAL, not EVALSHA: inside someone else's pipeline a NOSCRIPT could not be retried alone. The
  // script is a few hundred bytes and Redis caches its compilation.
  for (const [key, count] of counts) pipeline.eval(RELEASE_PLACES_LUA, 1, key, count, ttl);
  return pipeline;
}

/** `appendBacklogDone` in a pipeline of its own (the producer's cancel). One round trip. */
export async function releaseBacklog(redis: Redis, prefix: string, items: readonly BacklogItem[], options: { backlogTtlMs?: number } = {}): Promise<void> {
  if (items.length === 0) return;
  const results = await appendBacklogDone(slotPipeline(redis), prefix, items, options).exec();
  for (const [error] of results ?? []) if (error) throw error;
}

/** Current backlog counters of one tenant (0 when absent); for tests, the dashboard and debugging. */
export async function readBacklog(redis: Redis, prefix: string, tenant: string): Promise<Record<PriorityLevel, number>> {
  const values = await redis.mget(...FAIRNESS_LEVELS.map((level) => fairBacklogKey(prefix, tenant, level)));
  return { high: Number(values[0] ?? 0), normal: Number(values[1] ?? 0), low: Number(values[2] ?? 0) };
}
