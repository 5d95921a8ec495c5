import type { Redis } from 'ioredis';
import {
  DEPTH_SAMPLE_MS,
  recordDepthSample,
  recordProviderLatencies,
  within,
  type CountableQueue,
  type LatencySample,
  type Logger,
} from '@prompt-queue/shared';
import type { WorkerMetrics } from './metrics.js';

/** How often the latencies of finished calls go to Redis, ms. */
const LATENCY_FLUSH_MS = 5_000;
/** Latencies held between flushes at most: while Redis is down the oldest are dropped, not kept. */
const MAX_BUFFERED = 2_000;

export interface FleetHistoryDeps {
  redis: Redis;
  prefix: string;
  /** The prompts queue, for its counts. */
  queue: CountableQueue;
  logger: Logger;
}

/**
 * What this worker adds to the fleet history the dashboard charts (shared metrics/history.ts):
 * the queue's depth every 10 s (one sample per bucket fleet-wide, whoever is first), and the
 * latency of each successful provider call, buffered and written every 5 s in one round trip. Only
 * a chart depends on it: a failed write is logged at debug level and dropped.
 */
export class FleetHistory {
  private buffer: LatencySample[] = [];
  private timers: NodeJS.Timeout[] = [];

  constructor(private readonly deps: FleetHistoryDeps) {}

  /** Samples the depth now and every `DEPTH_SAMPLE_MS`; flushes latencies every 5 s. Idempotent. */
  start(): this {
    if (this.timers.length > 0) return this;
    void this.sampleDepth();
    this.timers.push(setInterval(() => void this.sampleDepth(), DEPTH_SAMPLE_MS).unref(), setInterval(() => void this.flush(), LATENCY_FLUSH_MS).unref());
    return this;
  }

  /** `metrics`, whose `recordProviderCall` also records the latency of successful calls here. */
  observing(metrics: WorkerMetrics): WorkerMetrics {
    return {
      ...metrics,
      recordProviderCall: (provider, model, outcome, seconds) => {
        metrics.recordProviderCall(provider, model, outcome, seconds);
        if (outcome === 'success') this.providerCall(`${provider}:${model}`, seconds * 1_000);
      },
    };
  }

  providerCall(link: string, latencyMs: number, at = Date.now()): void {
    this.buffer.push({ link, latencyMs, at });
    if (this.buffer.length > MAX_BUFFERED) this.buffer.splice(0, this.buffer.length - MAX_BUFFERED);
  }

  /** Stops the timers and writes what is buffered (bounded: shutdown never waits on Redis). */
  async stop(): Promise<void> {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    await this.flush();
  }

  /** Records the queue's depth for the current bucket. */
  async sampleDepth(): Promise<void> {
    const { redis, prefix, queue, logger } = this.deps;
    if (redis.status !== 'ready') return;
    try {
      const counts = await within(queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active'));
      await within(
        recordDepthSample(redis, prefix, {
          waiting: counts.waiting ?? 0,
          prioritized: counts.prioritized ?? 0,
          delayed: counts.delayed ?? 0,
          active: counts.active ?? 0,
        }),
      );
    } catch (error) {
      logger.debug('could not record a queue-depth sample', { error: String(error) });
    }
  }

  /** Writes the buffered latencies in one round trip. */
  async flush(): Promise<void> {
    const { redis, prefix, logger } = this.deps;
    if (this.buffer.length === 0 || redis.status !== 'ready') return;
    const samples = this.buffer.splice(0);
    try {
      await within(recordProviderLatencies(redis, prefix, samples));
    } catch (error) {
      logger.debug('could not record provider latencies', { error: String(error), samples: samples.length });
    }
  }
}
