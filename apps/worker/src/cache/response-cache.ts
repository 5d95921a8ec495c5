import { createHash } from 'node:crypto';
import type { ChainableCommander, Redis } from 'ioredis';
import { z } from 'zod';
import { canonicalJson, getMany, responseCacheKey, slotPipeline, usageSchema, type PromptJobData, type TokenUsage } from '@prompt-queue/shared';

/**
 * The response cache: a repeated request is answered from Redis instead of the provider, for every
 * worker of the fleet. Issue 4 point 5.
 *
 * - Key: sha256 of a canonical JSON (sorted keys, no `undefined`) of the job's tenant, the chain
 *   link's provider and model, the job's kind, contents (images are already `{ blob: { sha256 } }`
 *   refs, so an image counts by its hash), systemInstruction and generationConfig (embed jobs:
 *   taskType and outputDimensionality too). Field order never splits the cache; metadata, priority
 *   and idempotency key are not part of it.
 * - Per tenant by default: a hit (`cached: true`, `costUsd: 0`) would otherwise tell tenant B that
 *   tenant A already sent the same prompt. `shareAcrossTenants` (config
 *   `responseCache.shareAcrossTenants`) drops the tenant from the key: one cache for everyone, paid
 *   once, at that price. The in-flight claims and the dedupe of a batch follow the key, so they
 *   never cross tenants either unless shared. Jobs that want a fresh sample at temperature > 0 send
 *   `cache: false`.
 * - Only successful answers are stored: callers never store failures, blocked or empty answers,
 *   and `store` refuses any finishReason outside {@link CACHEABLE_FINISH_REASONS} as a safety net.
 * - One round trip per batch each way: `lookup` is one MGET, `store` one pipeline of SET EX. On
 *   Redis Cluster the prefix needs a hash tag (`{pq}`) so a batch's keys share a slot.
 * - A cache entry that does not parse (an older format, a manual edit) is a miss, never an error.
 */

/** Finish reasons worth replaying. Anything else (SAFETY, RECITATION, BLOCKLIST, OTHER…) is never cached. */
export const CACHEABLE_FINISH_REASONS: ReadonlySet<string> = new Set(['STOP', 'MAX_TOKENS']);

/** What the cache holds for one request. Persisted data: evolve compatibly (new fields optional). */
export interface CachedAnswer {
  text: string;
  finishReason: string;
  usage: TokenUsage;
  /** Provider and model that produced the answer (a fallback link may differ from the request). */
  provider: string;
  model: string;
  modelVersion?: string;
  /** Embed jobs: the vector (`text` is then ''). */
  embedding?: number[];
  /**
   * What the original call cost, integer nano-USD (null: the model had no price). A hit bills
   * `costUsd: 0` and records this as the saving.
   */
  costNanoUsd: number | null;
  /** Epoch ms when the answer was stored. */
  storedAt: number;
}

const cachedAnswerSchema = z.object({
  text: z.string(),
  finishReason: z.string(),
  usage: usageSchema,
  provider: z.string(),
  model: z.string(),
  modelVersion: z.string().optional(),
  embedding: z.array(z.number()).optional(),
  costNanoUsd: z.number().int().nullable(),
  storedAt: z.number(),
});

/** The chain link that would serve the request: its answer is cached under its own key. */
export interface CacheLink {
  provider: string;
  model: string;
}

export interface ResponseCacheOptions {
  /** TTL when the job sets no `cache: { ttlSeconds }`, s (config `responseCache.defaultTtlSeconds`). */
  defaultTtlSeconds: number;
  /**
   * One cache for all tenants (config `responseCache.shareAcrossTenants`): the tenant is left out
   * of the key. @defaultValue false
   */
  shareAcrossTenants?: boolean;
}

export interface CacheEntry {
  /** From {@link ResponseCache.cacheKey}. */
  key: string;
  answer: CachedAnswer;
  /** From {@link ResponseCache.ttlFor}, s. */
  ttlSeconds: number;
}

export interface StoreSummary {
  stored: number;
  /** Entries refused by the safety net (a finishReason that is not a plain success, or no answer). */
  refused: number;
}

/** A batch's jobs grouped by cache key: call the provider for `leader`, fan its answer out to `followers`. */
export interface DedupeGroup<T> {
  /** null: a job that opted out of the cache; it is always alone in its group. */
  key: string | null;
  leader: T;
  followers: T[];
}

