import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { RequestHandler } from 'express';
import { QUEUE_DEPTH_METRIC, collectQueueDepth, isErrorCode, type CountableQueue, type PriorityLevel } from '@prompt-queue/shared';
import { routeOf } from './http-errors.js';

/** prom-client default metrics that break Prometheus naming rules (gauges ending in `_total`). */
const LINT_FAILING_DEFAULT_METRICS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Long-polls (`?wait=`) last up to a minute, so the buckets go that far. Seconds. */
const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * The producer's Prometheus metrics, on a registry of its own (one per app, so tests can build
 * several apps in one process). Names follow Prometheus conventions: `prompt_queue_` namespace,
 * base units (seconds), counters end in `_total`. Labels are bounded: route patterns (never raw
 * URLs), configured tenants, error codes from the catalog.
 */
export class ProducerMetrics {
  readonly registry = new Registry();

  private readonly httpRequests = new Counter({
    name: 'prompt_queue_http_requests_total',
    help: 'HTTP requests answered, by route pattern, method and status code.',
    labelNames: ['route', 'method', 'status'],
    registers: [this.registry],
  });

  private readonly httpDuration = new Histogram({
    name: 'prompt_queue_http_request_duration_seconds',
    help: 'Time from receiving an HTTP request to finishing its answer, by route pattern, method and status code.',
    labelNames: ['route', 'method', 'status'],
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });

  private readonly rejections = new Counter({
    name: 'prompt_queue_http_rejections_total',
    help: 'Error answers by error code (validation, auth, budget, Redis outages, ...).',
    labelNames: ['code'],
    registers: [this.registry],
  });

  private readonly enqueued = new Counter({
    name: 'prompt_queue_jobs_enqueued_total',
    help: 'Jobs added to the queue (idempotent replays not counted), by tenant and priority level.',
    labelNames: ['tenant', 'priority'],
    registers: [this.registry],
  });

  /**
   * @param queues read with getJobCounts on every scrape for `prompt_queue_queue_jobs`.
   * @param defaultMetrics process and Node.js metrics (`process_cpu_seconds_total`, heap, event
   * loop lag, ...) under their standard names. Off in tests that build many apps.
   */
  constructor(queues: readonly CountableQueue[], options: { defaultMetrics?: boolean } = {}) {
    new Gauge({
      ...QUEUE_DEPTH_METRIC,
      labelNames: [...QUEUE_DEPTH_METRIC.labelNames],
      registers: [this.registry],
      async collect() {
        await collectQueueDepth(this, queues);
      },
    });
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      // Gauges named like counters, which `promtool check metrics` rejects; the per-type
      // `nodejs_active_handles` / `_requests` / `_resources` gauges carry the same numbers.
      for (const name of LINT_FAILING_DEFAULT_METRICS) this.registry.removeSingleMetric(name);
    }
  }

  /** Counts jobs actually added (not replays). */
  jobsEnqueued(tenant: string, levels: readonly (PriorityLevel | undefined)[]): void {
    if (levels.length === 1) {
      this.enqueued.inc({ tenant, priority: levels[0] ?? 'normal' }); // the single POST
      return;
    }
    const byLevel = new Map<PriorityLevel, number>();
    for (const level of levels) byLevel.set(level ?? 'normal', (byLevel.get(level ?? 'normal') ?? 0) + 1);
    for (const [priority, count] of byLevel) this.enqueued.inc({ tenant, priority }, count);
  }

  /** First middleware: observes every answer once it is sent (or the client went away). */
  middleware(): RequestHandler {
    return (req, res, next) => {
      const started = process.hrtime.bigint();
      res.once('close', () => {
        const labels = { route: routeOf(req, res), method: req.method, status: String(res.statusCode) };
        this.httpRequests.inc(labels);
        this.httpDuration.observe(labels, Number(process.hrtime.bigint() - started) / 1e9);
        const code: unknown = res.locals.errorCode; // set by sendError
        if (typeof code === 'string' && isErrorCode(code)) this.rejections.inc({ code });
      });
      next();
    };
  }

  async render(): Promise<{ contentType: string; body: string }> {
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}
