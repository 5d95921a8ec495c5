import type { ChainableCommander, Redis } from 'ioredis';
import type { UsageEntry, UsageLedger } from '../accounting/usage.js';
import type { ErrorCode } from '../errors.js';
import { appendJobEvents, type JobEvent } from '../events/job-events.js';
import type { AuditLog } from '../logging/audit.js';
import type { Logger } from '../logging/logger.js';
import { appendBacklogDone } from '../queue/fairness.js';
import type { JobView } from '../queue/job-view.js';
import type { PriorityLevel, PromptJobData, PromptJobResult } from '../queue/payloads.js';
import { slotPipeline } from '../redis/cluster.js';

/**
 * THE place where a job's end is recorded. Every way a job ends comes through `JobEndRecorder.record`:
 * completed, failed at once, failed after its attempts, cancelled (queued, in the producer; or while
 * served), an invalid payload, and a job BullMQ failed itself after too many stalls. Audit line,
 * usage record, fairness give-back, live event, webhook, metrics and the outcome log are its
 * observers, so no end misses one of them and none is written twice by two code paths.
 *
 * Redis writes of all observers leave together (one pipeline, plus the ledger's MULTI and the
 * webhook queue's add, sent back to back): one round trip per batch of ends, whatever its size.
 * Delivery is at least once: an end recorded just before its worker died is recorded again when
 * the job is served again. Live events and webhooks carry ids receivers dedupe by.
 */

export type JobEndOutcome = 'completed' | 'failed' | 'cancelled';

/** What the webhook of a job says, as its payload stores it (absent: the tenant's default, if any). */
export type JobWebhook = PromptJobData extends { webhook?: infer W } ? W : never;

export interface JobEnd {
  jobId: string;
  tenant: string;
  /** The model the job asked for. */
  model: string;
  /** Its fairness level: the end gives its place in the tenant's line back. */
  priority?: PriorityLevel | undefined;
  outcome: JobEndOutcome;
  /** The provider and model that served it, or the link it failed on ('none' when it never reached one). */
  provider: string;
  servedModel: string;
  result?: PromptJobResult;
  /** A cache hit's saving: what the original call cost, nano-USD. */
  savedNanoUsd?: number;
  error?: { code: ErrorCode; message: string };
  /** Wall time of the last attempt, ms. */
  latencyMs: number;
  /** Attempts made, this one included. */
  attempts: number;
  /** sha256 of the canonical request (audit); absent when the payload could not be read. */
  promptSha256?: string;
  /** The prompt text, only for an audit log configured with `logPrompts`. */
  prompt?: string;
  /** The job as GET /v1/jobs/:id shows it after this end: webhook payload and final event. */
  view: JobView;
  webhook?: JobWebhook | undefined;
  at: Date;
}

/**
 * One consumer of ends. Redis writes go into `pipeline` (executed by the recorder); anything else
 * (its own transaction, a queue add, a file) is returned as a promise, sent alongside.
 */
export interface JobEndObserver {
  readonly name: string;
  observe(ends: readonly JobEnd[], pipeline: ChainableCommander): Promise<unknown> | void;
}

export class JobEndRecorder {
  constructor(
    private readonly redis: Redis,
    private readonly observers: readonly JobEndObserver[],
    private readonly logger: Logger,
  ) {}

  /**
   * Records the ends with every observer. Never throws: a failed observer is logged and the others
   * still record (their writes are independent). The caller's own writes of the same step join in:
   * `append` adds to the pipeline, `alongside` are awaited with it, so the step stays one round trip.
   */
  async record(ends: readonly JobEnd[], step: { append?: (pipeline: ChainableCommander) => void; alongside?: readonly Promise<unknown>[] } = {}): Promise<void> {
    const pipeline = slotPipeline(this.redis);
    const pending: Promise<unknown>[] = [...(step.alongside ?? [])];
    step.append?.(pipeline);
    if (ends.length > 0) {
      for (const observer of this.observers) {
        try {
          const done = observer.observe(ends, pipeline);
          if (done) pending.push(done.catch((error: unknown) => this.warn(observer.name, error)));
        } catch (error) {
          this.warn(observer.name, error);
        }
      }
    }
    if (pipeline.length > 0) {
      pending.push(
        pipeline
          .exec()
          .then((results) => {
            const failed = results?.find(([error]) => error !== null);
            if (failed) throw failed[0]!;
          })
          .catch((error: unknown) => this.warn('pipeline (events, fairness, caller writes)', error)),
      );
    }
    await Promise.all(pending);
  }

  private warn(what: string, error: unknown): void {
    this.logger.warn(`recording job ends: ${what} failed`, { error: String(error) });
  }
}

