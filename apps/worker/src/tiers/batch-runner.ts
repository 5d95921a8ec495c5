import { randomUUID } from 'node:crypto';
import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { slotPipeline, type Config, type Logger } from '@prompt-queue/shared';
import type { GenerateRequest } from '../providers/provider.js';
import type { BatchApi } from './batch-api.js';
import type { OrphanedAnswer } from './orphaned-answers.js';
import {
  batchAnswerKey,
  batchJobKey,
  collectedKey,
  openBatchesKey,
  parseMember,
  requestsKey,
  submitIntentKey,
  tierLeaseKey,
  tierModelsKey,
  type BatchAnswer,
  type BatchJobRecord,
} from './keys.js';

/**
 * The Batch API's fleet-wide submitter and poller (docs/decisions/tiers.md). Every worker runs a
 * timer; on each tick the one that holds the lease (SET NX PX, released by compare-and-delete)
 * does, per model:
 *
 *   submit  collected ≥ minJobs, or the oldest waited maxCollectMs → batches of at most
 *           maxRequests requests and maxInlineBytes bytes: intent → create → record.
 *   poll    each open batch: SUCCEEDED → every answer stored for its job (TTL), jobs promoted;
 *           an answer whose job already fell back is billed twice: recorded (`orphaned`);
 *           FAILED / EXPIRED / CANCELLED → its jobs marked `fallback` and promoted (standard now);
 *           still running once every job reached its fallback time → cancelled.
 *
 * Crash safety: all state is in Redis and every step is idempotent. A submit writes its intent
 * (members + a unique displayName) before calling create; a successor that finds an intent looks
 * the batch up by displayName and adopts it, or creates it again. Answers are written before the
 * batch leaves the open set, so a poll cut short is redone. A job waits in `delayed` only until its
 * `fallbackAt`: whatever the runner does, it is then served standard. Nothing here logs prompts.
 */

/** What the router stores per collected job: the request and when it must fall back. */
export interface CollectedRequest {
  request: GenerateRequest;
  fallbackAt: number;
}

interface OpenBatch {
  members: string[];
  createdAt: number;
  /** The latest fallbackAt of its jobs: past it, nobody waits for this batch. */
  lastFallbackAt: number;
  /** Cancel was asked for (every job had fallen back). */
  cancelled?: boolean;
}


/** Bytes a request adds to the batch body besides its own JSON (wrapper, metadata key). */
const PER_REQUEST_OVERHEAD_BYTES = 256;
/** Promotions sent at once. */
const PROMOTE_CONCURRENCY = 32;

const RELEASE_LEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;

export interface BatchRunnerDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  /** The prompts queue, to promote jobs whose answer (or fallback) is ready. */
  queue: Queue;
  /** The Batch API client of a model's first link. */
  apiFor(model: string): BatchApi;
  /** Prices and records answers whose job had already been served standard (orphaned-answers.ts). */
  orphaned?: (answers: OrphanedAnswer[]) => Promise<void>;
  now?: () => number;
}

export class BatchRunner {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly owner = randomUUID();
  private readonly now: () => number;

  constructor(private readonly deps: BatchRunnerDeps) {
    this.now = deps.now ?? Date.now;
  }

  start(): this {
    const every = this.deps.config.tiers.batch.pollIntervalMs;
    this.timer = setInterval(() => void this.tick(), every);
    this.timer.unref();
    return this;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }

  /** One pass, if this process gets the lease; never throws. Concurrent calls share one pass. */
  tick(): Promise<void> {
    return (this.running ??= this.pass().finally(() => (this.running = undefined)));
  }

  private async pass(): Promise<void> {
    const { config, logger, redis } = this.deps;
    const prefix = config.redis.prefix;
    const lease = tierLeaseKey(prefix);
    try {
      const got = await redis.set(lease, this.owner, 'PX', config.tiers.batch.leaseMs, 'NX');
      if (got !== 'OK') return;
    } catch (error) {
      logger.warn('batch runner: could not take the lease', { error: String(error) });
      return;
    }
    try {
      const models = await redis.smembers(tierModelsKey(prefix));
      for (const model of models) {
        try {
          await this.submit(model);
          await this.poll(model);
        } catch (error) {
          // The next tick (this process or another) redoes what is left: every step is idempotent.
          logger.warn('batch runner: pass failed for a model', { model, error: String(error) });
        }
      }
    } finally {
      await redis.eval(RELEASE_LEASE, 1, lease, this.owner).catch(() => undefined);
    }
  }

