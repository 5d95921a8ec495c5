import type { Redis } from 'ioredis';
import { z } from 'zod';
import {
  PromptQueueError,
  appendJobEvents,
  assignFairPriorities,
  nanoUsdToUsd,
  nextUtcDayStartMs,
  nextUtcMonthStartMs,
  priorityLevelSchema,
  promptJobOptions,
  putBlobs,
  putWebhookSecrets,
  releaseBacklog,
  type BudgetGuard,
  type Config,
  type JobEndRecorder,
  type JobEvent,
  webhookRefSchema,
  type PriorityLevel,
  isFinished,
  jobView,
  statusOf,
  type JobStatus,
  type JobView,
  type ViewSource,
  slotPipeline,
  waitForReplicas,
} from '@prompt-queue/shared';
import type { ProducerMetrics } from './metrics.js';
import type { PromptQueue } from './queue.js';
import { assertRedisAvailable, isRedisUnavailableError } from './redis-availability.js';
import type { Issue, PreparedJob } from './requests.js';
import type { Accepted } from './responses.js';
import { deleteTombstone, readTombstone, tombstoneView, writeTombstone, type Tombstone } from './tombstones.js';

/** The part of a stored payload the producer reads back; lenient, so newer payload versions still show. */
const storedJobSchema = z.object({
  tenant: z.string(),
  model: z.string(),
  requestHash: z.string().optional(),
  priority: priorityLevelSchema.optional().catch(undefined),
  metadata: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
  webhook: webhookRefSchema.optional().catch(undefined),
});
type StoredJob = z.infer<typeof storedJobSchema> & {
  /** BullMQ's numeric priority of the stored job (0 when it has none). */
  bullmqPriority: number;
};

export interface JobStoreOptions {
  /** Over-budget tenants get 402 BUDGET_EXCEEDED instead of new jobs. */
  budgets: BudgetGuard;
  /** Where a cancelled job's end is recorded (usage, audit, fairness, event, webhook). */
  recorder: JobEndRecorder;
  metrics?: ProducerMetrics;
}

/**
 * Jobs as the API sees them, on top of BullMQ and the cancel tombstones. Every method checks that
 * Redis is reachable first, so an outage is a fast 503 rather than a hung request.
 *
 * Every new job gets a fair BullMQ priority (its place in its tenant's line, queue/fairness.ts in
 * shared): the backlog counters go up here, once per request, and down when a job is cancelled
 * here or finishes in the worker. A job that turns out not to be added (an idempotent replay that
 * lost a race, a failed add) gives its place back at once.
 *
 * New jobs get a `queued` live event (events/job-events.ts in shared), written just before the add
 * in one pipeline per request: a worker's `active` can then never come first in the stream. The
 * price: a failed add leaves a `queued` for a job that does not exist (the request failed, so the
 * caller never had its id), and two identical idempotent requests racing may both write one.
 */
export class JobStore {
  private readonly prefix: string;
  private readonly budgets: BudgetGuard;
  private readonly recorder: JobEndRecorder;
  private readonly metrics: ProducerMetrics | undefined;

  constructor(
    private readonly config: Config,
    private readonly redis: Redis,
    private readonly queue: PromptQueue,
    options: JobStoreOptions,
  ) {
    this.prefix = config.redis.prefix;
    this.budgets = options.budgets;
    this.recorder = options.recorder;
    this.metrics = options.metrics;
  }

