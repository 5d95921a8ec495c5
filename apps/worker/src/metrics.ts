import type { RequestHandler } from 'express';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { QUEUE_DEPTH_METRIC, isErrorCode, type ErrorCode, type JobEndObserver, type QueueDepthGauge } from '@prompt-queue/shared';

/**
 * The worker's Prometheus metrics (issue 4 point 8), served at `GET /metrics` on WORKER_PORT.
 *
 * Conventions: `prompt_queue_` namespace, base units (seconds, USD, tokens), counters end in
 * `_total`, ratios in `_ratio`. Checked with `promtool check metrics` (test/metrics.test.ts).
 *
 * Label values are bounded, or a scrape grows without limit:
 * - `code`: an error code from the catalog (anything else is recorded as INTERNAL), '' on success;
 * - `tenant`, `model`: config-bounded (tenants of API_KEYS, known models and chain models). Pass
 *   `tenants` / `models` to fold anything else into `other` when a label could come from outside;
 * - `provider`, `link`: chain links from the config; `fingerprint`: one per configured key.
 *
 * Cost precision: prom-client counters are float64. Cost is added in USD (nano-USD / 1e9), which
 * stays exact to the nano-dollar up to about $9M per series (2^53 nano-USD) and to well under a
 * micro-dollar long after; counters also restart at 0 with the process. The exact, fleet-wide figures
 * are the integer nano-USD aggregates in Redis (accounting/usage): use these series for rates and
 * alerts, the aggregates for billing.
 */

/**
 * completed / cached (no call: response cache or an identical job of the batch) / failed (for
 * good) / retried (a retryable failure, attempts left) / rate_limited (waiting for quota or a 429
 * pause) / delayed (waiting for a budget period or for an open breaker), no attempt spent.
 */
export type JobOutcome = 'completed' | 'failed' | 'retried' | 'rate_limited' | 'delayed' | 'cached';
/** `flex_shed`: a Flex call shed (503) or late; its job went standard on the same link. */
export type ProviderCallOutcome = 'success' | 'error' | 'rate_limited' | 'timeout' | 'flex_shed';
export type TokenKind = 'input' | 'output' | 'thoughts' | 'cached';
export type CacheResult = 'hit' | 'miss';
export type BreakerState = 'closed' | 'half-open' | 'open';
export type LimiterDimension = 'rpm' | 'tpm';

/** Gauge values of `prompt_queue_breaker_state`. */
export const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, 'half-open': 1, open: 2 };

/** Prefix of prom-client's default process and Node.js metrics. */
export const DEFAULT_METRICS_PREFIX = 'prompt_queue_worker_';
const LINT_FAILING_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Label value used for a tenant or model outside the configured set. */
export const OTHER_LABEL = 'other';

/** 50 ms to 120 s: a fast Flash answer to a long thinking call at the timeout. Seconds. */
export const PROVIDER_DURATION_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120];
/** Quota waits: a few ms of smoothing up to Google's 60 s window and a retry delay on top. Seconds. */
export const LIMITER_WAIT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
/** Jobs per batch (BATCH_SIZE is 16 by default; embeds go up to 100). */
export const BATCH_SIZE_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 100];

export interface WorkerMetricsOptions {
  /**
   * Fills `prompt_queue_queue_jobs` on each scrape, e.g.
   * `(gauge) => collectQueueDepth(gauge, [queue])` from `@prompt-queue/shared` (labels `queue`,
   * `state`, as the producer's). A collector that throws leaves the series empty for that scrape.
   * Without it the series is absent.
   */
  queueDepth?: (gauge: QueueDepthGauge) => Promise<unknown>;
  /**
   * Fills `prompt_queue_limiter_utilization_ratio` on each scrape (e.g. from FleetLimiter.state of
   * every chain link). A collector that throws leaves the series empty for that scrape.
   */
  limiterUtilization?: (gauge: Gauge<'model' | 'dimension'>) => Promise<unknown>;
  /** Process and Node.js metrics under `prompt_queue_worker_`. Off in tests that build many registries. @defaultValue true */
  defaultMetrics?: boolean;
  /** Known tenants; others are recorded as `other`. @defaultValue no folding */
  tenants?: readonly string[];
  /** Known models; others are recorded as `other`. @defaultValue no folding */
  models?: readonly string[];
}

export interface WorkerMetrics {
  readonly registry: Registry;
  /** Jobs finished or sent back, by outcome and error code ('' for completed and cached). */
  readonly jobs: Counter<'outcome' | 'code'>;
  readonly providerRequestDuration: Histogram<'provider' | 'model' | 'outcome'>;
  readonly tokens: Counter<'model' | 'kind'>;
  readonly costUsd: Counter<'tenant' | 'model'>;
  /** What cache hits would have cost, USD. */
  readonly cacheSavedUsd: Counter<'tenant' | 'model'>;
  readonly cacheRequests: Counter<'result'>;
  readonly breakerState: Gauge<'link'>;
  readonly limiterWait: Histogram<'model'>;
  readonly limiterUtilization: Gauge<'model' | 'dimension'>;
  readonly batchSize: Histogram;
  readonly apiKeyRejections: Counter<'fingerprint' | 'reason'>;

