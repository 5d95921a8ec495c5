import { Router } from 'express';
import type { Redis } from 'ioredis';
import { methodNotAllowed, sendError, tagRoute } from '../http-errors.js';

const PING_TIMEOUT_MS = 1_000;

/**
 * `/healthz`: the process serves HTTP (liveness; never restart us for a Redis outage).
 * `/readyz`: Redis answers, so requests can succeed (readiness). Neither needs auth.
 */
export function healthRouter({ redis }: { redis: Redis }): Router {
  const router = Router();
  router
    .route('/healthz')
    .all(tagRoute)
    .get((_req, res) => {
      res.json({ status: 'ok' });
    })
    .all(methodNotAllowed(['GET']));
  router
    .route('/readyz')
    .all(tagRoute)
    .get(async (_req, res) => {
      if (await pings(redis)) res.json({ status: 'ready' });
      else sendError(res, 503, 'REDIS_UNAVAILABLE', `Redis did not answer PING within ${PING_TIMEOUT_MS} ms.`);
    })
    .all(methodNotAllowed(['GET']));
  return router;
}

async function pings(redis: Redis): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      redis.ping().then((reply) => reply === 'PONG'),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS))),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
