import express, { Router, type Express } from 'express';
import type { Redis } from 'ioredis';
import type { Config, Logger } from '@prompt-queue/shared';
import { accessLog } from './access-log.js';
import { ApiKeys, authenticate } from './auth.js';
import { errorHandler, notFound } from './http-errors.js';
import { JobStore } from './job-store.js';
import type { PromptQueue } from './queue.js';
import { healthRouter } from './routes/health.js';
import { jobsRouter } from './routes/jobs.js';
import type { JobEvents } from './wait.js';

export interface AppDeps {
  config: Config;
  /** The producer's fail-fast connection (`createRedis(url, 'producer')`), shared with `queue`. */
  redis: Redis;
  queue: PromptQueue;
  jobEvents: JobEvents;
  logger: Logger;
}

/** The HTTP API. Owns no connections: whoever built `deps` closes them (see main.ts). */
export function createApp(deps: AppDeps): Express {
  const { config, redis, queue, jobEvents, logger } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.use(accessLog(logger));
  app.use(healthRouter({ redis }));

  const v1 = Router();
  v1.use(authenticate(ApiKeys.fromConfig(config)));
  v1.use(jobsRouter({ config, store: new JobStore(config, redis, queue), jobEvents }));
  app.use('/v1', v1);

  app.use(notFound);
  app.use(errorHandler(logger));
  return app;
}
