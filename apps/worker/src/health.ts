import express, { type Express, type RequestHandler, type Response } from 'express';
import type { Redis } from 'ioredis';
import { requireBearerToken } from './bearer-token.js';

const PING_TIMEOUT_MS = 1_000;

export interface HealthDeps {
  redis: Redis;
  /** True while the BullMQ worker runs (fetches or may fetch jobs). */
  isWorkerRunning(): boolean;
  /** Body of `GET /status` (batches, jobs held, per-link breaker and limiter state); 404 without. */
  status?(): Promise<unknown>;
  /** `GET /metrics` (metricsHandler from metrics.ts); 404 without. */
  metrics?: RequestHandler;
  /**
   * METRICS_TOKEN: when set, `/status` and `/metrics` require `Authorization: Bearer <token>`
   * (they name tenants, links and key fingerprints). The probes stay open. @defaultValue none: open
   */
  token?: string;
}

/**
 * `/healthz`: the process is alive (liveness: never restart a worker for a Redis outage, BullMQ
 * reconnects on its own). `/readyz`: Redis answers PING and the worker is running (readiness).
 * `/status`: what this worker sees, as JSON, for people and scripts (not a probe). `/metrics`:
 * Prometheus text format. Both behind `token` when one is set.
 */
export function createHealthApp({ redis, isWorkerRunning, status, metrics, token }: HealthDeps): Express {
  const app = express();
  const guard = requireBearerToken(token);
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    if (!(await pings(redis))) {
      return sendError(res, 'REDIS_UNAVAILABLE', `Redis did not answer PING within ${PING_TIMEOUT_MS} ms.`);
    }
    if (!isWorkerRunning()) return sendError(res, 'WORKER_NOT_RUNNING', 'The queue worker is not running (starting or shutting down).');
    res.json({ status: 'ready' });
  });
  if (status) {
    app.get('/status', guard, async (_req, res) => {
      try {
        res.json(await status());
      } catch (error) {
        sendError(res, 'REDIS_UNAVAILABLE', `Cannot read the worker status: ${error instanceof Error ? error.message : String(error)}`);
      }
    });
  }
  if (metrics) app.get('/metrics', guard, metrics);
  const routes = ['/healthz', '/readyz', ...(status ? ['/status'] : []), ...(metrics ? ['/metrics'] : [])];
  app.use((_req, res) => sendError(res, 'NOT_FOUND', `Only GET ${routes.join(', ')} are served here.`, 404));
  return app;
}

function sendError(res: Response, code: string, message: string, status = 503): void {
  res.status(status).json({ error: { code, message } });
}

async function pings(redis: Redis): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      redis.ping().then((reply) => reply === 'PONG'),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}
