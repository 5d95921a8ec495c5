import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import { QueueName, type Config, type Logger } from '@prompt-queue/shared';
import { Queue } from 'bullmq';
import express, { type Express } from 'express';
import type { Redis } from 'ioredis';
import { basicAuth, dashboardCredentials } from './auth.js';

/** Where bull-board is mounted; its UI, static assets and JSON API all live under it. */
export const BOARD_PATH = '/queues';

export interface DashboardDeps {
  config: Config;
  /** Shared by every queue; created with `createRedis(url, 'worker')`. The caller closes it. */
  connection: Redis;
  logger: Logger;
}

export interface Dashboard {
  app: Express;
  /** Closes the queues (not the shared connection). Idempotent. */
  close(): Promise<void>;
}

/**
 * The dashboard: bull-board over every queue in `QueueName` at `/queues`, `/healthz` and `/readyz`
 * probes, and basic auth in front of everything but the probes. Without credentials it serves unauthenticated,
 * which `main.ts` only allows outside production; this factory refuses it in production too.
 */
export function createApp({ config, connection, logger }: DashboardDeps): Dashboard {
  const credentials = dashboardCredentials(config);
  if (!credentials && config.env === 'production') {
    throw new Error('DASHBOARD_USER and DASHBOARD_PASSWORD are required in production');
  }

  const queues = Object.values(QueueName).map(
    (name) => new Queue(name, { connection, prefix: config.redis.prefix }),
  );
  for (const queue of queues) {
    // Connection errors are reported once by whoever owns the connection; keep them off stderr here.
    queue.on('error', (error) => logger.debug('queue error', { queue: queue.name, error }));
  }

  const serverAdapter = new ExpressAdapter().setBasePath(BOARD_PATH);
  createBullBoard({
    queues: queues.map((queue) => new BullMQAdapter(queue)),
    serverAdapter,
    options: { uiConfig: { boardTitle: 'prompt-queue' } },
  });

  const app = express();
  app.disable('x-powered-by');

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

  if (credentials) app.use(basicAuth(credentials));

  // Placeholder until the overview page exists.
  app.get('/', (_req, res) => res.redirect(302, `${BOARD_PATH}/`));
  const board = serverAdapter.getRouter() as Express;
  board.disable('x-powered-by');
  app.use(BOARD_PATH, board);

  let closing: Promise<void> | undefined;
  return {
    app,
    close() {
      closing ??= Promise.allSettled(queues.map((queue) => queue.close())).then((results) => {
        for (const result of results) {
          if (result.status === 'rejected') logger.warn('closing a queue failed', { error: result.reason as unknown });
        }
      });
      return closing;
    },
  };
}