  private async submit(model: string): Promise<void> {
    const { config, redis, logger } = this.deps;
    const prefix = config.redis.prefix;
    const settings = config.tiers.batch;
    const api = this.deps.apiFor(model);

    // A submit cut short by a crash: adopt its batch, or make it again.
    const pending = await redis.get(submitIntentKey(prefix, model));
    if (pending) {
      const intent = JSON.parse(pending) as { displayName: string; members: string[] };
      const found = await api.findByDisplayName(intent.displayName);
      if (found) {
        logger.info('batch runner: adopted a batch created before a crash', { model, batch: found, requests: intent.members.length });
        await this.recordSubmitted(model, found, intent.members);
      } else {
        await this.createBatch(model, api, intent.displayName, intent.members);
      }
    }

    for (;;) {
      const [count, oldest] = await Promise.all([redis.zcard(collectedKey(prefix, model)), redis.zrange(collectedKey(prefix, model), 0, 0, 'WITHSCORES')]);
      if (count === 0) return;
      const waitedMs = this.now() - Number(oldest[1] ?? this.now());
      if (count < settings.minJobs && waitedMs < settings.maxCollectMs) return;
      const candidates = await redis.zrange(collectedKey(prefix, model), 0, settings.maxRequests - 1);
      const stored = candidates.length > 0 ? await redis.hmget(requestsKey(prefix, model), ...candidates) : [];
      const members: string[] = [];
      const gone: string[] = [];
      let bytes = 0;
      candidates.forEach((member, i) => {
        const json = stored[i];
        // Its request is gone: the job fell back to standard meanwhile.
        if (json === null || json === undefined) return void gone.push(member);
        const size = Buffer.byteLength(json) + PER_REQUEST_OVERHEAD_BYTES;
        if (members.length > 0 && bytes + size > settings.maxInlineBytes) return;
        bytes += size;
        members.push(member);
      });
      if (gone.length > 0) await redis.zrem(collectedKey(prefix, model), ...gone);
      if (members.length === 0) {
        if (gone.length === 0) return;
        continue;
      }
      const displayName = `pq-${randomUUID()}`;
      await redis.set(submitIntentKey(prefix, model), JSON.stringify({ displayName, members }));
      await this.createBatch(model, api, displayName, members);
    }
  }

  private async createBatch(model: string, api: BatchApi, displayName: string, members: string[]): Promise<void> {
    const { config, redis, logger } = this.deps;
    const prefix = config.redis.prefix;
    const stored = members.length > 0 ? await redis.hmget(requestsKey(prefix, model), ...members) : [];
    const requests = members.flatMap((key, i) => (stored[i] ? [{ key, request: (JSON.parse(stored[i]!) as CollectedRequest).request }] : []));
    if (requests.length === 0) {
      await redis.del(submitIntentKey(prefix, model));
      return;
    }
    const name = await api.create(model, displayName, requests);
    logger.info('batch submitted', { model, batch: name, requests: requests.length });
    await this.recordSubmitted(model, name, requests.map((request) => request.key));
  }

  /** The batch is open, its jobs `submitted`, their requests and the intent gone. */
  private async recordSubmitted(model: string, name: string, members: string[]): Promise<void> {
    const { config, redis } = this.deps;
    const prefix = config.redis.prefix;
    const stored = members.length > 0 ? await redis.hmget(requestsKey(prefix, model), ...members) : [];
    const fallbackAt = (i: number): number => (stored[i] ? (JSON.parse(stored[i]!) as CollectedRequest).fallbackAt : this.now());
    const open: OpenBatch = { members, createdAt: this.now(), lastFallbackAt: Math.max(...members.map((_, i) => fallbackAt(i))) };
    const records = slotPipeline(redis);
    members.forEach((member, i) => {
      const { tenant, jobId } = parseMember(member);
      const record: BatchJobRecord = { state: 'submitted', model, fallbackAt: fallbackAt(i), batch: name };
      // XX: a job that already left the batch path (fell back, ended) keeps no record.
      records.set(batchJobKey(prefix, tenant, jobId), JSON.stringify(record), 'PX', ttlMs(config, record.fallbackAt, this.now()), 'XX');
    });
    await records.exec();
    await redis
      .multi()
      .hset(openBatchesKey(prefix, model), name, JSON.stringify(open))
      .zrem(collectedKey(prefix, model), ...members)
      .hdel(requestsKey(prefix, model), ...members)
      .del(submitIntentKey(prefix, model))
      .exec();
  }