/** One audit line per end (billing disputes, cost analysis): never prompt text unless `logPrompts`. */
export function auditObserver(audit: AuditLog): JobEndObserver {
  return {
    name: 'audit',
    observe(ends) {
      for (const end of ends) {
        const usage = end.result && !end.result.cached ? end.result.usage : undefined;
        audit.write({
          ts: end.at,
          tenant: end.tenant,
          jobId: end.jobId,
          promptSha256: end.promptSha256 ?? '',
          model: end.servedModel,
          provider: end.provider,
          inputTokens: usage?.inputTokens ?? 0,
          outputTokens: usage?.outputTokens ?? 0,
          thoughtsTokens: usage?.thoughtsTokens ?? 0,
          cachedTokens: usage?.cachedTokens ?? 0,
          costNanoUsd: end.result ? end.result.costNanoUsd : 0,
          outcome: end.outcome,
          ...(end.error ? { errorCode: end.error.code } : {}),
          latencyMs: end.latencyMs,
          attempt: end.attempts,
          cached: end.result?.cached ?? false,
          ...(end.prompt !== undefined ? { prompt: end.prompt } : {}),
        });
      }
    },
  };
}

/** One usage record per end, in the ledger's own MULTI (it sums per tenant and model first). */
export function usageObserver(ledger: UsageLedger): JobEndObserver {
  return {
    name: 'usage',
    observe(ends) {
      const entries = ends.map((end): UsageEntry => {
        const { tenant, result } = end;
        if (end.outcome !== 'completed' || !result) {
          return { tenant, model: end.servedModel, provider: end.provider, outcome: 'failed', costNanoUsd: 0, cached: false };
        }
        if (result.cached) {
          return { tenant, model: result.model, provider: result.provider, outcome: 'completed', costNanoUsd: 0, cached: true, savedNanoUsd: end.savedNanoUsd ?? 0 };
        }
        // A cheaper tier's saving rides in `savedNanoUsd` of a non-cached end (pipeline/tier-route.ts).
        const tier = result.tier !== undefined && result.tier !== 'standard' ? { tier: result.tier, tierSavedNanoUsd: end.savedNanoUsd ?? 0 } : {};
        return { tenant, model: result.model, provider: result.provider, outcome: 'completed', usage: result.usage, costNanoUsd: result.costNanoUsd, cached: false, ...tier };
      });
      return ledger.record(entries, ends[0]!.at);
    },
  };
}

/** The job leaves its tenant's line: its fairness place goes back (queue/fairness.ts). */
export function fairnessObserver(prefix: string): JobEndObserver {
  return {
    name: 'fairness',
    observe(ends, pipeline) {
      appendBacklogDone(pipeline, prefix, ends.map((end) => ({ tenant: end.tenant, level: end.priority })));
    },
  };
}

/** The final live event (completed, failed, cancelled) with the job's view. */
export function eventsObserver(prefix: string, historyPerTenant: number): JobEndObserver {
  return {
    name: 'events',
    observe(ends, pipeline) {
      const events = ends.map(
        (end): JobEvent => ({
          type: end.outcome,
          jobId: end.jobId,
          tenant: end.tenant,
          at: end.at.toISOString(),
          attempt: end.attempts,
          ...(end.error ? { code: end.error.code } : {}),
          view: end.view,
        }),
      );
      appendJobEvents(pipeline, prefix, events, historyPerTenant);
    },
  };
}

/** What the webhook observer hands its ends to (WebhookOutbox in webhooks/outbox.ts). */
export interface WebhookSink {
  enqueue(ends: readonly { tenant: string; jobId: string; type: `job.${JobEndOutcome}`; view: JobView; webhook?: JobWebhook | undefined }[]): Promise<void>;
}

/** A signed webhook per end whose job (or tenant) has one; delivered through its own queue. */
export function webhookObserver(outbox: WebhookSink): JobEndObserver {
  return {
    name: 'webhooks',
    observe(ends) {
      return outbox.enqueue(
        ends.map((end) => ({ tenant: end.tenant, jobId: end.jobId, type: `job.${end.outcome}` as const, view: end.view, ...(end.webhook !== undefined ? { webhook: end.webhook } : {}) })),
      );
    },
  };
}

/** The outcome log: one line per end, no prompt text. */
export function logObserver(logger: Logger): JobEndObserver {
  return {
    name: 'log',
    observe(ends) {
      for (const end of ends) {
        const level = end.outcome === 'completed' ? 'info' : 'warn';
        logger.log(level, `job ${end.outcome}`, {
          jobId: end.jobId,
          tenant: end.tenant,
          model: end.model,
          attempt: end.attempts,
          outcome: end.outcome,
          provider: end.provider,
          servedModel: end.servedModel,
          latencyMs: end.latencyMs,
          ...(end.error ? { code: end.error.code } : {}),
          ...(end.result
            ? {
                cached: end.result.cached,
                finishReason: end.result.finishReason,
                inputTokens: end.result.usage.inputTokens,
                outputTokens: end.result.usage.outputTokens,
                thoughtsTokens: end.result.usage.thoughtsTokens,
                costUsd: end.result.costUsd,
              }
            : {}),
        });
      }
    },
  };
}