  /**
   * Adds one job. With an idempotency key the id is deterministic and BullMQ's add is atomic: of
   * two concurrent identical requests one creates the job and the other gets it back, so the
   * provider is called once. The stored payload is then compared, to refuse a different request
   * reusing the key.
   */
  async enqueue(job: PreparedJob): Promise<Accepted> {
    await assertRedisAvailable(this.redis, this.queue);
    const { tenant, priority: level } = job.data;
    const idempotent = job.data.idempotencyKey !== undefined;
    if (idempotent) {
      const cancelled = await this.cancelledReplay(job);
      if (cancelled) return cancelled;
    }
    // An idempotent request for a job already in is a replay: no new job, so no `queued` event.
    const before = idempotent ? await this.readStoredJob(job.id) : undefined;
    const overBudget = await this.overBudget(tenant);
    // A replay of a job that is already in is answered as usual: nothing new would be spent.
    if (overBudget && (!before || before.requestHash !== job.data.requestHash)) throw overBudget;
    await putBlobs(this.redis, this.prefix, job.blobs, this.config.producer.resultTtlSeconds);
    // Beside the job, like its images: the payload carries only the secret's reference.
    await putWebhookSecrets(this.redis, this.prefix, job.webhookSecret ? [job.webhookSecret] : [], this.config.producer.resultTtlSeconds);
    const [priority] = await assignFairPriorities(this.redis, this.prefix, tenant, [level]);
    await this.addOrGiveBack(tenant, [level], async () => {
      if (!before) await this.recordQueued([job]);
      await this.queue.add(job.data.kind, job.data, promptJobOptions(this.config, job.id, priority));
    });
    await this.confirmReplicated();
    if (!idempotent) {
      this.metrics?.jobsEnqueued(tenant, [level]);
      return { id: job.id, status: 'queued' };
    }

    const stored = await this.readStoredJob(job.id);
    if (stored && stored.bullmqPriority === priority) this.metrics?.jobsEnqueued(tenant, [level]);
    else await this.giveBack(tenant, [level]); // the job already existed: the add was a no-op
    if (stored && stored.requestHash !== job.data.requestHash) throw idempotencyConflict([{ path: 'idempotencyKey', message: conflictMessage }]);
    return { id: job.id, status: (await this.currentStatus(job.id)) ?? 'queued' };
  }

  /**
   * Adds all jobs with one addBulk after checking every idempotency key (within the batch and
   * against Redis), so a conflict refuses the whole request before anything is written.
   */
  async enqueueBulk(jobs: PreparedJob[]): Promise<Accepted[]> {
    await assertRedisAvailable(this.redis, this.queue);
    const issues: Issue[] = [];
    const firstIndexById = new Map<string, number>();
    jobs.forEach((job, index) => {
      if (job.data.idempotencyKey === undefined) return;
      const first = firstIndexById.get(job.id);
      if (first === undefined) firstIndexById.set(job.id, index);
      else if (jobs[first]!.data.requestHash !== job.data.requestHash) {
        issues.push({ path: `jobs[${index}].idempotencyKey`, message: `same key as jobs[${first}] with a different request` });
      }
    });

    const existing = await Promise.all(
      [...firstIndexById].map(async ([id, index]) => ({
        index,
        stored: await this.readStoredJob(id),
        tombstone: await readTombstone(this.redis, this.prefix, id),
      })),
    );
    const cancelledIds = new Set<string>();
    for (const { index, stored, tombstone } of existing) {
      const hash = stored?.requestHash ?? tombstone?.requestHash;
      if (hash !== undefined && hash !== jobs[index]!.data.requestHash) {
        issues.push({ path: `jobs[${index}].idempotencyKey`, message: conflictMessage });
      } else if (!stored && tombstone) {
        cancelledIds.add(jobs[index]!.id);
      }
    }
    if (issues.length > 0) throw idempotencyConflict(issues);

    // Each id once; jobs already in Redis are replays: adding them again would be a no-op.
    const storedIds = new Set(existing.filter(({ stored }) => stored).map(({ index }) => jobs[index]!.id));
    const seen = new Set<string>();
    const toAdd = jobs.filter((job) => {
      if (cancelledIds.has(job.id) || storedIds.has(job.id) || seen.has(job.id)) return false;
      seen.add(job.id);
      return true;
    });
    const tenant = jobs[0]!.data.tenant;
    const overBudget = toAdd.length > 0 ? await this.overBudget(tenant) : undefined;
    if (overBudget) throw overBudget;

    await putBlobs(this.redis, this.prefix, toAdd.flatMap((job) => job.blobs), this.config.producer.resultTtlSeconds);
    await putWebhookSecrets(this.redis, this.prefix, toAdd.flatMap((job) => (job.webhookSecret ? [job.webhookSecret] : [])), this.config.producer.resultTtlSeconds);
    if (toAdd.length > 0) {
      const levels = toAdd.map((job) => job.data.priority);
      const priorities = await assignFairPriorities(this.redis, this.prefix, tenant, levels);
      await this.addOrGiveBack(tenant, levels, async () => {
        await this.recordQueued(toAdd);
        await this.queue.addBulk(toAdd.map((job, i) => ({ name: job.data.kind, data: job.data, opts: promptJobOptions(this.config, job.id, priorities[i]) })));
      });
      await this.confirmReplicated();
      // An idempotent job created by a concurrent request between our check and our add: ours was
      // a no-op, so its place goes back. The stored priority tells (places are unique per level).
      const lost = await Promise.all(
        toAdd.map(async (job, i) => job.data.idempotencyKey !== undefined && (await this.readStoredJob(job.id))?.bullmqPriority !== priorities[i]),
      );
      await this.giveBack(tenant, levels.filter((_, i) => lost[i]));
      this.metrics?.jobsEnqueued(tenant, levels.filter((_, i) => !lost[i]));
    }
    return Promise.all(
      jobs.map(async (job): Promise<Accepted> => {
        if (cancelledIds.has(job.id)) return { id: job.id, status: 'cancelled' };
        if (job.data.idempotencyKey === undefined) return { id: job.id, status: 'queued' };
        return { id: job.id, status: (await this.currentStatus(job.id)) ?? 'queued' };
      }),
    );
  }

