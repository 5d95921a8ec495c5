import { spawnSync } from 'node:child_process';
import express from 'express';
import { Registry } from 'prom-client';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createWorkerMetrics, metricsHandler, type WorkerMetrics } from '../src/metrics.js';

const METRIC_NAMES = [
  'prompt_queue_jobs_total',
  'prompt_queue_provider_request_duration_seconds',
  'prompt_queue_tokens_total',
  'prompt_queue_cost_usd_total',
  'prompt_queue_cache_saved_usd_total',
  'prompt_queue_cache_requests_total',
  'prompt_queue_breaker_state',
  'prompt_queue_limiter_wait_seconds',
  'prompt_queue_limiter_utilization_ratio',
  'prompt_queue_batch_size',
  'prompt_queue_queue_jobs',
  'prompt_queue_api_key_rejections_total',
];

/** Metrics with one observation of everything, as a busy worker would have them. */
function busyMetrics(): WorkerMetrics {
  const metrics = createWorkerMetrics(new Registry(), {
    tenants: ['acme', 'beta'],
    models: ['gemini-2.5-flash'],
    async queueDepth(gauge) {
      gauge.set({ queue: 'prompts', state: 'waiting' }, 7);
      gauge.set({ queue: 'prompts', state: 'active' }, 3);
    },
  });
  metrics.recordJob('completed');
  metrics.recordJob('cached');
  metrics.recordJob('failed', 'PROMPT_BLOCKED');
  metrics.recordJob('retried', 'PROVIDER_UNAVAILABLE');
  metrics.recordJob('failed', 'something-unbounded');
  metrics.recordProviderCall('gemini', 'gemini-2.5-flash', 'success', 0.42);
  metrics.recordTokens('gemini-2.5-flash', { inputTokens: 120, outputTokens: 30, thoughtsTokens: 50, cachedTokens: 0 });
  metrics.recordCost('acme', 'gemini-2.5-flash', 31_600);
  metrics.recordCost('acme', 'gemini-2.5-flash', 400);
  metrics.recordCost('intruder', 'mystery-model', 1_000);
  metrics.recordCost('acme', 'unpriced', null);
  metrics.recordCacheLookups(99, 1);
  metrics.recordCacheSaving('acme', 'gemini-2.5-flash', 32_000);
  metrics.setBreakerState('gemini', 'open');
  metrics.setBreakerState('ollama', 'half-open');
  metrics.limiterWait.observe({ model: 'gemini-2.5-flash' }, 1.5);
  metrics.limiterUtilization.set({ model: 'gemini-2.5-flash', dimension: 'tpm' }, 0.8);
  metrics.batchSize.observe(16);
  metrics.apiKeyRejections.inc({ fingerprint: 'ba7816bf', reason: 'API_KEY_INVALID' });
  return metrics;
}

function serve(metrics: WorkerMetrics): express.Express {
  const app = express();
  app.get('/metrics', metricsHandler(metrics.registry));
  return app;
}

describe('worker metrics', () => {
  it('serves every metric with HELP and TYPE, in the Prometheus text format', async () => {
    const metrics = busyMetrics();
    const response = await request(serve(metrics)).get('/metrics').expect(200);
    expect(response.headers['content-type']).toBe(metrics.registry.contentType);
    const text = response.text;
    for (const name of METRIC_NAMES) {
      expect(text).toContain(`# HELP ${name} `);
      expect(text).toMatch(new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'));
    }
    expect(text).toContain('# TYPE prompt_queue_worker_process_cpu_seconds_total counter');
    expect(text).toContain('prompt_queue_jobs_total{outcome="failed",code="PROMPT_BLOCKED"} 1');
    expect(text).toContain('prompt_queue_jobs_total{outcome="failed",code="INTERNAL"} 1'); // not in the catalog
    expect(text).toContain('prompt_queue_jobs_total{outcome="completed",code=""} 1');
    expect(text).toContain('prompt_queue_tokens_total{model="gemini-2.5-flash",kind="thoughts"} 50');
    expect(text).toContain('prompt_queue_cost_usd_total{tenant="acme",model="gemini-2.5-flash"} 0.000032');
    expect(text).toContain('prompt_queue_cost_usd_total{tenant="other",model="other"} 0.000001'); // folded, bounded
    expect(text).not.toContain('unpriced');
    expect(text).toContain('prompt_queue_cache_requests_total{result="hit"} 99');
    expect(text).toContain('prompt_queue_breaker_state{link="gemini"} 2');
    expect(text).toContain('prompt_queue_breaker_state{link="ollama"} 1');
    expect(text).toContain('prompt_queue_queue_jobs{queue="prompts",state="waiting"} 7');
    expect(text).toContain('prompt_queue_provider_request_duration_seconds_bucket{le="0.05",provider="gemini",model="gemini-2.5-flash",outcome="success"} 0');
    expect(text).toContain('prompt_queue_provider_request_duration_seconds_bucket{le="120",provider="gemini",model="gemini-2.5-flash",outcome="success"} 1');
    expect(text).toContain('prompt_queue_api_key_rejections_total{fingerprint="ba7816bf",reason="API_KEY_INVALID"} 1');
  });

  it('passes promtool check metrics without lint warnings', async (context) => {
    const available = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).status === 0;
    if (!available) {
      if (process.env.CI === 'true') throw new Error('promtool is required in CI (Debian package `prometheus`)');
      console.warn('promtool not on PATH (Debian package `prometheus`): skipping the promtool check');
      context.skip();
      return;
    }
    const { text } = await request(serve(busyMetrics())).get('/metrics').expect(200);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    expect({ status: check.status, output: `${check.stdout}${check.stderr}`.trim() }).toEqual({ status: 0, output: '' });
  });

  it('still answers when the queue-depth collector fails; the series is then absent', async () => {
    const metrics = createWorkerMetrics(new Registry(), {
      defaultMetrics: false,
      async queueDepth(gauge) {
        gauge.reset();
        throw new Error('Redis is down');
      },
    });
    const response = await request(serve(metrics)).get('/metrics').expect(200);
    expect(response.text).toContain('# TYPE prompt_queue_queue_jobs gauge');
    expect(response.text).not.toMatch(/^prompt_queue_queue_jobs\{/m);
  });
});
