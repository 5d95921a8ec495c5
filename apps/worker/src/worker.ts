import { hostname } from 'node:os';
import { MetricsTime, Queue, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  auditObserver,
  BudgetGuard,
  createRedis,
  endedJobView,
  eventsObserver,
  fairnessObserver,
  FleetLimiter,
  JobEndRecorder,
  logObserver,
  parseFailedReason,
  promptJobDataSchema,
  TokenEstimator,
  QueueName,
  UsageLedger,
  usageObserver,
  WebhookOutbox,
  webhookObserver,
  type AuditLog,
  type Config,
  type JobEnd,
  type JobEndObserver,
  type Logger,
  type PromptJobResult,
} from '@prompt-queue/shared';
import { jitteredBackoffStrategy } from './backoff.js';
import { ResponseCache } from './cache/response-cache.js';
import { KeyRing } from './providers/gemini/key-ring.js';
import { metricsObserver, type WorkerMetrics } from './metrics.js';
import { JobResults } from './pipeline/results.js';
import { createPromptProcessor, SHUTDOWN_ABORT_REASON } from './processor.js';
import { ProviderChains, type ChainDeps } from './providers/chain.js';
import { createPluginContext, LinkCredentials } from './providers/credentials.js';
import { LinkPublisher } from './providers/link-publisher.js';
import type { ProviderRegistry } from './providers/registry.js';
import { WorkerStats } from './status.js';
import type { BatchApi } from './tiers/batch-api.js';
import { batchApis } from './tiers/batch-link.js';
import { BatchRunner } from './tiers/batch-runner.js';
import { orphanedAnswerRecorder } from './tiers/orphaned-answers.js';

/** After a forced shutdown aborts the provider calls, how long their hand-back may take, ms. */
const HAND_BACK_GRACE_MS = 2_000;

export interface PromptWorkerDeps {
  config: Config;
  logger: Logger;
  /**
   * Redis for BullMQ's commands, blob reads, the limiter and breaker states (BullMQ opens its own
   * blocking connection next to it). When given, the caller closes it after `close()`; when
   * omitted, the worker opens one from `config.redis.url` and closes it itself.
   */
  connection?: Redis;
  /** Builds each chain link's adapter and breaker; tests wrap them to observe calls. */
  createProvider?: ChainDeps['createProvider'];
  createBreaker?: ChainDeps['createBreaker'];
  /**
   * Gemini keys for links without their own (main.ts passes one that watches its file and SIGHUP).
   * @defaultValue a ring from `gemini.apiKeys` / `gemini.apiKeyFile`, not watched
   */
  keyRing?: KeyRing;
  /**
   * The providers chain links may name (registry.ts); tests add their own plugins with
   * `createRegistry([...BUILTIN_PROVIDERS, plugin])`. @defaultValue the built-in providers
   */
  registry?: ProviderRegistry;
  /**
   * Every link's credential source and the plugins' context; main.ts passes the ones it checked at
   * start (and closes them). @defaultValue built from `keyRing`, closed with the worker
   */
  credentials?: LinkCredentials;
  /** Where the pipeline's counters go (main.ts serves them at `/metrics`). */
  metrics?: WorkerMetrics;
  /** One line per job outcome (main.ts: `createAuditLog(config.audit)`); none when omitted. */
  audit?: AuditLog;
  /** Jitter source for the backoff strategy; tests pin it. */
  random?: () => number;
  /** The Batch API client of a model (tiers/). @defaultValue `@google/genai` on the model's first Gemini link */
  batchApiFor?: (model: string) => BatchApi;
}

export interface PromptWorker {
  worker: Worker<unknown, PromptJobResult>;
  limiter: FleetLimiter;
  chains: ProviderChains;
  budgets: BudgetGuard;
  ledger: UsageLedger;
  cache: ResponseCache | undefined;
  /** The Batch API tier's leased submitter and poller (runs on a timer; tests may `tick()` it). */
  batchRunner: BatchRunner;
  keyRing: KeyRing;
  stats: WorkerStats;
  /**
   * Stops fetching jobs, hands back at once the jobs that have not started a provider call (still
   * gathering into a batch, or waiting for an API key's probe call: moved back to the queue, no
   * attempt spent) and waits for in-flight calls up to `timeoutMs` (default
   * `worker.shutdownTimeoutMs`); a batch settles or releases its limiter reservations before its
   * jobs end. Past the timeout, provider calls still running are
   * aborted and their jobs handed back to the queue (no attempt spent); a job that cannot be handed
   * back (Redis gone) stays locked and returns through BullMQ's stalled-job recovery once
   * `lockDurationMs` passes. Idempotent: later calls return the first call's promise.
   */
  close(timeoutMs?: number): Promise<{ forced: boolean }>;
}

