import express, { Router, type RequestHandler } from 'express';
import { isFinished, PromptQueueError, type Config, type JobView, type WebhookUrlGuard } from '@prompt-queue/shared';
import { tenantOf } from '../auth.js';
import { methodNotAllowed, sendError, tagRoute } from '../http-errors.js';
import { isJobId } from '../job-ids.js';
import type { JobStore } from '../job-store.js';
import { prepareBulkRequest, prepareJobRequest } from '../requests.js';
import { assertWebhookUrlsAllowed, webhookUrlGuard } from '../webhook-urls.js';
import { waitForJob, type JobEvents } from '../wait.js';

export interface JobsRouterDeps {
  config: Config;
  store: JobStore;
  jobEvents: JobEvents;
  /** The SSRF guard of webhook URLs. @defaultValue one with `webhooks.allowPrivate` and the system resolver */
  webhookGuard?: WebhookUrlGuard;
}

/** `/v1/jobs` routes; authentication is applied by the caller. */
export function jobsRouter({ config, store, jobEvents, webhookGuard = webhookUrlGuard(config) }: JobsRouterDeps): Router {
  const router = Router();
  const jsonBody = [requireJson, express.json({ limit: config.producer.maxRequestBytes })];

  router
    .route('/jobs')
    .all(tagRoute)
    .post(...jsonBody, async (req, res) => {
      const job = prepareJobRequest(req.body, {
        config,
        tenant: tenantOf(res),
        now: Date.now(),
        headerIdempotencyKey: req.get('idempotency-key'),
      });
      await assertWebhookUrlsAllowed(webhookGuard, [job], false);
      // 202 for new jobs and idempotent replays alike; a replay reports the job's current status.
      res.status(202).json(await store.enqueue(job));
    })
    .all(methodNotAllowed(['POST']));

  router
    .route('/jobs/bulk')
    .all(tagRoute)
    .post(...jsonBody, async (req, res) => {
      if (req.get('idempotency-key') !== undefined) {
        const message = 'is not used by bulk requests; give each job its own idempotencyKey';
        throw new PromptQueueError('VALIDATION_FAILED', `Invalid request: Idempotency-Key: ${message}`, { issues: [{ path: 'Idempotency-Key', message }] });
      }
      const jobs = prepareBulkRequest(req.body, { config, tenant: tenantOf(res), now: Date.now() });
      await assertWebhookUrlsAllowed(webhookGuard, jobs, true);
      res.status(202).json({ jobs: await store.enqueueBulk(jobs) });
    })
    .all(methodNotAllowed(['POST']));

  router
    .route('/jobs/:id')
    .all(tagRoute)
    .get(async (req, res) => {
      const tenant = tenantOf(res);
      const id = req.params.id!;
      const waitMs = parseWaitSeconds(req.query.wait, config.producer.maxWaitSeconds) * 1_000;
      let view: JobView | undefined = isJobId(id) ? await store.find(id, tenant) : undefined;
      if (view && waitMs > 0 && !isFinished(view.status)) {
        const clientGone = new AbortController();
        const onClose = () => clientGone.abort();
        res.on('close', onClose);
        try {
          view = await waitForJob({
            events: jobEvents,
            jobId: id,
            waitMs,
            signal: clientGone.signal,
            initial: view,
            read: () => store.find(id, tenant),
            finished: (current) => isFinished(current.status),
          });
        } finally {
          res.off('close', onClose);
        }
        if (clientGone.signal.aborted) return;
      }
      if (!view) return jobNotFound(res);
      res.json(view);
    })
    .delete(async (req, res) => {
      const id = req.params.id!;
      const view = isJobId(id) ? await store.cancel(id, tenantOf(res)) : undefined;
      if (!view) return jobNotFound(res);
      jobEvents.notify(id);
      res.json(view);
    })
    .all(methodNotAllowed(['GET', 'DELETE']));

  return router;
}

/** Unknown, malformed and other tenants' ids all get this same answer: existence does not leak. */
function jobNotFound(res: express.Response): void {
  sendError(res, 404, 'NOT_FOUND', 'No such job.');
}

/** Bodies must be JSON (checked before parsing, so other types get 415, not an empty body). */
const requireJson: RequestHandler = (req, res, next) => {
  if (req.is('application/json')) return next();
  sendError(res, 415, 'UNSUPPORTED_MEDIA_TYPE', 'Send the request body as JSON with "Content-Type: application/json".');
};

function parseWaitSeconds(value: unknown, max: number): number {
  if (value === undefined) return 0;
  const seconds = typeof value === 'string' && /^\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
  if (!(seconds >= 0 && seconds <= max)) {
    const message = `must be a number of seconds from 0 to ${max}`;
    throw new PromptQueueError('VALIDATION_FAILED', `Invalid request: wait: ${message}`, { issues: [{ path: 'wait', message }] });
  }
  return seconds;
}
