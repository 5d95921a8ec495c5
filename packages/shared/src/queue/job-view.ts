import type { Job, JobState } from 'bullmq';
import { ERROR_CATALOG, parseFailedReason, type ErrorCode } from '../errors.js';
import { promptJobResultSchema, type PromptJobResult } from './payloads.js';

/**
 * What `GET /v1/jobs/:id` answers. BullMQ's states are an implementation detail; clients see five
 * statuses, and finished jobs carry either `result` or `error`.
 */
export type JobStatus = 'queued' | 'active' | 'completed' | 'failed' | 'cancelled';

export interface JobView {
  id: string;
  status: JobStatus;
  model: string;
  /** BullMQ's attemptsMade: provider attempts that ended (retries included). */
  attempts: number;
  createdAt: string;
  finishedAt: string | null;
  metadata?: Record<string, string | number | boolean | null>;
  /**
   * A queued job held back for hours, and why: `daily-quota` (every link's requests-per-day quota is
   * spent until Google's reset) or `budget` (the tenant's budget, until its period ends).
   */
  waiting?: { reason: string; until: string };
  result?: {
    text: string;
    finishReason: string;
    provider: string;
    model: string;
    cached: boolean;
    usage: { inputTokens: number; outputTokens: number; thoughtsTokens: number; cachedTokens: number; totalTokens: number };
    costUsd: number | null;
    /** Exact cost, integer nano-USD (1e-9 USD); sum these, never costUsd. 0 for cache hits. */
    costNanoUsd: number | null;
    /** Embed jobs: the embedding vector (`text` is then ''). */
    embedding?: number[];
  };
  error?: { code: ErrorCode; message: string; retryable: boolean };
}

export function isFinished(status: JobStatus): boolean {
  return status === 'completed' || status === 'failed' || status === 'cancelled';
}

/** undefined for `unknown` (the job vanished between reads). */
export function statusOf(state: JobState | 'unknown'): JobStatus | undefined {
  switch (state) {
    case 'active':
    case 'completed':
    case 'failed':
      return state;
    case 'unknown':
      return undefined;
    default:
      // waiting, wait, prioritized, delayed (backoff between attempts), waiting-children
      return 'queued';
  }
}

/** The parts of the payload a view needs, already checked by the caller. */
export interface ViewSource {
  model: string;
  metadata?: Record<string, string | number | boolean | null>;
}

export function jobView(job: Job, status: JobStatus, source: ViewSource): JobView {
  const view: JobView = {
    id: job.id!,
    status,
    model: source.model,
    attempts: job.attemptsMade,
    createdAt: new Date(job.timestamp).toISOString(),
    finishedAt: status === 'completed' || status === 'failed' ? isoOrNull(job.finishedOn) : null,
    ...(source.metadata ? { metadata: source.metadata } : {}),
  };
  const waiting = waitingOf(job.progress);
  if (status === 'queued' && waiting) view.waiting = waiting;
  if (status === 'completed') {
    const parsed = promptJobResultSchema.safeParse(job.returnvalue);
    if (parsed.success) {
      view.result = resultView(parsed.data);
    } else {
      view.error = { code: 'INTERNAL', message: 'The job completed but its result could not be read.', retryable: false };
    }
  } else if (status === 'failed') {
    view.error = parseFailedReason(job.failedReason);
  }
  return view;
}

/**
 * The view of a job at the moment it ends, built from what ended it rather than read back from
 * BullMQ (which records the end a moment later): what webhooks and final events carry. It equals
 * what GET /v1/jobs/:id answers once BullMQ has recorded the end.
 */
export function endedJobView(end: {
  id: string;
  model: string;
  /** attemptsMade once this end is recorded (this attempt included). */
  attempts: number;
  createdAtMs: number;
  finishedAt: Date;
  metadata?: ViewSource['metadata'];
  outcome: 'completed' | 'failed' | 'cancelled';
  result?: PromptJobResult;
  error?: { code: ErrorCode; message: string };
}): JobView {
  const view: JobView = {
    id: end.id,
    status: end.outcome,
    model: end.model,
    attempts: end.attempts,
    createdAt: new Date(end.createdAtMs).toISOString(),
    finishedAt: end.finishedAt.toISOString(),
    ...(end.metadata ? { metadata: end.metadata } : {}),
  };
  if (end.outcome === 'completed' && end.result) view.result = resultView(end.result);
  if (end.outcome === 'failed' && end.error) view.error = { ...end.error, retryable: ERROR_CATALOG[end.error.code].retryable };
  return view;
}

function resultView(result: PromptJobResult): NonNullable<JobView['result']> {
  const { text, finishReason, provider, model, cached, usage, costUsd, costNanoUsd, embedding } = result;
  return { text, finishReason, provider, model, cached, usage, costUsd, costNanoUsd, ...(embedding !== undefined ? { embedding } : {}) };
}

/** The worker's `{ waiting: { reason, until } }` progress note, if the job carries one. */
function waitingOf(progress: unknown): JobView['waiting'] {
  if (typeof progress !== 'object' || progress === null) return undefined;
  const waiting = (progress as { waiting?: unknown }).waiting;
  if (typeof waiting !== 'object' || waiting === null) return undefined;
  const { reason, until } = waiting as { reason?: unknown; until?: unknown };
  return typeof reason === 'string' && typeof until === 'string' ? { reason, until } : undefined;
}

function isoOrNull(epochMs: number | undefined): string | null {
  return epochMs ? new Date(epochMs).toISOString() : null;
}