export function createPromptWorker(deps: PromptWorkerDeps): PromptWorker {
  const { config, logger } = deps;
  const ownsConnection = deps.connection === undefined;
  const connection = deps.connection ?? createRedis(config.redis.url, 'worker', 'pq-worker');
  const prefix = config.redis.prefix;

  // The guard keeps a request in our window a little longer than in the provider's (schema.ts).
  const limiter = new FleetLimiter(connection, prefix, {
    windowMs: config.limiter.windowMs + config.limiter.guardMs,
    slowStartRequests: config.limiter.slowStartRequests,
    reportedTtlMs: config.limiter.reportedTtlMs,
  });
  const estimator = new TokenEstimator(connection, prefix);
  const { metrics } = deps;
  const ownsCredentials = deps.credentials === undefined;
  const credentials =
    deps.credentials ??
    new LinkCredentials(
      createPluginContext({
        config,
        logger,
        redis: connection,
        keyRing:
          deps.keyRing ??
          KeyRing.fromConfig(config, logger, { onRejected: (event) => metrics?.apiKeyRejections.inc({ fingerprint: event.fingerprint, reason: event.reason }) }),
      }),
    );
  const { keyRing } = credentials.context;
  const chains = new ProviderChains({
    config,
    logger,
    redis: connection,
    credentials,
    ...(deps.registry ? { registry: deps.registry } : {}),
    // Links are built by jobs, after `publisher` below exists.
    onLinkBuilt: () => void publisher.publish(),
    ...(metrics ? { onBreakerTransition: (link: string, state: 'closed' | 'open' | 'half-open') => metrics.setBreakerState(link, state) } : {}),
    ...(deps.createProvider ? { createProvider: deps.createProvider } : {}),
    ...(deps.createBreaker ? { createBreaker: deps.createBreaker } : {}),
  });
  const budgets = new BudgetGuard(connection, prefix, config.tenants, {
    // A reservation lives as long as the job lock: its batch renews it at half of that (as BullMQ
    // renews the lock), so a killed worker's reservations lapse, charged, with its job locks.
    reservationTtlMs: config.worker.lockDurationMs,
  });
  const ledger = new UsageLedger(connection, prefix);
  const { enabled: cacheEnabled, defaultTtlSeconds, shareAcrossTenants } = config.responseCache;
  const cache = cacheEnabled ? new ResponseCache(connection, prefix, { defaultTtlSeconds, shareAcrossTenants }) : undefined;
  const stats = new WorkerStats();
  const webhooks = new WebhookOutbox(connection, config);
  // Every job end goes through this one recorder; these are its observers (lifecycle/job-ends.ts).
  const observers: JobEndObserver[] = [
    usageObserver(ledger),
    fairnessObserver(prefix),
    eventsObserver(prefix, config.events.historyPerTenant),
    webhookObserver(webhooks),
    logObserver(logger),
    ...(deps.audit ? [auditObserver(deps.audit)] : []),
    ...(metrics ? [metricsObserver(metrics)] : []),
  ];
  const recorder = new JobEndRecorder(connection, observers, logger);
  // The links this worker serves, for the dashboard (which cannot read the plugins).
  const publisher = new LinkPublisher({ redis: connection, prefix, chains, credentials, logger, workerId: `${hostname()}:${process.pid}` }).start();
  // The Batch API tier: collected jobs submitted and polled by whichever worker holds the lease.
  const tierQueue = new Queue(QueueName.Prompts, { connection, prefix });
  const batchRunner = new BatchRunner({
    config,
    logger,
    redis: connection,
    queue: tierQueue,
    apiFor: deps.batchApiFor ?? batchApis(config),
    orphaned: orphanedAnswerRecorder({ results: new JobResults({ config, logger }), ledger, budgets, logger }),
  }).start();
  const { processor, handBackUnstarted } = createPromptProcessor({
    config,
    logger,
    redis: connection,
    limiter,
    estimator,
    chains,
    stats,
    budgets,
    recorder,
    ...(cache ? { cache } : {}),
    ...(metrics ? { metrics } : {}),
  });

  // Fleet pauses after a 429 are per model, in the limiter (reserve() grants nothing while one is
  // in force), so other models keep flowing: no queue-wide BullMQ rate limit, no `limiter` here.
  const worker = new Worker<unknown, PromptJobResult>(QueueName.Prompts, processor, {
    connection,
    prefix,
    name: `${hostname()}:${process.pid}`,
    // Jobs held at once: gathering into batches, in flight, or awaiting their call.
    concurrency: config.worker.concurrency,
    lockDuration: config.worker.lockDurationMs,
    // Check for stalled jobs as often as a lock can expire, so a crashed worker's jobs come back
    // within about two lock durations (BullMQ's default is a fixed 30 s).
    stalledInterval: config.worker.lockDurationMs,
    // A job whose worker dies is retaken, not failed, up to this many times (BullMQ's default of 1
    // failed jobs after a second crash: the chaos suite's kill test lost them).
    maxStalledCount: config.worker.maxStalledCount,
    // BullMQ's own completed/failed counts per minute, kept a day: the dashboard's throughput.
    metrics: { maxDataPoints: MetricsTime.ONE_HOUR * 24 },
    settings: {
      backoffStrategy: jitteredBackoffStrategy({
        baseMs: config.worker.backoffBaseMs,
        maxMs: config.worker.backoffMaxMs,
        ...(deps.random ? { random: deps.random } : {}),
      }),
    },
  });
  // Without a listener an 'error' event would crash the process; BullMQ retries on its own.
  worker.on('error', (error) => logger.error('worker error', { error: error.message }));
  // Jobs BullMQ fails without calling our processor: their worker died more than maxStalledCount
  // times (a deferred failure, applied when a worker next takes them). Their end is recorded here.
  worker.on('failed', (job) => {
    if (!job?.deferredFailure) return;
    recorder.record([stalledEnd(job)]).catch(() => undefined);
  });

  let closing: Promise<{ forced: boolean }> | undefined;
  const close = (timeoutMs = config.worker.shutdownTimeoutMs): Promise<{ forced: boolean }> =>
    (closing ??= (async () => {
      const graceful = worker.close().catch((error: unknown) => {
        logger.warn('error while closing the worker', { error: String(error) });
      });
      // Jobs that have not started a provider call go back to the queue now, unharmed: another
      // worker can take them at once, and no call starts during the drain only to be aborted.
      const handedBack = handBackUnstarted();
      if (handedBack > 0) logger.info('shutdown: jobs that had not started a provider call handed back to the queue', { jobs: handedBack });
      let forced = false;
      if (!(await settlesWithin(graceful, timeoutMs))) {
        forced = true;
        logger.warn('shutdown timeout reached: aborting in-flight provider calls and handing their jobs back', { timeoutMs });
        worker.cancelAllJobs(SHUTDOWN_ABORT_REASON);
        if (!(await settlesWithin(graceful, HAND_BACK_GRACE_MS))) {
          logger.warn('in-flight jobs did not settle; they return to the queue through stalled-job recovery', {
            lockDurationMs: config.worker.lockDurationMs,
          });
        }
      }
      await batchRunner.stop();
      await tierQueue.close().catch(() => undefined);
      chains.shutdown();
      await publisher.stop();
      if (ownsCredentials) credentials.close();
      await webhooks.close().catch(() => undefined);
      if (ownsConnection) await connection.quit().catch(() => connection.disconnect());
      return { forced };
    })());

  return { worker, limiter, chains, budgets, ledger, cache, keyRing, stats, batchRunner, close };
}

async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The end of a job BullMQ failed itself (stalled too often): what its payload and failedReason tell. */
function stalledEnd(job: Job): JobEnd {
  const parsed = promptJobDataSchema.safeParse(job.data);
  const data = parsed.success ? parsed.data : undefined;
  const model = data?.model ?? 'unknown';
  const at = new Date(job.finishedOn ?? Date.now());
  const { code, message } = parseFailedReason(job.failedReason);
  const error = { code, message };
  return {
    jobId: job.id ?? '',
    tenant: data?.tenant ?? 'unknown',
    model,
    priority: data?.priority,
    outcome: 'failed',
    provider: 'none',
    servedModel: model,
    error,
    latencyMs: 0,
    attempts: job.attemptsMade,
    view: endedJobView({ id: job.id ?? '', model, attempts: job.attemptsMade, createdAtMs: job.timestamp, finishedAt: at, ...(data?.metadata ? { metadata: data.metadata } : {}), outcome: 'failed', error }),
    ...(data?.webhook ? { webhook: data.webhook } : {}),
    at,
  };
}
