import { DelayedError, RateLimitError, UnrecoverableError, type Job } from 'bullmq';
import {
  ERROR_CATALOG,
  isErrorCode,
  type ErrorCode,
  costNanoUsd,
  formatFailedReason,
  isPromptQueueError,
  isProviderError,
  nanoUsdToUsd,
  promptJobResultSchema,
  type Config,
  type Logger,
  type PromptJobData,
  type PromptJobResult,
  type TokenUsage,
} from '@prompt-queue/shared';
import type { CachedAnswer } from '../cache/response-cache.js';
import type { GenerateResult } from '../providers/provider.js';

/** Abort reason the worker uses on a forced shutdown: the job goes back to the queue, unharmed. */
export const SHUTDOWN_ABORT_REASON = 'worker-shutdown';

/** One job as the pipeline carries it: BullMQ's handles plus the parsed payload. */
export interface JobEntry {
  job: Job;
  token: string | undefined;
  signal: AbortSignal | undefined;
  data: PromptJobData;
}

/** Why a job goes back to `delayed` without spending an attempt. */
export type WaitReason = 'quota' | 'rate-limited' | 'daily-quota' | 'breakers-open' | 'budget' | 'budget-busy' | 'cache-pending';

/**
 * What a failure means for the job, decided before BullMQ is told (the settle step records final
 * outcomes only): `final` = no retry will follow (failed for good, or cancelled); `handBack` = a
 * forced shutdown returns it to the queue, unharmed (no outcome at all).
 */
export interface FailureDisposition {
  code: ErrorCode;
  final: boolean;
  handBack: boolean;
}

type Outcome = 'completed' | 'failed' | 'retrying' | 'waiting' | 'requeued' | 'cancelled';

/**
 * What happens to ONE job once its batch is served: its result, or the BullMQ control flow its
 * failure asks for. The one place that maps a failure's disposition to BullMQ:
 * - `fail` → UnrecoverableError (no retry);
 * - `backoff` → a plain Error: BullMQ's attempts with the jittered backoff (backoff.ts);
 * - waiting for quota, a fleet pause or an open chain → `delayed` until then, no attempt spent.
 */
export class JobOutcomes {
  private readonly unpricedModels = new Set<string>();

  constructor(private readonly deps: { config: Config; logger: Logger }) {}

  /** A generation's result, validated like persisted data and priced by the model that served it. */
  generated(entry: JobEntry, answer: GenerateResult, latencyMs: number): PromptJobResult {
    return this.completed(entry, {
      text: answer.text,
      finishReason: answer.finishReason,
      provider: answer.provider,
      model: answer.model,
      usage: answer.usage,
      latencyMs,
      ...(answer.modelVersion !== undefined ? { modelVersion: answer.modelVersion } : {}),
    });
  }

  /**
   * An embedding's result. batchEmbedContents reports no usage, so inputTokens is the job's
   * estimate (what the limiter reserved), and the cost is priced from it.
   */
  embedded(entry: JobEntry, served: { provider: string; model: string; embedding: number[]; inputTokens: number }, latencyMs: number): PromptJobResult {
    const usage: TokenUsage = { inputTokens: served.inputTokens, outputTokens: 0, thoughtsTokens: 0, cachedTokens: 0, totalTokens: served.inputTokens };
    return this.completed(entry, {
      text: '',
      finishReason: 'STOP',
      provider: served.provider,
      model: served.model,
      usage,
      latencyMs,
      embedding: served.embedding,
    });
  }

  /**
   * A job answered without a provider call: from the response cache, or from an identical job of
   * the same batch (dedupe). Billed 0 (`cached: true`); the answer's own usage is kept as it was.
   */
  cached(entry: JobEntry, answer: CachedAnswer): PromptJobResult {
    const result = promptJobResultSchema.parse({
      text: answer.text,
      finishReason: answer.finishReason,
      provider: answer.provider,
      model: answer.model,
      cached: true,
      usage: answer.usage,
      costUsd: 0,
      costNanoUsd: 0,
      latencyMs: 0,
      ...(answer.modelVersion !== undefined ? { modelVersion: answer.modelVersion } : {}),
      ...(answer.embedding !== undefined ? { embedding: answer.embedding } : {}),
    });
    this.log(entry.job, entry.data, 'completed', { cached: true, provider: result.provider, servedModel: result.model, savedUsd: answer.costNanoUsd === null ? null : nanoUsdToUsd(answer.costNanoUsd) });
    return result;
  }

  /** What `failed` will do with this error, without doing it (see {@link FailureDisposition}). */
  disposition(entry: JobEntry, error: unknown): FailureDisposition {
    const { job, token, signal } = entry;
    if (signal?.aborted) {
      if (signal.reason === SHUTDOWN_ABORT_REASON && token) return { code: 'PROVIDER_TIMEOUT', final: false, handBack: true };
      return { code: 'CANCELLED', final: true, handBack: false };
    }
    if (isProviderError(error)) return { code: error.code, final: error.disposition === 'fail' || !willRetry(job), handBack: false };
    if (isPromptQueueError(error)) {
      const code = isErrorCode(error.code) ? error.code : 'INTERNAL';
      return { code, final: !(ERROR_CATALOG[code].retryable && willRetry(job)), handBack: false };
    }
    return { code: 'INTERNAL', final: !willRetry(job), handBack: false };
  }

