import { createServer } from 'node:http';
import { Queue } from 'bullmq';
import {
  collectQueueDepth,
  createAuditLog,
  closeRedis,
  createLogger,
  createRedis,
  listen,
  logConnectionState,
  onStopSignals,
  parseAuditDestination,
  QueueName,
  within,
} from '@prompt-queue/shared';
import { FleetHistory } from './fleet-history.js';
import { createHealthApp } from './health.js';
import { configuredLinks } from './providers/chain.js';
import { createPluginContext, LinkCredentials } from './providers/credentials.js';
import { KeyRing } from './providers/gemini/key-ring.js';
import { installProviderHttpPool } from './providers/http-pool.js';
import { loadWorkerConfigOrExit } from './providers/link-config.js';
import { createWorkerMetrics, metricsHandler } from './metrics.js';
import { statusReport } from './status.js';
import { createWebhookWorker } from './webhooks/delivery-worker.js';
import { createPromptWorker } from './worker.js';

// Wiring only: configuration, connections, the worker, the health server, ordered shutdown.

/** Past worker.shutdownTimeoutMs plus this, the process exits 1 whatever is still pending, ms. */
const SHUTDOWN_SLACK_MS = 5_000;

// The shared loader, then every chain link checked by its provider plugin's schema.
const config = loadWorkerConfigOrExit();
const logger = createLogger({ service: 'worker', level: config.logLevel, json: config.env === 'production' });
// Before any provider call: every SDK's fetch goes through this process's keep-alive pool.
installProviderHttpPool({ keepAliveMs: config.worker.providerKeepAliveMs });

let shuttingDown: Promise<void> | undefined;
const shutdown = (reason: string, exitCode = 0): Promise<void> => (shuttingDown ??= stop(reason, exitCode));
// One Ctrl-C drains: SIGINT from the terminal and SIGTERM from `npm start` arriving together are
// one request. A signal a second or more later forces the exit.
onStopSignals({
  stop: (signal) => void shutdown(signal),
  repeated: (signal, sinceFirstMs) =>
    logger.info(`${signal} ${sinceFirstMs} ms after the first stop signal: same request, still draining (signal again to force)`),
  force: (signal) => {
    logger.warn(`another ${signal}: exiting now; in-flight jobs return through stalled-job recovery`);
    process.exit(1);
  },
});
process.on('uncaughtException', (error) => {
  logger.error('uncaught exception', { error: describe(error), stack: error.stack });
  void shutdown('uncaughtException', 1);
});
process.on('unhandledRejection', (reason) => {
  logger.error('unhandled rejection', { error: describe(reason) });
  void shutdown('unhandledRejection', 1);
});

