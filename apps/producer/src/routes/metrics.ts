import { Router } from 'express';
import { requireMetricsToken } from '../bearer.js';
import { methodNotAllowed, tagRoute } from '../http-errors.js';
import type { ProducerMetrics } from '../metrics.js';

/**
 * `GET /metrics` in Prometheus' text format. No tenant key: Prometheus scrapes it. With
 * `METRICS_TOKEN` set it takes `Authorization: Bearer <token>`, compared in constant time.
 */
export function metricsRouter({ metrics, token }: { metrics: ProducerMetrics; token: string | undefined }): Router {
  const router = Router();
  router
    .route('/metrics')
    .all(tagRoute)
    .get(requireMetricsToken(token), async (_req, res) => {
      const { contentType, body } = await metrics.render();
      res.set('Content-Type', contentType).set('Cache-Control', 'no-store').send(body);
    })
    .all(methodNotAllowed(['GET']));
  return router;
}