/** An in-flight claim: the request's digest, the job that will call (stored), and every job of the batch with that request. */
export interface Claim {
  digest: string;
  holder: string;
  holders: readonly string[];
}

/** What `lookupAndClaim` answers for a batch. */
export interface LookupResult {
  /** Per key, in order: the answer, or null (a miss, or a null key). */
  answers: (CachedAnswer | null)[];
  /** Per claimed digest, in order: true when this caller now holds its in-flight claim. */
  claimed: boolean[];
}

/** Version of the key derivation: bump it when the canonical form changes (old entries then miss). */
const KEY_VERSION = 1;

export class ResponseCache {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly options: ResponseCacheOptions,
  ) {
    if (!Number.isInteger(options.defaultTtlSeconds) || options.defaultTtlSeconds <= 0) {
      throw new RangeError('defaultTtlSeconds must be a positive integer');
    }
  }

  /**
   * The request's digest (sha256 hex) for `link`, or null when the job opted out (`cache: false`).
   * `link.model` is the model actually called (resolve a chain's `$job` to `data.model` first);
   * `data.model` itself is not read. The same job through another link has another key: look
   * several links up in one `lookup` when a fallback's answer should count as a hit.
   */
  cacheKey(link: CacheLink, data: PromptJobData): string | null {
    if (data.cache === false) return null;
    const request: Record<string, unknown> = {
      v: KEY_VERSION,
      // Absent when shared: shared keys stay those of the cache before tenants were scoped.
      tenant: this.options.shareAcrossTenants === true ? undefined : data.tenant,
      provider: link.provider,
      model: link.model,
      kind: data.kind ?? 'generate',
      contents: data.contents.map((content) => ({ role: content.role ?? 'user', parts: content.parts })),
      systemInstruction: data.systemInstruction,
      // An empty generationConfig asks for the same as none.
      generationConfig: data.generationConfig && Object.keys(data.generationConfig).length > 0 ? data.generationConfig : undefined,
      taskType: data.taskType,
      outputDimensionality: data.outputDimensionality,
    };
    return createHash('sha256').update(canonicalJson(request), 'utf8').digest('hex');
  }

  /** The job's own `cache: { ttlSeconds }`, else the configured default, s. */
  ttlFor(data: PromptJobData): number {
    return typeof data.cache === 'object' ? data.cache.ttlSeconds : this.options.defaultTtlSeconds;
  }

  /**
   * Answers for a batch's keys, in order, in one round trip: one MGET on a single Redis, GETs
   * pipelined per slot on a Cluster (each digest is its own hash tag); no command at all when every
   * key is null. null = a miss (absent, expired, unreadable) or a null key.
   */
  async lookup(keys: readonly (string | null)[]): Promise<(CachedAnswer | null)[]> {
    const present = keys.filter((key): key is string => key !== null);
    if (present.length === 0) return keys.map(() => null);
    const values = await getMany(this.redis, present.map((key) => responseCacheKey(this.prefix, key)));
    let next = 0;
    return keys.map((key) => (key === null ? null : parseAnswer(values[next++] ?? null)));
  }

  /**
   * `lookup` plus in-flight claims, in ONE pipeline (one round trip): for each digest in `claims`,
   * SET NX a short-lived `…:pending` marker holding the leader's job id. The holder calls the
   * provider; another worker (or a later batch of this one) that finds the marker taken waits
   * briefly and then finds the answer in the cache, so concurrent identical jobs across the fleet
   * make one call. The holder deletes its markers when its batch settles (`appendRelease`), after
   * storing the answer, whatever the outcome. A crashed holder's marker is taken over at once by
   * its own job when that job comes back (stalled-job recovery), and otherwise lapses after `ttlMs`.
   */
  async lookupAndClaim(keys: readonly (string | null)[], claims: readonly Claim[], ttlMs: number): Promise<LookupResult> {
    const present = keys.filter((key): key is string => key !== null);
    if (present.length === 0 && claims.length === 0) return { answers: keys.map(() => null), claimed: [] };
    // One GET per entry (entries of a batch are in different Cluster slots), split per slot by
    // slotPipeline: one round trip in time either way.
    const pipeline = slotPipeline(this.redis);
    for (const key of present) pipeline.get(responseCacheKey(this.prefix, key));
    const ttl = Math.max(1, Math.round(ttlMs));
    // SET NX, then GET: who holds the claim now (us, or someone else), in the same round trip.
    for (const { digest, holder } of claims) pipeline.set(pendingKey(this.prefix, digest), holder, 'PX', ttl, 'NX').get(pendingKey(this.prefix, digest));
    const results = (await pipeline.exec()) ?? [];
    for (const [error] of results) if (error) throw error;
    const values = results.slice(0, present.length).map(([, value]) => value as string | null);
    let next = 0;
    const answers = keys.map((key) => (key === null ? null : parseAnswer(values[next++] ?? null)));
    const offset = present.length;
    const claimed = claims.map(({ holders }, i) => {
      const [[, set], [, current]] = [results[offset + 2 * i]!, results[offset + 2 * i + 1]!];
      // A claim left by an earlier attempt of one of our own jobs (its worker died) is ours again.
      return set === 'OK' || (typeof current === 'string' && holders.includes(current));
    });
    return { answers, claimed };
  }

  /** Deletes in-flight claims, appended to the caller's pipeline (after its `appendStore`): one DEL per claim (one slot each). */
  appendRelease(pipeline: ChainableCommander, claims: readonly string[]): void {
    for (const digest of claims) pipeline.del(pendingKey(this.prefix, digest));
  }

  /**
   * Stores successful answers in ONE pipeline of SET EX. Callers store only successes: never a
   * failure, a blocked prompt or response, or a cache hit (it is already there). As a safety net,
   * an answer whose finishReason is not in {@link CACHEABLE_FINISH_REASONS}, or that carries no
   * answer at all (empty text and no embedding), is refused and counted in `refused`.
   */
  async store(entries: readonly CacheEntry[]): Promise<StoreSummary> {
    if (!entries.some((entry) => isCacheable(entry.answer))) return { stored: 0, refused: entries.length };
    const pipeline = slotPipeline(this.redis);
    const summary = this.appendStore(pipeline, entries);
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error !== null);
    if (failed) throw failed[0]!;
    return summary;
  }

  /**
   * `store`'s SET EX commands appended to the caller's pipeline, not executed: the worker's
   * per-batch settle pipeline carries them with its other writes (fairness bookkeeping).
   */
  appendStore(pipeline: ChainableCommander, entries: readonly CacheEntry[]): StoreSummary {
    const accepted = entries.filter((entry) => isCacheable(entry.answer));
    for (const { key, answer, ttlSeconds } of accepted) {
      const ttl = Math.max(1, Math.floor(ttlSeconds));
      pipeline.set(responseCacheKey(this.prefix, key), JSON.stringify(answer), 'EX', ttl);
    }
    return { stored: accepted.length, refused: entries.length - accepted.length };
  }
}

