import express, { Router, type Express } from 'express';
import type { Redis } from 'ioredis';
import {
  auditObserver,
  BudgetGuard,
  eventsObserver,
  fairnessObserver,
  JobEndRecorder,
  logObserver,
  UsageLedger,
  usageObserver,
  WebhookOutbox,
  webhookObserver,
  type AuditLog,
  type Config,
  type Logger,
} from '@prompt-queue/shared';
import { accessLog } from './access-log.js';
import { ApiKeys, authenticate } from './auth.js';
import { errorHandler, notFound } from './http-errors.js';
import { JobStore } from './job-store.js';
import type { LiveEvents } from './live-events.js';
import { ProducerMetrics } from './metrics.js';
import type { PromptQueue } from './queue.js';
import { ScalingReader } from './scaling/read.js';
import { eventsRouter } from './routes/events.js';
import { healthRouter } from './routes/health.js';
import { jobsRouter } from './routes/jobs.js';
import { metricsRouter } from './routes/metrics.js';
import { openApiRouter } from './routes/openapi.js';
import { scalingRouter } from './routes/scaling.js';
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
  /** Audit lines for jobs that end here (a cancel of a queued job); none when omitted. */
  audit?: AuditLog;
  /** Where cancelled jobs' webhooks go. @defaultValue an outbox on `redis` */
  webhooks?: WebhookOutbox;
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
  app.use(openApiRouter({ config }));
  app.use(metricsRouter({ metrics, token: config.metrics.token }));
  // For KEDA: no tenant key, METRICS_TOKEN like /metrics.
  app.use(scalingRouter({ redis, queue, reader: new ScalingReader(config, redis, queue), token: config.metrics.token }));

  const v1 = Router();
  v1.use(authenticate(ApiKeys.fromConfig(config)));
  const ledger = new UsageLedger(redis, config.redis.prefix);
  // A job cancelled while queued ends here: recorded by the same recorder as the worker's ends.
  const recorder = new JobEndRecorder(
    redis,
    [
      usageObserver(ledger),
      fairnessObserver(config.redis.prefix),
      eventsObserver(config.redis.prefix, config.events.historyPerTenant),
      webhookObserver(deps.webhooks ?? new WebhookOutbox(redis, config)),
      logObserver(logger),
      ...(deps.audit ? [auditObserver(deps.audit)] : []),
    ],
    logger,
  );
  const store = new JobStore(config, redis, queue, { budgets, recorder, metrics });
  v1.use(jobsRouter({ config, store, jobEvents }));
  v1.use(eventsRouter({ config, store, live: liveEvents }));
  v1.use(usageRouter({ redis, queue, ledger, budgets }));
  app.use('/v1', v1);

  app.use(notFound);
  app.use(errorHandler(logger));
  return app;
}
