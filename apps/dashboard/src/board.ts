import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { parseFailedReason } from '@prompt-queue/shared';
import type { Queue } from 'bullmq';
import type { Express } from 'express';

/** Where bull-board is mounted; its UI, static assets and JSON API all live under it. */
export const BOARD_PATH = '/queues';

/** The parts of a job the list's name formatter reads (BullMQ's `job.toJSON()`). */
export interface JobSummary {
  name?: string;
  data?: unknown;
  returnvalue?: unknown;
  failedReason?: string;
  finishedOn?: number;
}

/**
 * The name bull-board shows for a job in its lists, with what ops look for at a glance:
 * `generate · acme · gemini-3.6-flash · $0.00052 · 79 tok` once completed (the model that served
 * it, its cost and total tokens, from the job's return value), `… · [CODE]` once failed, and the
 * requested model while pending. Tolerates any shape: job data and results are persisted, and older
 * jobs may lack fields.
 */
export function jobListName(job: JobSummary): string {
  const data = asRecord(job.data);
  const result = asRecord(job.returnvalue);
  const parts = [job.name || 'job'];
  if (typeof data.tenant === 'string') parts.push(data.tenant);
  const model = typeof result.model === 'string' ? result.model : data.model;
  if (typeof model === 'string') parts.push(model);
  if (typeof result.costUsd === 'number') parts.push(formatUsd(result.costUsd));
  else if ('costUsd' in result) parts.push('unpriced');
  const tokens = asRecord(result.usage).totalTokens;
  if (typeof tokens === 'number') parts.push(`${tokens} tok`);
  if (result.cached === true) parts.push('cache hit');
  if (job.failedReason && job.finishedOn && !('model' in result)) parts.push(`[${parseFailedReason(job.failedReason).code}]`);
  return parts.join(' · ');
}

/** USD with enough digits for sub-cent prompt costs: `$0.00052`, `$0.0123`, `$1.25`. */
export function formatUsd(usd: number): string {
  if (usd === 0) return '$0';
  if (Math.abs(usd) >= 1) return `$${usd.toFixed(2)}`;
  return `$${usd.toLocaleString('en-US', { maximumSignificantDigits: 3, maximumFractionDigits: 12 })}`;
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
}

/**
 * bull-board over the given queues at `BOARD_PATH`: counts by state, jobs with their error code and
 * message (BullMQ's failedReason, `[CODE] message`), retry / clean / promote unless `readOnly`.
 */
export function createBoardRouter(queues: Queue[], options: { readOnly: boolean; overviewPath: string }): Express {
  const serverAdapter = new ExpressAdapter().setBasePath(BOARD_PATH);
  const adapters = queues.map((queue) => {
    const adapter = new BullMQAdapter(queue, {
      readOnlyMode: options.readOnly,
      description: options.readOnly ? 'read-only: retry, clean and promote are disabled' : '',
    });
    adapter.setFormatter('name', (job: JobSummary) => jobListName(job));
    return adapter;
  });
  createBullBoard({
    queues: adapters,
    serverAdapter,
    options: {
      uiConfig: {
        boardTitle: 'prompt-queue',
        miscLinks: [{ text: 'Overview', url: options.overviewPath }],
      },
    },
  });
  const router = serverAdapter.getRouter() as Express;
  router.disable('x-powered-by');
  return router;
}
