import { DelayedError, RateLimitError, UnrecoverableError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  ERROR_CATALOG,
  costNanoUsd,
  formatFailedReason,
  getBlobsBase64,
  isPromptQueueError,
  isProviderError,
  nanoUsdToUsd,
  promptJobDataSchema,
  promptJobResultSchema,
  type Config,
  type Logger,
  type PromptJobData,
  type PromptJobResult,
} from '@prompt-queue/shared';
import type { GenerateRequest, GenerateResult, Provider, ProviderContent, ProviderPart } from './providers/provider.js';

/** Abort reason the worker uses on a forced shutdown: the job goes back to the queue, unharmed. */
export const SHUTDOWN_ABORT_REASON = 'worker-shutdown';

export interface ProcessorDeps {
  config: Config;
  logger: Logger;
  provider: Provider;
  /** Reads image blobs. */
  redis: Redis;
  /**
   * Stops every worker of the queue from taking jobs for `ms` (a 429 is a fleet-wide condition:
   * the quota is per project and model, not per process). See worker.ts for how.
   */
  pauseQueue(ms: number): Promise<void>;
}

/**
 * BullMQ's processor signature. It declares all three parameters on purpose: BullMQ only creates the
 * per-job AbortSignal when `processor.length >= 3`.
 */
export type PromptProcessor = (job: Job, token: string | undefined, signal: AbortSignal | undefined) => Promise<PromptJobResult>;

type Outcome = 'completed' | 'failed' | 'retrying' | 'rate-limited' | 'requeued' | 'cancelled';

/**
 * Serves one prompt job: parse → resolve images → one provider call → result; or turns the failure
 * into the BullMQ control flow its disposition asks for. A micro-batcher (next issue) can wrap
 * `buildRequest` / `toJobResult` around a batched provider call and reuse `settle`.
 */
