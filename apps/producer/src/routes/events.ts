import { Router, type Request } from 'express';
import {
  isFinalJobEvent,
  isFinished,
  parseStreamId,
  PromptQueueError,
  type Config,
  type JobEvent,
  type JobView,
  type StoredJobEvent,
} from '@prompt-queue/shared';
import { tenantOf } from '../auth.js';
import { methodNotAllowed, sendError, tagRoute } from '../http-errors.js';
import { isJobId } from '../job-ids.js';
import type { JobStore } from '../job-store.js';
import type { LiveEvents } from '../live-events.js';
import { SseStream } from '../sse.js';

export interface EventsRouterDeps {
  config: Config;
  store: JobStore;
  live: LiveEvents;
}

/**
 * Server-Sent Events of the caller's jobs; authentication is applied by the caller.
 * - `GET /v1/events`: every job of the tenant, from now on (or after `Last-Event-ID`).
 * - `GET /v1/jobs/:id/events`: one job, from the start of the retained history (or after
 *   `Last-Event-ID`); the server ends the stream after the job's final event.
 * `id:` is the event's stream id, `event:` its type, `data:` the JobEvent as JSON.
 */
export function eventsRouter({ config, store, live }: EventsRouterDeps): Router {
  const router = Router();
  const heartbeatMs = config.events.heartbeatSeconds * 1_000;

  router
    .route('/events')
    .all(tagRoute)
    .get(async (req, res) => {
      const after = lastEventIdOf(req) ?? '$';
      const stream = new SseStream(res, heartbeatMs);
      const unsubscribe = await live.subscribe(tenantOf(res), after, {
        deliver: (event) => stream.send(sseEvent(event)),
        caughtUp: () => stream.open(),
        end: () => stream.end(),
      });
      res.on('close', unsubscribe);
      if (stream.closed) unsubscribe(); // the client left while we subscribed
    })
    .all(methodNotAllowed(['GET']));

  router
    .route('/jobs/:id/events')
    .all(tagRoute)
    .get(async (req, res) => {
      const tenant = tenantOf(res);
      const id = req.params.id!;
      const resumeFrom = lastEventIdOf(req);
      // Malformed, unknown and other tenants' ids: the same 404 as GET /v1/jobs/:id.
      const view = isJobId(id) ? await store.find(id, tenant) : undefined;
      if (!view) return sendError(res, 404, 'NOT_FOUND', 'No such job.');

      const stream = new SseStream(res, heartbeatMs);
      let unsubscribe = () => {};
      const finish = () => {
        unsubscribe();
        stream.end();
      };
      unsubscribe = await live.subscribe(tenant, resumeFrom ?? '0-0', {
        accepts: (event) => event.jobId === id,
        deliver: (event) => {
          stream.send(sseEvent(event));
          if (isFinalJobEvent(event.type)) finish();
        },
        caughtUp: () => void settleIfFinished(),
        end: () => stream.end(),
      });
      res.on('close', unsubscribe);
      if (stream.closed) unsubscribe(); // the client left while we subscribed

      /**
       * The history holds no final event of this job, yet the job is finished: it ended before its
       * events were kept, or they were trimmed. Its end comes from the job itself (an event without
       * `id:`, as it has no place in the stream), or, for a client resuming after it already had
       * the end, a 204, which tells EventSource to stop reconnecting.
       */
      async function settleIfFinished(): Promise<void> {
        let current: JobView | undefined;
        try {
          current = await store.find(id, tenant);
        } catch {
          current = undefined; // Redis went away: keep the stream; the live events still end it
        }
        if (stream.closed || !current || !isFinished(current.status)) {
          stream.open();
          return;
        }
        if (!stream.opened && resumeFrom !== undefined) {
          unsubscribe();
          res.status(204).end();
          return;
        }
        stream.send({ event: current.status, data: finalEventOf(current, tenant) });
        finish();
      }
    })
    .all(methodNotAllowed(['GET']));

  return router;
}

function sseEvent(event: StoredJobEvent): { id: string; event: string; data: JobEvent } {
  const { id, ...data } = event;
  return { id, event: event.type, data };
}

function finalEventOf(view: JobView, tenant: string): JobEvent {
  return {
    type: view.status as 'completed' | 'failed' | 'cancelled',
    jobId: view.id,
    tenant,
    at: view.finishedAt ?? new Date().toISOString(),
    ...(view.error ? { code: view.error.code } : {}),
    view,
  };
}

/**
 * Where to resume: the `Last-Event-ID` header (EventSource sends it on reconnect, so it wins), else
 * `?lastEventId=` for clients that cannot set headers. A malformed one is a 400: silently starting
 * elsewhere would lose or repeat events.
 */
function lastEventIdOf(req: Request): string | undefined {
  const header = req.get('last-event-id');
  const query = req.query.lastEventId;
  const [path, value] = header !== undefined ? ['Last-Event-ID', header] : ['lastEventId', query];
  if (value === undefined) return undefined;
  const id = typeof value === 'string' ? parseStreamId(value.trim()) : undefined;
  if (id === undefined) {
    const message = 'must be an event id as sent in "id:" (<ms>-<seq>)';
    throw new PromptQueueError('VALIDATION_FAILED', `Invalid request: ${path}: ${message}`, { issues: [{ path, message }] });
  }
  return id;
}
