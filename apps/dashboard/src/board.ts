import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { displayWebhookUrl, isRedisConnectionError, parseFailedReason, QueueName } from '@prompt-queue/shared';
import type { Queue } from 'bullmq';
import { Router, type Express } from 'express';

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
 * requested model while pending. It starts with the job's kind (`generate`, `embed`) from its data:
 * jobs enqueued before the producer named jobs by kind are all named `generate`. Tolerates any
 * shape: job data and results are persisted, and older jobs may lack fields.
 */
export function jobListName(job: JobSummary): string {
  const data = asRecord(job.data);
  const result = asRecord(job.returnvalue);
  const parts = [typeof data.kind === 'string' && data.kind !== '' ? data.kind : job.name || 'job'];
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

/**
 * The name bull-board shows for a webhook delivery: `job.completed · acme · https://host/path`, and
 * `· [CODE]` once dead-lettered. The URL never with its query string (it may hold a token).
 */
export function deliveryListName(job: JobSummary): string {
  const data = asRecord(job.data);
  const event = asRecord(data.event);
  const parts = [typeof event.type === 'string' ? event.type : job.name || 'delivery'];
  if (typeof data.tenant === 'string') parts.push(data.tenant);
  if (typeof data.url === 'string') parts.push(displayWebhookUrl(data.url));
  if (job.failedReason && job.finishedOn) parts.push(`[${parseFailedReason(job.failedReason).code}]`);
  return parts.join(' · ');
}

/**
 * A delivery's data with `dashboard.redactText`: the job view's answer text and embedding by their
 * size (as prompt jobs' results are), the URL without its query string. Tolerates any shape.
 */
export function redactDeliveryData(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return data;
  const delivery = { ...(data as Record<string, unknown>) };
  if (typeof delivery.url === 'string') delivery.url = displayWebhookUrl(delivery.url);
  const event = asRecord(delivery.event);
  const view = asRecord(event.data);
  if ('result' in view) delivery.event = { ...event, data: { ...view, result: redactReturnValue(view.result) } };
  return delivery;
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

/** What stands in for a redacted string: its length only, so ops still see an empty or huge prompt. */
function redactedText(text: string): string {
  return `[redacted: ${text.length} characters]`;
}

/**
 * Job data as bull-board shows it with `dashboard.redactText`: the text of every part, the system
 * instruction and file URIs replaced by their length; tenant, model, generationConfig, metadata,
 * blob hashes and the rest stay. Tolerates any shape (persisted jobs of older versions, other queues).
 */
export function redactJobData(data: unknown): unknown {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return data;
  const job = { ...(data as Record<string, unknown>) };
  if (typeof job.systemInstruction === 'string') job.systemInstruction = redactedText(job.systemInstruction);
  if (Array.isArray(job.contents)) {
    job.contents = job.contents.map((content: unknown) => {
      const record = asRecord(content);
      if (!Array.isArray(record.parts)) return content;
      return { ...record, parts: record.parts.map(redactPart) };
    });
  }
  return job;
}

function redactPart(part: unknown): unknown {
  const record = asRecord(part);
  if (typeof record.text === 'string') return { ...record, text: redactedText(record.text) };
  const fileData = asRecord(record.fileData);
  if (typeof fileData.fileUri === 'string') return { ...record, fileData: { ...fileData, fileUri: redactedText(fileData.fileUri) } };
  return part;
}

/** A job's return value with `dashboard.redactText`: the answer text and embedding replaced by their size. */
export function redactReturnValue(value: unknown): unknown {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const result = { ...(value as Record<string, unknown>) };
  if (typeof result.text === 'string') result.text = redactedText(result.text);
  if (Array.isArray(result.embedding)) result.embedding = `[redacted: ${result.embedding.length} numbers]`;
  return result;
}

/** bull-board routes that write job data the UI read: with redacted views they would write the redaction back. */
const DATA_WRITES = [
  { method: 'patch', path: `/api/queues/:queueName/:jobId/update-data`, what: 'Editing job data' },
  { method: 'post', path: `/api/queues/:queueName/add`, what: 'Adding (or duplicating) a job' },
] as const;

/**
 * bull-board over the given queues at `BOARD_PATH`: counts by state, jobs with their error code and
 * message (BullMQ's failedReason, `[CODE] message`), retry / clean / promote unless `readOnly`.
 * With `redactText`, job data and return values are served without prompt and answer text (the
 * formatters apply to every job bull-board's API returns), and data edits and new jobs are refused.
 */
export function createBoardRouter(queues: Queue[], options: { readOnly: boolean; redactText: boolean; overviewPath: string }): Router {
  const serverAdapter = new ExpressAdapter().setBasePath(BOARD_PATH);
  const adapters = queues.map((queue) => {
    const adapter = new BullMQAdapter(queue, {
      readOnlyMode: options.readOnly,
      description: options.readOnly ? 'read-only: retry, clean and promote are disabled' : '',
    });
    // Webhook deliveries carry a job view, not a prompt: their own name and redaction.
    const deliveries = queue.name === QueueName.Webhooks;
    adapter.setFormatter('name', (job: JobSummary) => (deliveries ? deliveryListName(job) : jobListName(job)));
    if (options.redactText) {
      adapter.setFormatter('data', deliveries ? redactDeliveryData : redactJobData);
      if (!deliveries) adapter.setFormatter('returnValue', redactReturnValue);
    }
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
  answerRedisErrorsWith503(serverAdapter);
  const board = serverAdapter.getRouter() as Express;
  board.disable('x-powered-by');
  renderWithoutExternalLinks(board);
  const router = Router();
  if (options.redactText) {
    for (const { method, path, what } of DATA_WRITES) {
      router[method](path, (_req, res) => {
        res.status(403).json({
          error: { code: 'TEXT_REDACTED', message: `${what} is disabled while the dashboard redacts prompt text (DASHBOARD_REDACT_TEXT).` },
        });
      });
    }
  }
  router.use(board);
  return router;
}

type BoardErrorHandler = Parameters<ExpressAdapter['setErrorHandler']>[0];

/**
 * bull-board answers any failure of its API with a 500. A Redis that times out or drops the
 * connection gets our usual answer instead: `503 REDIS_UNAVAILABLE`, so the UI and scripts can
 * tell "retry shortly" from a bug. Anything else keeps bull-board's own answer.
 */
function answerRedisErrorsWith503(serverAdapter: ExpressAdapter): void {
  const boardErrors = (serverAdapter as unknown as { errorHandler: BoardErrorHandler | undefined }).errorHandler;
  if (!boardErrors) throw new Error('bull-board set no error handler: check how it answers failures');
  serverAdapter.setErrorHandler((error) => {
    if (!isRedisConnectionError(error)) return boardErrors(error);
    const body = { error: { code: 'REDIS_UNAVAILABLE', message: `Redis did not answer (${error.message}); retry shortly.` } };
    // Its type lists only the statuses bull-board uses itself; its Express adapter sends any.
    return { status: 503, body } as unknown as ReturnType<BoardErrorHandler>;
  });
}

type RenderEngine = (path: string, options: object, callback: (error: unknown, html?: string) => void) => void;

/**
 * bull-board's page links Google Fonts (IBM Plex) from another origin: offline, or wherever the
 * browser may not reach Google, that request fails on every load. Its own template still renders,
 * minus `<link>`s to other origins; its CSS falls back to system fonts. Everything else the page
 * loads comes from the dashboard itself.
 */
function renderWithoutExternalLinks(board: Express): void {
  const render = (board as unknown as { engines: Record<string, RenderEngine | undefined> }).engines['.ejs'];
  if (!render) throw new Error('bull-board no longer renders an .ejs page: check it for links to other origins');
  board.engine('ejs', (path, options, callback) =>
    render(path, options, (error, html) => callback(error, html === undefined ? html : withoutExternalLinks(html))),
  );
}

/** `html` without `<link>` elements whose href points to another origin (`https://…`, `//…`). */
export function withoutExternalLinks(html: string): string {
  return html.replace(/<link\b[^>]*\bhref="(?:https?:)?\/\/[^"]*"[^>]*>\s*/gi, '');
}
