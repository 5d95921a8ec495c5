// Wiring only: config, logger, Redis, the app, the HTTP server, and an ordered shutdown.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createLogger, createRedis, loadConfigOrExit } from '@prompt-queue/shared';
import { createApp } from './app.js';
import { configuredAuth, generatedCredentials } from './auth.js';

const config = loadConfigOrExit();
const logger = createLogger({ service: 'dashboard', level: config.logLevel, json: config.env === 'production' });

let auth = configuredAuth(config);
if (!auth) {
  if (config.env === 'production') {
    console.error(
      'dashboard: refusing to start in production without credentials. Set DASHBOARD_USER and DASHBOARD_PASSWORD (or DASHBOARD_TOKEN).',
    );
    process.exit(1);
  }
  // No anonymous access, even in development: a password for this run, printed once.
  const basic = generatedCredentials();
  auth = { basic };
  process.stdout.write(
    `dashboard credentials (generated for this run; set DASHBOARD_USER and DASHBOARD_PASSWORD to choose): user ${basic.user} password ${basic.password}\n`,
  );
}

const connection = createRedis(config.redis.url, 'reader', 'pq-dashboard');
let redisDown = false;
connection.on('error', (error: Error) => {
  // ioredis repeats the error on every reconnect attempt; report the outage once.
  if (!redisDown) logger.error('Redis connection error; reconnecting', { error });
  redisDown = true;
});
connection.on('ready', () => {
  if (redisDown) logger.info('Redis connection restored');
  redisDown = false;
});

const dashboard = createApp({ config, connection, logger, auth });
const server = createServer(dashboard.app);

server.once('error', (error) => {
  logger.error('HTTP server failed', { error });
  void shutdown('server error', 1);
});
server.listen(config.dashboard.port, () => {
  const { port } = server.address() as AddressInfo;
  // Scripts and tests parse this exact line; logs go to stderr.
  process.stdout.write(`dashboard listening on http://127.0.0.1:${port}\n`);
});

let stopping: Promise<void> | undefined;

/** Stop HTTP, then the queues, then Redis; every step runs even when an earlier one fails. */
function shutdown(reason: string, exitCode = 0): Promise<void> {
  stopping ??= (async () => {
    logger.info('shutting down', { reason });
    let code = exitCode;
    const step = async (name: string, run: () => Promise<unknown>) => {
      try {
        await run();
        logger.debug(`shutdown: ${name} closed`);
      } catch (error) {
        code = 1;
        logger.error(`shutdown: ${name} failed`, { error });
      }
    };
    await step('http', () => {
      if (!server.listening) return Promise.resolve();
      const closed = new Promise<void>((resolve, reject) => server.close((error) => (error ? reject(error) : resolve())));
      server.closeIdleConnections();
      // Keep-alive sockets of open browser tabs would otherwise hold the close for minutes.
      setTimeout(() => server.closeAllConnections(), 2_000).unref();
      return closed;
    });
    await step('queues', () => dashboard.close());
    await step('redis', async () => {
      // QUIT waits for Redis; while it is unreachable, drop the connection instead of hanging.
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), 2_000).unref());
      const result = await Promise.race([connection.quit().catch(() => 'failed' as const), timeout]);
      if (result !== 'OK') connection.disconnect();
    });
    process.exit(code);
  })();
  return stopping;
}

process.once('SIGTERM', () => void shutdown('SIGTERM'));
process.once('SIGINT', () => void shutdown('SIGINT'));
