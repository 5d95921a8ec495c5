import type { Redis } from 'ioredis';
import { FleetLimiter, percentile, readProviderLatencies, type Config } from '@prompt-queue/shared';
import type { PromptQueue } from '../queue.js';
import { recommendWorkers, type Backlog, type ScalingRecommendation, type ScopeReading } from './recommend.js';
import { quotaScopes, type QuotaScope } from './scopes.js';

/** Fewer successful calls than this in the fleet history: the configured latency is used. */
export const MIN_LATENCY_SAMPLES = 10;

/**
 * Counts the queue's jobs for scaling in one round trip, on Redis server time so that "due" means
 * the same for every producer replica. BullMQ scores a delayed job `timestamp × 0x1000 + counter`
 * (its getDelayedScore.lua), so the jobs due by `now` are those scored below `(now + 1) × 0x1000`.
 *   KEYS[1] wait (list)  KEYS[2] prioritized (zset)  KEYS[3] delayed (zset)  KEYS[4] active (list)
 *   returns { waiting, prioritized, delayedDue, delayedTotal, active, nowMs }
 * The four keys are BullMQ's keys of one queue: one hash slot under BullMQ's tagged prefix.
 */
const COUNT_BACKLOG_LUA = `
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = redis.call('ZCOUNT', KEYS[3], '-inf', (now + 1) * 0x1000 - 1)
return { redis.call('LLEN', KEYS[1]), redis.call('ZCARD', KEYS[2]), due, redis.call('ZCARD', KEYS[3]), redis.call('LLEN', KEYS[4]), now }
`;

type CountCommand = (wait: string, prioritized: string, delayed: string, active: string) => Promise<number[]>;

export interface ScalingReading extends ScalingRecommendation {
  queue: string;
  /** Redis server time of the count, ms since the epoch. */
  at: number;
}

/** Reads what `recommendWorkers` needs: the queue's counts, each quota scope's window, and latencies. */
export class ScalingReader {
  private readonly limiter: FleetLimiter;
  private readonly scopes: QuotaScope[];
  private readonly windowMs: number;

  constructor(
    private readonly config: Config,
    private readonly redis: Redis,
    private readonly queue: PromptQueue,
  ) {
    // The worker's window: requests stay in it for the guard too (worker.ts).
    this.windowMs = config.limiter.windowMs + config.limiter.guardMs;
    this.limiter = new FleetLimiter(redis, config.redis.prefix, { windowMs: this.windowMs });
    this.scopes = quotaScopes(config);
    redis.defineCommand('pqCountBacklog', { numberOfKeys: 4, lua: COUNT_BACKLOG_LUA });
  }

  async read(): Promise<ScalingReading> {
    const count = (this.redis as unknown as { pqCountBacklog: CountCommand }).pqCountBacklog.bind(this.redis);
    const keys = this.queue.keys;
    const [counts, states, latencies] = await Promise.all([
      count(keys.wait!, keys.prioritized!, keys.delayed!, keys.active!),
      Promise.all(this.scopes.map((scope) => this.limiter.state(scope.key, scope.limits))),
      this.scopes.length > 0 ? readProviderLatencies(this.redis, this.config.redis.prefix) : Promise.resolve({} as Record<string, number[]>),
    ]);
    const [waiting = 0, prioritized = 0, delayedDue = 0, delayedTotal = 0, active = 0, now = Date.now()] = counts.map(Number);
    const jobs: Backlog = { waiting, prioritized, delayedDue, delayedLater: delayedTotal - delayedDue, active };
    const readings: ScopeReading[] = this.scopes.map((scope, i) => {
      const state = states[i]!;
      const samples = latencies[scope.latencyLink] ?? [];
      const enough = samples.length >= MIN_LATENCY_SAMPLES;
      return {
        scope: scope.id,
        rpmLimit: state.rpmLimit,
        tpmLimit: state.tpmLimit,
        requests: state.requests,
        tokens: state.tokens,
        windowMs: this.windowMs,
        pausedUntil: state.pausedUntil,
        ...(state.pauseReason ? { pauseReason: state.pauseReason } : {}),
        observedLatencyMs: enough ? samples.reduce((sum, ms) => sum + ms, 0) / samples.length : null,
        observedP50Ms: enough ? percentile(samples, 50) : null,
      };
    });
    const recommendation = recommendWorkers(jobs, readings, {
      concurrency: this.config.worker.concurrency,
      latencyMs: this.config.scaling.latencyMs,
      tokensPerRequest: this.config.scaling.tokensPerRequest,
    });
    return { queue: this.queue.name, at: now, ...recommendation };
  }
}
