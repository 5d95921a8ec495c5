import express, { Router, type Express } from 'express';
import type { Redis } from 'ioredis';
import { BudgetGuard, UsageLedger, type Config, type Logger } from '@prompt-queue/shared';
import { accessLog } from './access-log.js';
import { ApiKeys, authenticate } from './auth.js';
import { errorHandler, notFound } from './http-errors.js';
import { JobStore } from './job-store.js';
import type { LiveEvents } from './live-events.js';
import { ProducerMetrics } from './metrics.js';
import type { PromptQueue } from './queue.js';
import { eventsRouter } from './routes/events.js';
import { healthRouter } from './routes/health.js';
import { jobsRouter } from './routes/jobs.js';
import { metricsRouter } from './routes/metrics.js';
import { usageRouter } from './routes/usage.js';
import type { JobEvents } from './wait.js';

export interface AppDeps {
  config: Config;
  /** The producer's fail-fast connection (`createRedis(url, 'producer')`), shared with `queue`. */
  redis: Redis;
  queue: PromptQueue;
  jobEvents: JobEvents;
  /** The one reader behind every Server-Sent Events response (`LiveEvents.start`). */
  liveEvents: LiveEvents;
  logger: Logger;
  /** Prometheus metrics served at `/metrics`. @defaultValue a new registry with process metrics */
  metrics?: ProducerMetrics;
}

/** The HTTP API. Owns no connections: whoever built `deps` closes them (see main.ts). */
export function createApp(deps: AppDeps): Express {
  const { config, redis, queue, jobEvents, liveEvents, logger } = deps;
  const metrics = deps.metrics ?? new ProducerMetrics([queue]);
  const budgets = new BudgetGuard(redis, config.redis.prefix, config.tenants);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use(metrics.middleware());
  app.use(accessLog(logger));
  app.use(healthRouter({ redis }));
  app.use(metricsRouter({ metrics, token: config.metrics.token }));

  const v1 = Router();
  v1.use(authenticate(ApiKeys.fromConfig(config)));
  const store = new JobStore(config, redis, queue, { budgets, metrics });
  v1.use(jobsRouter({ config, store, jobEvents }));
  v1.use(eventsRouter({ config, store, live: liveEvents }));
  v1.use(usageRouter({ redis, queue, ledger: new UsageLedger(redis, config.redis.prefix), budgets }));
  app.use('/v1', v1);

  app.use(notFound);
  app.use(errorHandler(logger));
  return app;
}