  /** The job's view, or undefined when it does not exist or belongs to another tenant. */
  async find(id: string, tenant: string): Promise<JobView | undefined> {
    await assertRedisAvailable(this.redis, this.queue);
    // State first, then the hash: the payload read is never older than the status it is shown
    // with (a completed status always comes with its return value).
    const status = statusOf(await this.queue.getJobState(id));
    const job = status ? await this.queue.getJob(id) : undefined;
    if (status && job) {
      const source = ownedBy(job.data, tenant);
      return source ? jobView(job, status, source) : undefined;
    }
    return this.findCancelled(id, tenant);
  }

  /**
   * Cancels a job that no worker has taken. The tombstone is written before the removal, so there
   * is never a moment where the job is gone and GET answers 404; if the removal fails (a worker
   * took the job meanwhile), the tombstone goes again: a live job always wins over it on GET.
   */
  async cancel(id: string, tenant: string): Promise<JobView | undefined> {
    await assertRedisAvailable(this.redis, this.queue);
    const job = await this.queue.getJob(id);
    if (!job) return this.findCancelled(id, tenant);
    const source = ownedBy(job.data, tenant);
    if (!source) return undefined;
    const status = statusOf(await job.getState());
    if (status === undefined) return this.findCancelled(id, tenant);
    if (status === 'active' || isFinished(status)) {
      throw new PromptQueueError('JOB_NOT_CANCELLABLE', `The job is ${status}; only queued jobs can be cancelled.`);
    }

    const tombstone: Tombstone = {
      id,
      tenant,
      model: source.model,
      createdAt: new Date(job.timestamp).toISOString(),
      cancelledAt: new Date().toISOString(),
      ...(source.requestHash ? { requestHash: source.requestHash } : {}),
      ...(source.metadata ? { metadata: source.metadata } : {}),
    };
    await writeTombstone(this.redis, this.prefix, tombstone, this.config.producer.resultTtlSeconds);
    try {
      await job.remove();
    } catch (error) {
      await deleteTombstone(this.redis, this.prefix, id).catch(() => undefined);
      if (isRedisUnavailableError(error)) throw error;
      throw new PromptQueueError('JOB_NOT_CANCELLABLE', 'A worker started the job; it can no longer be cancelled.');
    }
    // The job is gone for good: its end is recorded like every other (its place in the tenant's
    // line goes back, usage, audit, the `cancelled` event, its webhook). Best effort: the cancel
    // already happened; the recorder logs what it could not write.
    const view = tombstoneView(tombstone);
    const error = { code: 'CANCELLED' as const, message: 'The job was cancelled before a worker took it.' };
    await this.recorder.record([
      {
        jobId: id,
        tenant,
        model: source.model,
        priority: source.priority,
        outcome: 'cancelled',
        provider: 'none',
        servedModel: source.model,
        error,
        latencyMs: 0,
        attempts: job.attemptsMade,
        view,
        ...(source.webhook ? { webhook: source.webhook } : {}),
        at: new Date(tombstone.cancelledAt),
      },
    ]);
    return view;
  }

  private async findCancelled(id: string, tenant: string): Promise<JobView | undefined> {
    const tombstone = await readTombstone(this.redis, this.prefix, id);
    return tombstone && tombstone.tenant === tenant ? tombstoneView(tombstone) : undefined;
  }

  /** A replay of a cancelled idempotent request stays cancelled instead of creating the job again. */
  private async cancelledReplay(job: PreparedJob): Promise<Accepted | undefined> {
    const tombstone = await readTombstone(this.redis, this.prefix, job.id);
    if (!tombstone || (await this.queue.getJobState(job.id)) !== 'unknown') return undefined;
    if (tombstone.requestHash !== undefined && tombstone.requestHash !== job.data.requestHash) {
      throw idempotencyConflict([{ path: 'idempotencyKey', message: conflictMessage }]);
    }
    return { id: job.id, status: 'cancelled' };
  }