export function createPromptProcessor(deps: ProcessorDeps): PromptProcessor {
  const { config, logger, provider } = deps;
  const unpricedModels = new Set<string>();

  const log = (job: Job, data: Partial<PromptJobData>, outcome: Outcome, extra: Record<string, unknown>): void => {
    const level = outcome === 'completed' || outcome === 'requeued' ? 'info' : 'warn';
    logger.log(level, `job ${outcome}`, {
      jobId: job.id,
      tenant: data.tenant,
      model: data.model,
      attempt: job.attemptsMade + 1,
      outcome,
      ...extra,
    });
  };

  function priceOf(model: string, usage: GenerateResult['usage']): number | null {
    const price = config.prices[model];
    if (price) return costNanoUsd(usage, price);
    if (!unpricedModels.has(model)) {
      unpricedModels.add(model);
      logger.warn('no price configured for model; its jobs report costUsd null (add it to CONFIG_FILE prices)', { model });
    }
    return null;
  }

  function toJobResult(answer: GenerateResult, latencyMs: number): PromptJobResult {
    const nano = priceOf(answer.model, answer.usage);
    // Validated like persisted data: a malformed result must fail here, not in the producer.
    return promptJobResultSchema.parse({
      text: answer.text,
      finishReason: answer.finishReason,
      provider: answer.provider,
      model: answer.model,
      cached: false,
      usage: answer.usage,
      costUsd: nano === null ? null : nanoUsdToUsd(nano),
      costNanoUsd: nano,
      latencyMs,
      ...(answer.modelVersion !== undefined ? { modelVersion: answer.modelVersion } : {}),
    });
  }

  /** Maps a failure to what BullMQ should do with the job; returns the error to throw. */
  async function settle(error: unknown, job: Job, token: string | undefined, signal: AbortSignal | undefined, data: PromptJobData, latencyMs: number): Promise<Error> {
    if (signal?.aborted) {
      if (signal.reason === SHUTDOWN_ABORT_REASON && token) {
        // Documented BullMQ pattern to hand a job back without spending an attempt: it is
        // immediately available to the other workers, no wait for the lock to expire.
        try {
          await job.moveToDelayed(Date.now(), token);
          log(job, data, 'requeued', { reason: 'shutdown', latencyMs });
          return new DelayedError();
        } catch (moveError) {
          // Redis unreachable or lock lost: stalled-job recovery returns it after lockDuration.
          logger.warn('could not hand the job back on shutdown; stalled-job recovery will', { jobId: job.id, error: String(moveError) });
          return new Error(formatFailedReason('PROVIDER_TIMEOUT', 'The worker shut down during the provider call.'));
        }
      }
      log(job, data, 'cancelled', { code: 'CANCELLED', latencyMs });
      return new UnrecoverableError(formatFailedReason('CANCELLED', 'The job was cancelled while it was being served.'));
    }

    if (isProviderError(error)) {
      const fields = { code: error.code, httpStatus: error.httpStatus, latencyMs };
      switch (error.disposition) {
        case 'fail':
          log(job, data, 'failed', fields);
          return new UnrecoverableError(formatFailedReason(error.code, error.message));
        case 'backoff':
          log(job, data, willRetry(job) ? 'retrying' : 'failed', fields);
          return new Error(formatFailedReason(error.code, error.message));
        case 'rate-limit': {
          // A 429 spends no attempt and pauses the whole fleet for the provider's retry delay.
          // 1. pauseQueue sets BullMQ's queue rate-limit key: every worker's fetch waits it out
          //    (worker.ts explains the `limiter` this needs). Other jobs would only 429 too.
          // 2. This job waits the same delay in `delayed`, handed back with skipAttempt. We do not
          //    throw RateLimitError (which moves it straight back to `wait`): for a prioritized
          //    job that adds no wake-up marker, so idle workers blocked on the marker notice the
          //    end of the pause only after drainDelay (5 s, measured), not at retryAfterMs. A
          //    delayed job's marker wakes them exactly when it is due.
          const retryAfterMs = error.retryAfterMs ?? 1_000;
          await deps.pauseQueue(retryAfterMs);
          log(job, data, 'rate-limited', { ...fields, retryAfterMs });
          if (!token) return new RateLimitError();
          try {
            await job.moveToDelayed(Date.now() + retryAfterMs, token);
            return new DelayedError();
          } catch {
            // Lock lost or Redis hiccup: BullMQ's own manual rate-limit path still keeps the attempt.
            return new RateLimitError();
          }
        }
      }
    }

    if (isPromptQueueError(error)) {
      const retryable = ERROR_CATALOG[error.code].retryable;
      log(job, data, retryable && willRetry(job) ? 'retrying' : 'failed', { code: error.code, latencyMs });
      const reason = formatFailedReason(error.code, error.message);
      return retryable ? new Error(reason) : new UnrecoverableError(reason);
    }

    // Our own bug (or Redis failing mid-job): retry, a fixed deploy may still serve it.
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    log(job, data, willRetry(job) ? 'retrying' : 'failed', { code: 'INTERNAL', error: message.slice(0, 300), latencyMs });
    return new Error(formatFailedReason('INTERNAL', `Unexpected worker error: ${message.slice(0, 300)}`));
  }

  return async function processPromptJob(job: Job, token: string | undefined, signal: AbortSignal | undefined): Promise<PromptJobResult> {
    const parsed = promptJobDataSchema.safeParse(job.data);
    if (!parsed.success) {
      const data = job.data as Partial<PromptJobData> | undefined;
      const where = parsed.error.issues.slice(0, 3).map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
      log(job, { tenant: String(data?.tenant ?? ''), model: String(data?.model ?? '') }, 'failed', { code: 'INVALID_JOB' });
      throw new UnrecoverableError(formatFailedReason('INVALID_JOB', `The job payload is not a valid v1 prompt job (${where.join('; ')})`));
    }
    const data = parsed.data;
    // Latency is the provider call's alone (the result's `latencyMs`), not the blob reads.
    let started = performance.now();
    try {
      const request = await buildRequest(deps.redis, config.redis.prefix, data);
      started = performance.now();
      const answer = await provider.generate(request, signal ? { signal } : {});
      const latencyMs = Math.round(performance.now() - started);
      const result = toJobResult(answer, latencyMs);
      log(job, data, 'completed', {
        latencyMs,
        finishReason: result.finishReason,
        inputTokens: result.usage.inputTokens,
        outputTokens: result.usage.outputTokens,
        thoughtsTokens: result.usage.thoughtsTokens,
        costUsd: result.costUsd,
      });
      return result;
    } catch (error) {
      throw await settle(error, job, token, signal, data, Math.round(performance.now() - started));
    }
  };
}

/** Whether BullMQ will try again after a retryable failure of this attempt. */
function willRetry(job: Job): boolean {
  return job.attemptsMade + 1 < (job.opts.attempts ?? 1);
}

/**
 * The provider request of a job: stored parts as Gemini parts, each `{blob}` replaced by its bytes
 * as base64 `inlineData`. A blob that expired fails the job (IMAGE_EXPIRED, from getBlobsBase64).
 */
export async function buildRequest(redis: Redis, prefix: string, data: PromptJobData): Promise<GenerateRequest> {
  const shas = data.contents.flatMap((content) => content.parts.flatMap((part) => ('blob' in part ? [part.blob.sha256] : [])));
  const images = await getBlobsBase64(redis, prefix, shas);
  let next = 0;
  const contents: ProviderContent[] = data.contents.map((content) => ({
    role: content.role,
    parts: content.parts.map((part): ProviderPart => {
      if ('blob' in part) return { inlineData: { mimeType: part.blob.mimeType, data: images[next++]! } };
      return part;
    }),
  }));
  return {
    model: data.model,
    contents,
    ...(data.systemInstruction !== undefined ? { systemInstruction: data.systemInstruction } : {}),
    ...(data.generationConfig !== undefined ? { generationConfig: data.generationConfig } : {}),
  };
}
