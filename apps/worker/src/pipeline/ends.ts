import { endedJobView, type Config, type JobEnd } from '@prompt-queue/shared';
import type { Link } from '../providers/chain.js';
import type { BatchJob } from './batch.js';
import type { FinalFate } from './fate.js';
import { promptText } from './prompt-digest.js';

/** A final fate (served, failed for good, cancelled) as the end the recorder records. */
export function jobEndOf(config: Config, job: BatchJob, fate: FinalFate, links: readonly Link[], at: Date): JobEnd {
  const { data, job: bullJob } = job.entry;
  const outcome = fate.kind === 'served' ? 'completed' : fate.kind;
  const link = fate.kind === 'failed' ? (links.find((candidate) => candidate.id === fate.link) ?? links[0]) : links[0];
  const result = fate.kind === 'served' ? fate.result : undefined;
  const error = fate.kind === 'failed' ? { code: fate.code, message: fate.message } : fate.kind === 'cancelled' ? { code: 'CANCELLED' as const, message: 'The job was cancelled while it was being served.' } : undefined;
  const attempts = bullJob.attemptsMade + 1;
  return {
    jobId: bullJob.id ?? '',
    tenant: data.tenant,
    model: data.model,
    priority: data.priority,
    outcome,
    provider: result?.provider ?? link?.providerName ?? 'none',
    servedModel: result?.model ?? link?.model ?? data.model,
    ...(result ? { result } : {}),
    ...(fate.kind === 'served' && fate.savedNanoUsd !== undefined ? { savedNanoUsd: fate.savedNanoUsd } : {}),
    ...(error ? { error } : {}),
    latencyMs: fate.kind === 'served' ? fate.result.latencyMs : fate.latencyMs,
    attempts,
    promptSha256: job.promptSha256,
    ...(config.audit.logPrompts ? { prompt: promptText(data) } : {}),
    view: endedJobView({
      id: bullJob.id ?? '',
      model: data.model,
      attempts,
      createdAtMs: bullJob.timestamp,
      finishedAt: at,
      ...(data.metadata ? { metadata: data.metadata } : {}),
      outcome,
      ...(result ? { result } : {}),
      ...(error ? { error } : {}),
    }),
    ...(data.webhook ? { webhook: data.webhook } : {}),
    at,
  };
}