  /** One job's outcome; `code` for failures (not in the catalog → INTERNAL). */
  recordJob(outcome: JobOutcome, code?: string): void;
  /** One provider call, `seconds` long. */
  recordProviderCall(provider: string, model: string, outcome: ProviderCallOutcome, seconds: number): void;
  /** Token counts of one answer (zeros are skipped, the series still appear once used). */
  recordTokens(model: string, usage: { inputTokens: number; outputTokens: number; thoughtsTokens: number; cachedTokens: number }): void;
  /** Spend, integer nano-USD (null: the model has no price; nothing recorded). */
  recordCost(tenant: string, model: string, nanoUsd: number | null): void;
  /** Cache lookups of a batch; a hit's saving is the original call's cost, nano-USD. */
  recordCacheLookups(hits: number, misses: number): void;
  recordCacheSaving(tenant: string, model: string, nanoUsd: number | null): void;
  setBreakerState(link: string, state: BreakerState): void;
}

/** The worker's metrics on `registry` (a fresh one by default, so tests can build several). */
export function createWorkerMetrics(registry: Registry = new Registry(), options: WorkerMetricsOptions = {}): WorkerMetrics {
  const registers = [registry];
  const tenantLabel = folder(options.tenants);
  const modelLabel = folder(options.models);

  const jobs = new Counter({
    name: 'prompt_queue_jobs_total',
    help: 'Jobs finished or sent back by the worker, by outcome (completed, cached, failed, retried, rate_limited, delayed) and error code.',
    labelNames: ['outcome', 'code'] as const,
    registers,
  });
  const providerRequestDuration = new Histogram({
    name: 'prompt_queue_provider_request_duration_seconds',
    help: 'Duration of provider calls (one per batch or leader job), by provider, model and outcome.',
    labelNames: ['provider', 'model', 'outcome'] as const,
    buckets: PROVIDER_DURATION_BUCKETS,
    registers,
  });
  const tokens = new Counter({
    name: 'prompt_queue_tokens_total',
    help: 'Tokens reported by providers, by model and kind (input includes cached; thoughts are billed as output).',
    labelNames: ['model', 'kind'] as const,
    registers,
  });
  const costUsd = new Counter({
    name: 'prompt_queue_cost_usd_total',
    help: 'Provider spend in USD by tenant and model (float; exact nano-USD figures are in the Redis usage aggregates).',
    labelNames: ['tenant', 'model'] as const,
    registers,
  });
  const cacheSavedUsd = new Counter({
    name: 'prompt_queue_cache_saved_usd_total',
    help: 'USD not spent thanks to response cache hits (the original call cost), by tenant and model.',
    labelNames: ['tenant', 'model'] as const,
    registers,
  });
  const cacheRequests = new Counter({
    name: 'prompt_queue_cache_requests_total',
    help: 'Response cache lookups by result (hit, miss).',
    labelNames: ['result'] as const,
    registers,
  });
  const breakerState = new Gauge({
    name: 'prompt_queue_breaker_state',
    help: 'Circuit breaker state per chain link in this process: 0 closed, 1 half-open, 2 open.',
    labelNames: ['link'] as const,
    registers,
  });
  const limiterWait = new Histogram({
    name: 'prompt_queue_limiter_wait_seconds',
    help: 'Time jobs were delayed by the fleet-wide rate limiter (quota or a 429 pause), by model.',
    labelNames: ['model'] as const,
    buckets: LIMITER_WAIT_BUCKETS,
    registers,
  });
  const utilizationCollector = options.limiterUtilization;
  const limiterUtilization = new Gauge({
    name: 'prompt_queue_limiter_utilization_ratio',
    help: 'Share of the rolling-window quota in use (0 to 1), by model and dimension (rpm, tpm).',
    labelNames: ['model', 'dimension'] as const,
    registers,
    ...(utilizationCollector
      ? {
          async collect(this: Gauge<'model' | 'dimension'>) {
            try {
              await utilizationCollector(this);
            } catch {
              this.reset();
            }
          },
        }
      : {}),
  });
  const batchSize = new Histogram({
    name: 'prompt_queue_batch_size',
    help: 'Jobs per micro-batch served by this worker.',
    buckets: BATCH_SIZE_BUCKETS,
    registers,
  });
  const apiKeyRejections = new Counter({
    name: 'prompt_queue_api_key_rejections_total',
    help: 'Gemini API keys taken out of the rotation, by key fingerprint (sha256 prefix, never the key) and reason.',
    labelNames: ['fingerprint', 'reason'] as const,
    registers,
  });
  const { queueDepth } = options;
  if (queueDepth) {
    new Gauge({
      ...QUEUE_DEPTH_METRIC,
      labelNames: [...QUEUE_DEPTH_METRIC.labelNames],
      registers,
      async collect() {
        // A scrape must answer even when Redis does not: no series then, rather than a failed scrape.
        try {
          await queueDepth(this);
        } catch {
          this.reset();
        }
      },
    });
  }
  if (options.defaultMetrics ?? true) {
    collectDefaultMetrics({ register: registry, prefix: DEFAULT_METRICS_PREFIX });
    // prom-client names three gauges `…_total`, which promtool's lint rejects (only counters end in
    // _total). The same figures stay available by type: `…nodejs_active_handles{type}` etc.
    for (const name of LINT_FAILING_DEFAULT_METRICS) registry.removeSingleMetric(`${DEFAULT_METRICS_PREFIX}${name}`);
  }

  return {
    registry,
    jobs,
    providerRequestDuration,
    tokens,
    costUsd,
    cacheSavedUsd,
    cacheRequests,
    breakerState,
    limiterWait,
    limiterUtilization,
    batchSize,
    apiKeyRejections,
    recordJob(outcome, code) {
      jobs.inc({ outcome, code: code === undefined || code === '' ? '' : boundedCode(code) });
    },
    recordProviderCall(provider, model, outcome, seconds) {
      providerRequestDuration.observe({ provider, model: modelLabel(model), outcome }, seconds);
    },
    recordTokens(model, usage) {
      const labelModel = modelLabel(model);
      const kinds: [TokenKind, number][] = [
        ['input', usage.inputTokens],
        ['output', usage.outputTokens],
        ['thoughts', usage.thoughtsTokens],
        ['cached', usage.cachedTokens],
      ];
      for (const [kind, count] of kinds) if (count > 0) tokens.inc({ model: labelModel, kind }, count);
    },
    recordCost(tenant, model, nanoUsd) {
      if (nanoUsd !== null && nanoUsd > 0) costUsd.inc({ tenant: tenantLabel(tenant), model: modelLabel(model) }, nanoUsd / 1e9);
    },
    recordCacheLookups(hits, misses) {
      if (hits > 0) cacheRequests.inc({ result: 'hit' }, hits);
      if (misses > 0) cacheRequests.inc({ result: 'miss' }, misses);
    },
    recordCacheSaving(tenant, model, nanoUsd) {
      if (nanoUsd !== null && nanoUsd > 0) cacheSavedUsd.inc({ tenant: tenantLabel(tenant), model: modelLabel(model) }, nanoUsd / 1e9);
    },
    setBreakerState(link, state) {
      breakerState.set({ link }, BREAKER_STATE_VALUE[state]);
    },
  };
}