  /**
   * With `redis.waitReplicas` (REDIS_WAIT_REPLICAS), waits until that many replicas hold the
   * queue's writes (Redis WAIT on the queue's master), so a job answered 202 survives a failover;
   * fewer within `waitTimeoutMs` is a 503: the job may still run, and a retry with the same
   * idempotency key finds it. Covers the queue's slot (the job, its state); a job's images live in
   * other slots and are not waited for (docs/decisions/redis-cluster.md).
   */
  private async confirmReplicated(): Promise<void> {
    const { waitReplicas, waitTimeoutMs } = this.config.redis;
    if (waitReplicas === 0) return;
    const acked = await waitForReplicas(this.redis, this.queue.keys.id!, waitReplicas, waitTimeoutMs);
    if (acked < waitReplicas) {
      throw new PromptQueueError('REDIS_UNAVAILABLE', `Only ${acked} of ${waitReplicas} Redis replicas confirmed the job within ${waitTimeoutMs} ms; retry with the same idempotencyKey.`);
    }
  }

  /** `queued` events for jobs about to be added: one pipeline, one round trip per request. */
  private async recordQueued(jobs: readonly PreparedJob[]): Promise<void> {
    const at = new Date().toISOString();
    const events = jobs.map((job): JobEvent => ({ type: 'queued', jobId: job.id, tenant: job.data.tenant, at }));
    const pipeline = slotPipeline(this.redis);
    appendJobEvents(pipeline, this.prefix, events, this.config.events.historyPerTenant);
    const results = await pipeline.exec();
    for (const [error] of results ?? []) if (error) throw error;
  }

  /** The payload fields we compare and the BullMQ priority, straight from the job hash (one HMGET, no Job object). */
  private async readStoredJob(id: string): Promise<StoredJob | undefined> {
    const [raw, priority] = await this.redis.hmget(this.queue.toKey(id), 'data', 'priority');
    if (raw === null || raw === undefined) return undefined;
    try {
      const parsed = storedJobSchema.safeParse(JSON.parse(raw));
      return parsed.success ? { ...parsed.data, bullmqPriority: Number(priority ?? 0) } : undefined;
    } catch {
      return undefined;
    }
  }

  /** The 402 to answer when the tenant's budget is spent and its policy is to fail (not `wait`). */
  private async overBudget(tenant: string): Promise<PromptQueueError | undefined> {
    const policy = this.budgets.policy(tenant);
    if (!policy.budgeted || policy.onExceeded !== 'fail') return undefined;
    const status = await this.budgets.isOverBudget(tenant);
    if (!status.over || status.scope === undefined || status.limitNanoUsd === null) return undefined;
    const now = new Date();
    const resetsAt = new Date(status.scope === 'daily' ? nextUtcDayStartMs(now) : nextUtcMonthStartMs(now)).toISOString();
    const period = status.scope === 'daily' ? 'UTC day' : 'UTC month';
    return new PromptQueueError(
      'BUDGET_EXCEEDED',
      `The ${status.scope} budget is spent ($${nanoUsdToUsd(status.spentNanoUsd)} of $${nanoUsdToUsd(status.limitNanoUsd)} this ${period}); it resets at ${resetsAt}.`,
    );
  }

  /** Runs the add; if it fails, the places taken for it go back before the error propagates. */
  private async addOrGiveBack(tenant: string, levels: (PriorityLevel | undefined)[], add: () => Promise<unknown>): Promise<void> {
    try {
      await add();
    } catch (error) {
      await this.giveBack(tenant, levels);
      throw error;
    }
  }

  private async giveBack(tenant: string, levels: (PriorityLevel | undefined)[]): Promise<void> {
    await releaseBacklog(this.redis, this.prefix, levels.map((level) => ({ tenant, level }))).catch(() => undefined);
  }

  private async currentStatus(id: string): Promise<JobStatus | undefined> {
    return statusOf(await this.queue.getJobState(id));
  }
}

const conflictMessage = 'was already used for a different request (model, contents, systemInstruction or generationConfig differ)';

function idempotencyConflict(issues: Issue[]): PromptQueueError {
  return new PromptQueueError('IDEMPOTENCY_CONFLICT', `Idempotency key conflict: ${issues[0]!.path} ${issues[0]!.message}`, { issues });
}

function ownedBy(data: unknown, tenant: string): (ViewSource & { requestHash?: string; priority?: PriorityLevel; webhook?: StoredJob['webhook'] }) | undefined {
  const parsed = storedJobSchema.safeParse(data);
  return parsed.success && parsed.data.tenant === tenant ? parsed.data : undefined;
}