const redis = createRedis(config.redis.url, 'worker', 'pq-worker');
logConnectionState(redis, logger);
// For /metrics only (queue depth by state); the worker's own connection does the work.
const depthQueue = new Queue(QueueName.Prompts, { connection: redis, prefix: config.redis.prefix });
const knownModels = [...new Set([...Object.keys(config.models), ...Object.values(config.chains).flatMap((links) => links.map((link) => link.model))])];
const metrics = createWorkerMetrics(undefined, {
  queueDepth: (gauge) => collectQueueDepth(gauge, [depthQueue]),
  limiterUtilization: async (gauge) => {
    gauge.reset();
    // A scrape must answer while Redis is down or hangs (this connection waits through outages).
    if (redis.status !== 'ready') return;
    await Promise.all(
      promptWorker.chains.all().map(async (link) => {
        const state = await within(promptWorker.limiter.state(link.limitKey, link.limits));
        if (state.rpmLimit > 0) gauge.set({ model: link.model, dimension: 'rpm' }, state.requests / state.rpmLimit);
        if (state.tpmLimit > 0) gauge.set({ model: link.model, dimension: 'tpm' }, state.tokens / state.tpmLimit);
      }),
    );
  },
  tenants: [...new Set([...config.producer.apiKeys.map((entry) => entry.tenant), ...Object.keys(config.tenants), 'dev'])],
  models: knownModels.filter((model) => model !== '$job'),
});
let keyRing: KeyRing;
try {
  keyRing = KeyRing.fromConfig(config, logger, {
    onRejected: (event) => metrics.apiKeyRejections.inc({ fingerprint: event.fingerprint, reason: event.reason }),
  }).watch();
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
}
// Every configured link's credentials (the Gemini links' API keys…), before the worker takes a job.
const credentials = new LinkCredentials(createPluginContext({ config, logger, redis, keyRing }));
try {
  await credentials.check(configuredLinks(config));
} catch (error) {
  console.error(error instanceof Error ? error.message : String(error));
  process.exit(1);
}
const audit = createAuditLog({ destination: parseAuditDestination(config.audit.destination), logPrompts: config.audit.logPrompts });
// Queue depth and provider latencies for the dashboard's charts, kept in Redis for the whole fleet.
const history = new FleetHistory({ redis, prefix: config.redis.prefix, queue: depthQueue, logger });
const promptWorker = createPromptWorker({ config, logger, connection: redis, credentials, metrics: history.observing(metrics), audit });
// Signed webhook deliveries of job ends (docs/webhooks.md): their own queue, same process.
const webhookWorker = createWebhookWorker({ config, logger, connection: redis });
const server = createServer(
  createHealthApp({
    redis,
    isWorkerRunning: () => promptWorker.worker.isRunning() && !shuttingDown,
    status: async () => ({ ...(await statusReport(promptWorker.stats, promptWorker.chains, promptWorker.limiter, redis)), apiKeys: keyRing.describe() }),
    metrics: metricsHandler(metrics.registry),
    token: config.metrics.token,
  }),
);

try {
  await promptWorker.worker.waitUntilReady();
  const port = await listen(server, config.worker.port);
  if (!shuttingDown) {
    logger.info('worker started', {
      concurrency: config.worker.concurrency,
      batching: config.batching,
      chains: Object.keys(config.chains).length > 0 ? Object.keys(config.chains) : ['(default: gemini, the job model)'],
      prefix: config.redis.prefix,
      geminiBaseUrl: config.gemini.baseUrl,
      apiKeyCount: keyRing.size,
      responseCache: config.responseCache.enabled,
      budgetedTenants: Object.keys(config.tenants),
    });
    history.start();
    // Scripts and tests parse this exact line.
    console.log(`worker listening on http://127.0.0.1:${port}`);
  }
} catch (error) {
  logger.error('worker failed to start', { error: describe(error) });
  await shutdown('startup failure', 1);
}

/**
 * Ordered: stop health HTTP, close the worker (in-flight batches finish and settle or release their
 * limiter and budget reservations, bounded), write the last latency samples, stop watching the key
 * file, flush the audit stream, Redis last.
 */
async function stop(reason: string, exitCode: number): Promise<void> {
  logger.info('shutting down', { reason });
  const hardStop = setTimeout(() => {
    logger.error('shutdown took too long; exiting');
    process.exit(1);
  }, config.worker.shutdownTimeoutMs + SHUTDOWN_SLACK_MS);
  hardStop.unref();

  await step('health server', async () => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    await closed;
  });
  await step('worker', async () => {
    const { forced } = await promptWorker.close(config.worker.shutdownTimeoutMs);
    if (forced) logger.warn('worker closed after the shutdown timeout; unfinished jobs were handed back to the queue');
  });
  await step('webhook worker', () => webhookWorker.close());
  await step('fleet history', () => history.stop());
  await step('credentials', async () => {
    credentials.close();
    keyRing.close();
  });
  await step('audit log', () => audit.close());
  await step('metrics queue', () => depthQueue.close());
  await step('redis', () => closeRedis(redis));
  clearTimeout(hardStop);
  logger.info('stopped', { reason });
  process.exit(exitCode);
}

/** Runs one shutdown step; a failing step is logged and the next one still runs. */
async function step(name: string, action: () => Promise<unknown>): Promise<void> {
  try {
    await action();
  } catch (error) {
    logger.warn(`shutdown step failed: ${name}`, { error: describe(error) });
  }
}




function describe(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}