  private async poll(model: string): Promise<void> {
    const { config, redis, logger } = this.deps;
    const prefix = config.redis.prefix;
    const open = await redis.hgetall(openBatchesKey(prefix, model));
    const api = this.deps.apiFor(model);
    for (const [name, json] of Object.entries(open)) {
      const batch = JSON.parse(json) as OpenBatch;
      const status = await api.get(name);
      if (status.state === 'SUCCEEDED') {
        const answered = status.answers.flatMap((answer, i) => {
          const member = answer.key ?? batch.members[i];
          return member === undefined ? [] : [{ answer, ...parseMember(member) }];
        });
        // Jobs that fell back were served standard meanwhile: nobody reads their answer, but it
        // was billed, so it is recorded (usage ledger and budget) instead of stored.
        const records = slotPipeline(redis);
        for (const { tenant, jobId } of answered) records.get(batchJobKey(prefix, tenant, jobId));
        const states = ((await records.exec()) ?? []).map(([, json]) => (json ? (JSON.parse(json as string) as BatchJobRecord).state : undefined));
        const store = slotPipeline(redis);
        const ttlSeconds = config.tiers.batch.resultTtlSeconds;
        const orphans: OrphanedAnswer[] = [];
        answered.forEach(({ answer, tenant, jobId }, i) => {
          if (states[i] === 'fallback') {
            if (answer.response !== undefined) orphans.push({ tenant, model, response: answer.response });
            return;
          }
          const stored: BatchAnswer = answer.error
            ? { kind: 'error', ...answer.error, batch: name }
            : { kind: 'response', response: answer.response ?? {}, batch: name };
          store.set(batchAnswerKey(prefix, tenant, jobId), JSON.stringify(stored), 'EX', ttlSeconds);
        });
        await store.exec();
        if (orphans.length > 0) {
          await this.deps.orphaned?.(orphans);
          logger.warn('batch answers came back after their jobs were served standard: billed twice, recorded', { model, batch: name, requests: orphans.length });
        }
        await redis.hdel(openBatchesKey(prefix, model), name);
        logger.info('batch answered', { model, batch: name, requests: status.answers.length });
        await this.promote(batch.members);
      } else if (status.state === 'FAILED' || status.state === 'EXPIRED' || status.state === 'CANCELLED') {
        const marks = slotPipeline(redis);
        for (const member of batch.members) {
          const { tenant, jobId } = parseMember(member);
          const record: BatchJobRecord = { state: 'fallback', model, fallbackAt: this.now(), why: status.state.toLowerCase() };
          marks.set(batchJobKey(prefix, tenant, jobId), JSON.stringify(record), 'PX', ttlMs(config, batch.lastFallbackAt, this.now()), 'XX');
        }
        await marks.exec();
        await redis.hdel(openBatchesKey(prefix, model), name);
        logger.warn('batch did not answer: its jobs fall back to standard', { model, batch: name, state: status.state, requests: batch.members.length });
        await this.promote(batch.members);
      } else if (this.now() > batch.lastFallbackAt && !batch.cancelled) {
        // Every job of it has reached its fallback time and goes standard: stop Google's work
        // (requests it has not run are not billed). Its next state, CANCELLED, ends it above.
        try {
          await api.cancel(name);
          await redis.hset(openBatchesKey(prefix, model), name, JSON.stringify({ ...batch, cancelled: true } satisfies OpenBatch));
          logger.warn('batch unanswered after every job fell back to standard: cancelled', { model, batch: name, state: status.state });
        } catch (error) {
          logger.warn('batch runner: could not cancel a batch nobody waits for', { model, batch: name, error: String(error) });
        }
      } else if (this.now() > batch.lastFallbackAt + config.tiers.batch.fallbackMarginMs) {
        // Every job of it has been served standard by now: stop polling it.
        await redis.hdel(openBatchesKey(prefix, model), name);
        logger.warn('batch still unanswered after every job fell back; no longer polled', { model, batch: name, state: status.state });
      }
    }
  }

  /** Brings the jobs out of `delayed` now (one that is not delayed any more is left alone). */
  private async promote(members: readonly string[]): Promise<void> {
    const { queue } = this.deps;
    for (let i = 0; i < members.length; i += PROMOTE_CONCURRENCY) {
      await Promise.all(
        members.slice(i, i + PROMOTE_CONCURRENCY).map(async (member) => {
          const { jobId } = parseMember(member);
          try {
            const job = await Job.fromId(queue, jobId);
            if (job && (await job.isDelayed())) await job.promote();
          } catch {
            // Taken by a worker meanwhile, or gone: it finds its answer when it runs.
          }
        }),
      );
    }
  }
}

/** A job record lives until a while after the job's fallback time. */
export function ttlMs(config: Config, fallbackAt: number, now: number): number {
  return Math.max(1, fallbackAt - now) + config.tiers.batch.fallbackMarginMs + config.tiers.batch.resultTtlSeconds * 1000;
}
