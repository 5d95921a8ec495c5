import type { PromptJobResult } from '@prompt-queue/shared';
import { dedupe, type CachedAnswer, type ResponseCache } from '../cache/response-cache.js';
import type { Link } from '../providers/chain.js';
import type { BatchJob, Fates } from './batch.js';
import type { JobFate } from './fate.js';
import type { JobResults } from './results.js';

/**
 * Stage 2: the response cache and dedupe, before any budget is reserved.
 *
 * Why the cache comes BEFORE the budget: a hit costs nothing, so it needs no reservation and is
 * served even to a tenant whose budget is spent (it cannot push the tenant over), and the
 * reservation a hit would otherwise hold never blocks the tenant's other jobs.
 *
 * One round trip: the answers of every link's key, and an in-flight claim per distinct request
 * (SET NX). A job whose request another batch or worker is calling right now waits
 * CACHE_PENDING_RECHECK_MS in `delayed` (no attempt spent) and then finds the answer: N identical
 * jobs make one call fleet-wide, whatever the timing (unless the call fails: then the next tries).
 * Identical jobs of one batch are grouped behind one leader (budget-admit.ts picks it).
 * Jobs with `cache: false` (or the cache off) are neither looked up, deduplicated nor stored.
 */

/** A job whose identical request is in flight elsewhere looks again after this, ms. */
export const CACHE_PENDING_RECHECK_MS = 200;

export interface CacheLookup {
  /** Response cache keys per job, one per chain link in order; empty: `cache: false`. */
  keys: Map<BatchJob, string[]>;
  /** Hits (served, cost 0) and jobs whose request is in flight elsewhere (wait). */
  fates: Fates;
  /** Digests this batch claimed as in flight; released when it settles. */
  claims: string[];
}

export const NO_CACHE: CacheLookup = Object.freeze({ keys: new Map(), fates: new Map(), claims: [] }) as CacheLookup;

export async function lookUpCache(cache: ResponseCache, results: JobResults, jobs: readonly BatchJob[], links: readonly Link[], claimTtlMs: number): Promise<CacheLookup> {
  const keys = new Map<BatchJob, string[]>();
  for (const job of jobs) {
    keys.set(job, job.entry.data.cache === false ? [] : links.map((link) => cache.cacheKey({ provider: link.providerName, model: link.model }, job.entry.data)!));
  }
  const byDigest = new Map<string, string[]>();
  for (const job of jobs) {
    const digest = keys.get(job)![0];
    if (digest !== undefined) byDigest.set(digest, [...(byDigest.get(digest) ?? []), job.entry.job.id ?? '']);
  }
  const requested = [...byDigest].map(([digest, holders]) => ({ digest, holder: holders[0]!, holders }));
  const { answers, claimed } = await cache.lookupAndClaim(jobs.flatMap((job) => keys.get(job)!), requested, claimTtlMs);
  const claims: string[] = [];
  const pendingElsewhere = new Set<string>();
  requested.forEach(({ digest }, i) => (claimed[i] ? claims.push(digest) : pendingElsewhere.add(digest)));

  const fates: Fates = new Map();
  let next = 0;
  for (const job of jobs) {
    const jobKeys = keys.get(job)!;
    // The first link (in chain order) with an answer: a fallback's stored answer counts too.
    const hit = answers.slice(next, (next += jobKeys.length)).find((answer): answer is CachedAnswer => answer !== null);
    if (hit) fates.set(job, { kind: 'served', result: results.cached(hit), savedNanoUsd: hit.costNanoUsd ?? 0 });
    else if (jobKeys[0] !== undefined && pendingElsewhere.has(jobKeys[0])) {
      fates.set(job, { kind: 'wait', untilMs: Date.now() + CACHE_PENDING_RECHECK_MS, reason: 'cache-pending' });
    }
  }
  return { keys, fates, claims };
}

export interface IdenticalGroup {
  leader: BatchJob;
  followers: BatchJob[];
}

/** Jobs grouped by their first link's cache key (identical requests); keyless jobs alone. */
export function groupIdentical(jobs: readonly BatchJob[], lookup: CacheLookup): IdenticalGroup[] {
  return dedupe(jobs, (job) => lookup.keys.get(job)?.[0] ?? null).map(({ leader, followers }) => ({ leader, followers }));
}

/**
 * A follower's fate from its leader's: the answer as a cache hit (cost 0, the leader's cost as
 * its saving), the same wait, or the same failure judged on the follower's own attempts. A leader
 * withdrawn (cancel, shutdown) made no call for it: the follower looks again shortly.
 */
export function followerFate(lead: JobFate, follower: BatchJob, results: JobResults): JobFate {
  switch (lead.kind) {
    case 'served':
      return { kind: 'served', result: results.cached(cachedAnswerOf(lead.result)), savedNanoUsd: lead.result.costNanoUsd ?? 0 };
    case 'wait':
      return lead;
    case 'failed': {
      const { job } = follower.entry;
      return { ...lead, retry: lead.retryable && job.attemptsMade + 1 < (job.opts.attempts ?? 1) };
    }
    case 'cancelled':
    case 'hand-back':
      return { kind: 'wait', untilMs: Date.now() + CACHE_PENDING_RECHECK_MS, reason: 'cache-pending' };
  }
}

export function cachedAnswerOf(result: PromptJobResult): CachedAnswer {
  return {
    text: result.text,
    finishReason: result.finishReason,
    usage: result.usage,
    provider: result.provider,
    model: result.model,
    ...(result.modelVersion !== undefined ? { modelVersion: result.modelVersion } : {}),
    ...(result.embedding !== undefined ? { embedding: result.embedding } : {}),
    costNanoUsd: result.costNanoUsd,
    storedAt: Date.now(),
  };
}