function pendingKey(prefix: string, digest: string): string {
  return `${responseCacheKey(prefix, digest)}:pending`;
}

/**
 * Groups a batch by cache key, keeping the batch's order: each distinct key once (its first job
 * leads, later identical jobs follow), each null-key job alone. Identical jobs in one batch thus
 * make one provider call; the pipeline fans the leader's answer (or failure) out to the followers.
 */
export function dedupe<T>(items: readonly T[], keyOf: (item: T) => string | null): DedupeGroup<T>[] {
  const groups: DedupeGroup<T>[] = [];
  const byKey = new Map<string, DedupeGroup<T>>();
  for (const item of items) {
    const key = keyOf(item);
    if (key === null) {
      groups.push({ key, leader: item, followers: [] });
      continue;
    }
    const group = byKey.get(key);
    if (group) {
      group.followers.push(item);
    } else {
      const created: DedupeGroup<T> = { key, leader: item, followers: [] };
      byKey.set(key, created);
      groups.push(created);
    }
  }
  return groups;
}

/** Whether `store` accepts the answer (see {@link ResponseCache.store}). */
export function isCacheable(answer: CachedAnswer): boolean {
  if (!CACHEABLE_FINISH_REASONS.has(answer.finishReason)) return false;
  return answer.text !== '' || (answer.embedding !== undefined && answer.embedding.length > 0);
}

function parseAnswer(raw: string | null): CachedAnswer | null {
  if (raw === null) return null;
  try {
    const parsed = cachedAnswerSchema.safeParse(JSON.parse(raw));
    return parsed.success ? (parsed.data as CachedAnswer) : null;
  } catch {
    return null;
  }
}