function boundedCode(code: string): ErrorCode {
  return isErrorCode(code) ? code : 'INTERNAL';
}

function folder(known: readonly string[] | undefined): (value: string) => string {
  if (known === undefined) return (value) => value;
  const set = new Set(known);
  return (value) => (set.has(value) ? value : OTHER_LABEL);
}

/**
 * `GET /metrics` in Prometheus' text format (`registry.contentType`). METRICS_TOKEN is checked in
 * front of it, with `/status` (`createHealthApp`'s `token`).
 */
export function metricsHandler(registry: Registry): RequestHandler {
  return async (_req, res) => {
    try {
      const body = await registry.metrics();
      res.set('Content-Type', registry.contentType).set('Cache-Control', 'no-store').send(body);
    } catch (error) {
      res.status(500).json({ error: { code: 'INTERNAL', message: `Cannot render metrics: ${error instanceof Error ? error.message : String(error)}` } });
    }
  };
}

/** Job-end metrics, as an observer of the one job-end recorder (shared lifecycle/job-ends.ts). */
export function metricsObserver(metrics: WorkerMetrics): JobEndObserver {
  return {
    name: 'metrics',
    observe(ends) {
      for (const end of ends) {
        const { result } = end;
        if (end.outcome !== 'completed' || !result) {
          metrics.recordJob('failed', end.error?.code ?? 'INTERNAL');
        } else if (result.cached) {
          metrics.recordJob('cached');
          metrics.recordCacheSaving(end.tenant, result.model, end.savedNanoUsd ?? 0);
        } else {
          metrics.recordJob('completed');
          metrics.recordTokens(result.model, result.usage);
          metrics.recordCost(end.tenant, result.model, result.costNanoUsd);
        }
      }
    },
  };
}
