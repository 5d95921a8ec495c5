import { DelayedError, RateLimitError, UnrecoverableError } from 'bullmq';
import { formatFailedReason, type Logger, type PromptJobResult } from '@prompt-queue/shared';
import type { Outcome } from '../batching/batcher.js';
import type { JobEntry } from './batch.js';
import { failedReasonOf, type JobFate } from './fate.js';

/**
 * THE one place that tells BullMQ a job's fate (the end itself is recorded before, by the settle
 * step's recorder):
 * - served → the result (BullMQ completes the job);
 * - failed, no retry, or cancelled → UnrecoverableError (failed for good);
 * - failed with a retry left → a plain Error: BullMQ's attempts with the jittered backoff (backoff.ts);
 * - wait → `delayed` until then, no attempt spent; hand-back → `delayed` until now, no attempt spent.
 */
export async function tellBullmq(entry: JobEntry, fate: JobFate, logger: Logger): Promise<Outcome<PromptJobResult>> {
  const { job, token, data } = entry;
  const log = (level: string, outcome: string, fields: Record<string, unknown>): void => {
    logger.log(level, `job ${outcome}`, { jobId: job.id, tenant: data.tenant, model: data.model, attempt: job.attemptsMade + 1, outcome, ...fields });
  };
  switch (fate.kind) {
    case 'served':
      return { ok: true, value: fate.result };
    case 'failed':
      if (!fate.retry) return { ok: false, error: new UnrecoverableError(failedReasonOf(fate)) };
      log('warn', 'retrying', { code: fate.code, latencyMs: fate.latencyMs });
      return { ok: false, error: new Error(failedReasonOf(fate)) };
    case 'cancelled':
      return { ok: false, error: new UnrecoverableError(formatFailedReason('CANCELLED', 'The job was cancelled while it was being served.')) };
    case 'wait': {
      const delayMs = Math.max(0, Math.round(fate.untilMs - Date.now()));
      log('debug', 'waiting', { reason: fate.reason, delayMs, ...fate.fields });
      return { ok: false, error: await moveToDelayed(entry, delayMs, fate.reason, logger) };
    }
    case 'hand-back':
      if (!token) return { ok: false, error: new RateLimitError() };
      try {
        // Back without spending an attempt: at once available to other workers.
        await job.moveToDelayed(Date.now(), token);
        log('info', 'requeued', { reason: 'shutdown' });
        return { ok: false, error: new DelayedError() };
      } catch (error) {
        // Redis unreachable or lock lost: stalled-job recovery returns it after lockDuration.
        logger.warn('could not hand the job back on shutdown; stalled-job recovery will', { jobId: job.id, error: String(error) });
        return { ok: false, error: new Error(formatFailedReason('PROVIDER_TIMEOUT', 'The worker shut down during the provider call.')) };
      }
  }
}

/**
 * Sends the job back to `delayed` for `delayMs` without spending an attempt (documented BullMQ
 * pattern: moveToDelayed + DelayedError). A delayed job's marker wakes idle workers when it is due.
 */
async function moveToDelayed(entry: JobEntry, delayMs: number, reason: string, logger: Logger): Promise<Error> {
  const { job, token } = entry;
  if (!token) return new RateLimitError();
  try {
    // A wait of hours (a spent daily quota or budget) is shown in the job's status: the caller
    // sees why and until when (`waiting` in GET /v1/jobs/:id). Short waits are not worth a write.
    if (reason === 'daily-quota' || reason === 'budget') {
      await job.updateProgress({ waiting: { reason, until: new Date(Date.now() + delayMs).toISOString() } });
    } else if (reason === 'waiting-in-batch') {
      // Its answer comes from a Batch API job (tier-route.ts); `until` is its fallback time.
      await job.updateProgress({ waiting: { reason, until: new Date(Date.now() + delayMs).toISOString() }, tier: 'batch' });
    }
    await job.moveToDelayed(Date.now() + delayMs, token);
    return new DelayedError();
  } catch (error) {
    // Lock lost or Redis hiccup: BullMQ's manual rate-limit path also keeps the attempt.
    logger.warn('could not move the job to delayed; it goes back to wait', { jobId: job.id, error: String(error) });
    return new RateLimitError();
  }
}
