import { Router } from 'express';
import type { Redis } from 'ioredis';
import { requireMetricsToken } from '../bearer.js';
import { methodNotAllowed, tagRoute } from '../http-errors.js';
import type { PromptQueue } from '../queue.js';
import { assertRedisAvailable } from '../redis-availability.js';
import type { ScalingResponse } from '../responses.js';
import type { ScalingReader } from '../scaling/read.js';

/**
 * `GET /scaling`: the backlog of the prompts queue and the worker count it and the quota call for
 * (`recommendedWorkers`), as JSON for KEDA's metrics-api scaler (docs/running-at-scale.md). No
 * tenant key: the autoscaler calls it. Behind `METRICS_TOKEN` like `/metrics`. While Redis is
 * down it answers 503, and KEDA applies the ScaledObject's fallback.
 */
export function scalingRouter(deps: { redis: Redis; queue: PromptQueue; reader: ScalingReader; token: string | undefined }): Router {
  const { redis, queue, reader, token } = deps;
  const router = Router();
  router
    .route('/scaling')
    .all(tagRoute)
    .get(requireMetricsToken(token), async (_req, res) => {
      await assertRedisAvailable(redis, queue);
      const reading: ScalingResponse = await reader.read();
      res.set('Cache-Control', 'no-store').json(reading);
    })
    .all(methodNotAllowed(['GET']));
  return router;
}
