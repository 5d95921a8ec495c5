import { dashboardRedactsText, QueueName, READ_TIMEOUT_MS, type Config, type Logger } from '@prompt-queue/shared';
import { Queue } from 'bullmq';
import express, { type ErrorRequestHandler, type Express } from 'express';
import type { Redis } from 'ioredis';
import { configuredAuth, requireAuth, type DashboardAuth } from './auth.js';
import { BOARD_PATH, createBoardRouter } from './board.js';
import { requireSameOrigin } from './csrf.js';
import { OverviewSource } from './overview/collect.js';
import { overviewRouter } from './overview/router.js';
import { RedisHealth } from './redis-health.js';

export { BOARD_PATH } from './board.js';

export interface DashboardDeps {
  config: Config;
  /**
   * Shared by every queue; created with `createRedis(url, 'reader')`, so that no read waits for
   * Redis longer than READ_TIMEOUT_MS. The caller closes it.
   */
  connection: Redis;
  logger: Logger;
  /**
   * Who may sign in. Defaults to the configured credentials (`DASHBOARD_USER`/`DASHBOARD_PASSWORD`,
   * `DASHBOARD_TOKEN`); `main.ts` passes generated ones in development when none are configured.
   */
  auth?: DashboardAuth;
}

export interface Dashboard {
  app: Express;
  /** Reads the overview's numbers (what `GET /api/overview` answers). */
  overview: OverviewSource;
  /** Closes the queues (not the shared connection). Idempotent. */
  close(): Promise<void>;
}

/**
 * The dashboard: the overview at `/` (page, `/api/overview`, `/assets`), bull-board over every
 * queue in `QueueName` at `/queues`, and `/healthz` and `/readyz` probes. Everything but the probes
 * requires credentials (no anonymous mode), and every state-changing request must come from the
 * dashboard's own origin (CSRF).
 */
export function createApp({ config, connection, logger, auth = configuredAuth(config) }: DashboardDeps): Dashboard {
  if (!auth) {
    throw new Error('dashboard credentials are required: set DASHBOARD_USER and DASHBOARD_PASSWORD (or DASHBOARD_TOKEN)');
  }

  const queues = new Map(
    Object.values(QueueName).map(
      (name) =>
        // No version check: BullMQ sends it (INFO) once, as the connection first comes up, and keeps
        // its failure for good, so a Redis that hangs at that moment would break every later read.
        // The workers check the version; reads fall back to scripts that work on any version.
        [name, new Queue(name, { connection, prefix: config.redis.prefix, skipVersionCheck: true })] as const,
    ),
  );
  for (const queue of queues.values()) {
    // Connection errors are reported once by whoever owns the connection; keep them off stderr here.
    queue.on('error', (error) => logger.debug('queue error', { queue: queue.name, error }));
  }
  const health = new RedisHealth(connection);
  const overview = new OverviewSource({ config, connection, queues, health });

  const app = express();
  app.disable('x-powered-by');
  // Behind a TLS-terminating proxy the scheme the browser used is only in X-Forwarded-Proto; the
  // CSRF check needs it. Trusted only when configured: otherwise any client could claim one.
  if (config.dashboard.trustProxy) app.set('trust proxy', true);
  app.use((_req, res, next) => {
    // No page of ours may be framed: a framed board could be clicked through (clickjacking).
    res.set('X-Frame-Options', 'DENY').set('X-Content-Type-Options', 'nosniff').set('Referrer-Policy', 'same-origin');
    next();
  });

  // Before auth: orchestrators probe these without credentials. They reveal only up/down.
  // Liveness: the process serves HTTP.
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  // Readiness: Redis is reachable, so the board can show something.
  app.get('/readyz', (_req, res) => {
    const ready = connection.status === 'ready';
    res.status(ready ? 200 : 503).json({ status: ready ? 'ok' : 'unavailable', redis: ready ? 'up' : 'down' });
  });

  app.use(requireAuth(auth));
  app.use(requireSameOrigin());

  app.use(overviewRouter(overview, { boardPath: BOARD_PATH }));
  // bull-board's API reads Redis through BullMQ, which waits for a connection it never had: while
  // the connection is down, answer at once instead.
  app.use(`${BOARD_PATH}/api`, async (_req, res, next) => {
    if (await health.connectedWithin(READ_TIMEOUT_MS)) return next();
    const state = health.state;
    const since = state.status === 'unavailable' ? ` since ${new Date(state.since).toISOString()} (${state.reason})` : '';
    res.status(503).json({ error: { code: 'REDIS_UNAVAILABLE', message: `Redis unavailable${since}; retry shortly.` } });
  });
  app.use(
    BOARD_PATH,
    createBoardRouter([...queues.values()], { readOnly: config.dashboard.readOnly, redactText: dashboardRedactsText(config), overviewPath: '/' }),
  );

  const onError: ErrorRequestHandler = (error: unknown, req, res, _next) => {
    logger.error('request failed', { method: req.method, path: req.path, error });
    if (!res.headersSent) res.status(500).json({ error: { code: 'INTERNAL', message: 'The dashboard could not answer.' } });
  };
  app.use(onError);

  let closing: Promise<void> | undefined;
  return {
    app,
    overview,
    close() {
      closing ??= Promise.allSettled([...queues.values()].map((queue) => queue.close())).then((results) => {
        for (const result of results) {
          if (result.status === 'rejected') logger.warn('closing a queue failed', { error: result.reason as unknown });
        }
      });
      return closing;
    },
  };
}
