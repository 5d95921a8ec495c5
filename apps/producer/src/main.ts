import { createServer } from 'node:http';
import {
  createAuditLog,
  parseAuditDestination,
  WebhookOutbox,
  DEVELOPMENT_API_KEY,
  assertProducerApiKeys,
  closeRedis,
  createLogger,
  createRedis,
  listen,
  loadConfigOrExit,
  logConnectionState,
  usesDevelopmentApiKey,
  waitForRedis,
} from '@prompt-queue/shared';
import { createApp } from './app.js';
import { LiveEvents } from './live-events.js';
import { ProducerMetrics } from './metrics.js';
import { createPromptQueue } from './queue.js';
import { JobEvents } from './wait.js';

/** How long start-up waits for Redis before serving anyway (503s until Redis is back), ms. */
const STARTUP_REDIS_WAIT_MS = 3_000;
/** Whole shutdown bound, ms; past it the process exits 1. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** How long in-flight requests may take to finish after SIGTERM, ms. */
const HTTP_DRAIN_MS = 5_000;

const config = loadConfigOrExit();
try {
  assertProducerApiKeys(config);
} catch (error) {
  console.error((error as Error).message);
  process.exit(1);
}
const logger = createLogger({ service: 'producer', level: config.logLevel, json: config.env === 'production' });
if (usesDevelopmentApiKey(config)) {
  logger.warn(
    `No API_KEYS configured: accepting the development key for tenant "${DEVELOPMENT_API_KEY.tenant}". Anyone who can reach this port can enqueue jobs. Set API_KEYS before exposing it.`,
  );
}
// A stray rejection from a connection library must not take the API down.
process.on('unhandledRejection', (reason) => logger.error('unhandled rejection', { error: describe(reason) }));

const redis = createRedis(config.redis.url, 'producer', 'pq-producer');
logConnectionState(redis, logger);
const queue = createPromptQueue(config, redis, logger);
const jobEvents = JobEvents.start(config, logger);
const liveEvents = LiveEvents.start(config, redis, logger);
const metrics = new ProducerMetrics([queue]);
const audit = createAuditLog({ destination: parseAuditDestination(config.audit.destination), logPrompts: config.audit.logPrompts });
const webhooks = new WebhookOutbox(redis, config);
const server = createServer(createApp({ config, redis, queue, jobEvents, liveEvents, logger, metrics, audit, webhooks }));

let shuttingDown: Promise<void> | undefined;
const shutdown = (signal: string): Promise<void> => (shuttingDown ??= stop(signal));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));

try {
  // BullMQ sets the queue up (INFO, scripts) on the first `ready`; waiting here makes the first
  // requests fast. If Redis is down we serve anyway: /healthz answers, the rest 503 until it is back.
  await waitForRedis(redis, STARTUP_REDIS_WAIT_MS);
} catch {
  logger.warn('Redis is not reachable yet; answering 503 REDIS_UNAVAILABLE until it is');
}
if (!shuttingDown) {
  const port = await listen(server, config.producer.port).catch((error: unknown) => {
    logger.error(`cannot listen on port ${config.producer.port}`, { error: describe(error) });
    process.exit(1);
  });
  // Scripts and tests parse this exact line.
  console.log(`producer listening on http://127.0.0.1:${port}`);
}

/**
 * Ordered: stop accepting HTTP, answer long-polls, end event streams, drain requests, close the
 * queue, Redis last.
 */
async function stop(signal: string): Promise<void> {
  logger.info('shutting down', { signal });
  const forced = setTimeout(() => {
    logger.error('shutdown took too long; exiting');
    process.exit(1);
  }, SHUTDOWN_TIMEOUT_MS);
  forced.unref();

  const httpClosed = new Promise<void>((resolve) => server.close(() => resolve()));
  // close() ends only connections idle right now; keep-alive connections become idle as their
  // last response goes out, so sweep until the server is closed.
  const idleSweep = setInterval(() => server.closeIdleConnections(), 50);
  server.closeIdleConnections();
  // Wakes waiting long-polls: they answer with the job's current state instead of holding the drain.
  await step('job events', () => jobEvents.close());
  // Event streams never end on their own: end them (clients reconnect to another instance with
  // Last-Event-ID) so they do not hold the drain.
  await step('live events', () => liveEvents.close());
  await step(
    'http',
    async () => {
      const drained = await Promise.race([httpClosed.then(() => true), delay(HTTP_DRAIN_MS).then(() => false)]);
      if (!drained) server.closeAllConnections();
    },
    HTTP_DRAIN_MS + 1_000,
  );
  clearInterval(idleSweep);
  await step('queue', () => queue.close());
  await step('webhook outbox', () => webhooks.close());
  await step('audit log', () => audit.close());
  await step('redis', () => closeRedis(redis));
  clearTimeout(forced);
  logger.info('stopped');
  process.exit(0);
}

/** Runs one shutdown step; a failing step is logged and the next one still runs. */
async function step(name: string, action: () => Promise<unknown>, timeoutMs = 3_000): Promise<void> {
  const started = Date.now();
  try {
    const done = await Promise.race([action().then(() => true), delay(timeoutMs).then(() => false)]);
    if (!done) logger.warn(`shutdown step timed out: ${name}`);
    else logger.debug(`shutdown step done: ${name}`, { ms: Date.now() - started });
  } catch (error) {
    logger.warn(`shutdown step failed: ${name}`, { error: describe(error) });
  }
}




function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