  /**
   * Sends the job back to `delayed` until `untilMs` (epoch ms) without spending an attempt
   * (documented BullMQ pattern: moveToDelayed + DelayedError). A delayed job's marker wakes idle
   * workers exactly when it is due.
   */
  async wait(entry: JobEntry, untilMs: number, reason: WaitReason, fields: Record<string, unknown> = {}): Promise<Error> {
    const { job, token, data } = entry;
    const delayMs = Math.max(0, Math.round(untilMs - Date.now()));
    this.log(job, data, 'waiting', { reason, delayMs, ...fields });
    if (!token) return new RateLimitError();
    try {
      // A wait of hours (a spent daily quota or budget) is shown in the job's status: the caller
      // sees why and until when (`waiting` in GET /v1/jobs/:id). Short waits are not worth a write.
      if (reason === 'daily-quota' || reason === 'budget') {
        await job.updateProgress({ waiting: { reason, until: new Date(Date.now() + delayMs).toISOString() } });
      }
      await job.moveToDelayed(Date.now() + delayMs, token);
      return new DelayedError();
    } catch (error) {
      // Lock lost or Redis hiccup: BullMQ's manual rate-limit path also keeps the attempt.
      this.deps.logger.warn('could not move the job to delayed; it goes back to wait', { jobId: job.id, error: String(error) });
      return new RateLimitError();
    }
  }

  /** Maps a failure to what BullMQ should do with the job; returns the error to throw. */
  async failed(entry: JobEntry, error: unknown, latencyMs: number): Promise<Error> {
    const { job, token, signal, data } = entry;
    if (signal?.aborted) {
      if (signal.reason === SHUTDOWN_ABORT_REASON && token) {
        // Hand the job back without spending an attempt: at once available to other workers.
        try {
          await job.moveToDelayed(Date.now(), token);
          this.log(job, data, 'requeued', { reason: 'shutdown', latencyMs });
          return new DelayedError();
        } catch (moveError) {
          // Redis unreachable or lock lost: stalled-job recovery returns it after lockDuration.
          this.deps.logger.warn('could not hand the job back on shutdown; stalled-job recovery will', { jobId: job.id, error: String(moveError) });
          return new Error(formatFailedReason('PROVIDER_TIMEOUT', 'The worker shut down during the provider call.'));
        }
      }
      this.log(job, data, 'cancelled', { code: 'CANCELLED', latencyMs });
      return new UnrecoverableError(formatFailedReason('CANCELLED', 'The job was cancelled while it was being served.'));
    }

    if (isProviderError(error)) {
      const fields = { code: error.code, httpStatus: error.httpStatus, latencyMs };
      if (error.disposition === 'fail') {
        this.log(job, data, 'failed', fields);
        return new UnrecoverableError(formatFailedReason(error.code, error.message));
      }
      // 'rate-limit' never reaches here (the batch waits it out); treat a stray one as transient.
      this.log(job, data, willRetry(job) ? 'retrying' : 'failed', fields);
      return new Error(formatFailedReason(error.code, error.message));
    }

    if (isPromptQueueError(error)) {
      const retryable = ERROR_CATALOG[error.code].retryable;
      this.log(job, data, retryable && willRetry(job) ? 'retrying' : 'failed', { code: error.code, latencyMs });
      const reason = formatFailedReason(error.code, error.message);
      return retryable ? new Error(reason) : new UnrecoverableError(reason);
    }

    // Our own bug (or Redis failing mid-job): retry, a fixed deploy may still serve it.
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    this.log(job, data, willRetry(job) ? 'retrying' : 'failed', { code: 'INTERNAL', error: message.slice(0, 300), latencyMs });
    return new Error(formatFailedReason('INTERNAL', `Unexpected worker error: ${message.slice(0, 300)}`));
  }

  private completed(entry: JobEntry, fields: Omit<PromptJobResult, 'cached' | 'costUsd' | 'costNanoUsd'>): PromptJobResult {
    const nano = this.priceOf(fields.model, fields.usage);
    // Validated like persisted data: a malformed result must fail here, not in the producer.
    const result = promptJobResultSchema.parse({
      ...fields,
      cached: false,
      costUsd: nano === null ? null : nanoUsdToUsd(nano),
      costNanoUsd: nano,
    });
    this.log(entry.job, entry.data, 'completed', {
      provider: result.provider,
      servedModel: result.model,
      latencyMs: result.latencyMs,
      finishReason: result.finishReason,
      inputTokens: result.usage.inputTokens,
      outputTokens: result.usage.outputTokens,
      thoughtsTokens: result.usage.thoughtsTokens,
      costUsd: result.costUsd,
    });
    return result;
  }

  private priceOf(model: string, usage: TokenUsage): number | null {
    const price = this.deps.config.prices[model];
    if (price) return costNanoUsd(usage, price);
    if (!this.unpricedModels.has(model)) {
      this.unpricedModels.add(model);
      this.deps.logger.warn('no price configured for model; its jobs report costUsd null (add it to CONFIG_FILE prices)', { model });
    }
    return null;
  }

  private log(job: Job, data: Partial<PromptJobData>, outcome: Outcome, extra: Record<string, unknown>): void {
    const level = outcome === 'failed' || outcome === 'retrying' || outcome === 'cancelled' ? 'warn' : outcome === 'waiting' ? 'debug' : 'info';
    this.deps.logger.log(level, `job ${outcome}`, {
      jobId: job.id,
      tenant: data.tenant,
      model: data.model,
      attempt: job.attemptsMade + 1,
      outcome,
      ...extra,
    });
  }
}

/** Whether BullMQ will try again after a retryable failure of this attempt. */
function willRetry(job: Job): boolean {
  return job.attemptsMade + 1 < (job.opts.attempts ?? 1);
}
