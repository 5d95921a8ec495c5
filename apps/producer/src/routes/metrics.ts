import { createHash, timingSafeEqual } from 'node:crypto';
import { Router } from 'express';
import { methodNotAllowed, sendError, tagRoute } from '../http-errors.js';
import type { ProducerMetrics } from '../metrics.js';

/**
 * `GET /metrics` in Prometheus' text format. No tenant key: Prometheus scrapes it. With
 * `METRICS_TOKEN` set it takes `Authorization: Bearer <token>`, compared in constant time.
 */
export function metricsRouter({ metrics, token }: { metrics: ProducerMetrics; token: string | undefined }): Router {
  const router = Router();
  const expected = token === undefined ? undefined : sha256(token);
  router
    .route('/metrics')
    .all(tagRoute)
    .get(async (req, res) => {
      if (expected) {
        const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.get('authorization') ?? '');
        if (!match || !timingSafeEqual(sha256(match[1]!), expected)) {
          res.set('WWW-Authenticate', 'Bearer');
          sendError(res, 401, 'UNAUTHORIZED', 'Send the metrics token as "Authorization: Bearer <token>".');
          return;
        }
      }
      const { contentType, body } = await metrics.render();
      res.set('Content-Type', contentType).set('Cache-Control', 'no-store').send(body);
    })
    .all(methodNotAllowed(['GET']));
  return router;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
