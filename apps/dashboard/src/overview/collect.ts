import {
  breakerStatesKey,
  BudgetGuard,
  DEPTH_SAMPLE_MS,
  LATENCY_WINDOW_MS,
  percentile,
  readDepthHistory,
  readProviderLatencies,
  FleetLimiter,
  parseFailedReason,
  QueueName,
  readPublishedLinks,
  readWebhookDeliveryErrors,
  READ_TIMEOUT_MS,
  UsageLedger,
  within,
  type Config,
  type PublishedLink,
  type UsageOverview,
} from '@prompt-queue/shared';
import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { RedisHealth } from '../redis-health.js';
import { limitScopes } from './limits.js';
import { metricsSeries, minuteBuckets } from './throughput.js';
import type {
  BreakerState,
  BreakerView,
  BudgetView,
  DepthHistory,
  Failures,
  LimitView,
  LinkLatency,
  LinkView,
  Overview,
  QueueOverview,
  QueueWait,
  Throughput,
  UsageSection,
  WebhookDeliveries,
  WorkerView,
} from './types.js';

/** Failed jobs read to group failures by code: the newest ones, a bounded amount of work. */
export const FAILURE_SAMPLE = 200;
/** Completed jobs read for the queue-wait percentiles: the newest, a bounded amount of work. */
export const WAIT_SAMPLE = 200;
/** Prioritized jobs read at each end of the set for the oldest waiting job. */
const OLDEST_SAMPLE = 50;
/** Minutes in the throughput chart. */
export const THROUGHPUT_MINUTES = 60;
/** Days in the cost-over-time chart. */
export const COST_DAYS = 30;

/** Tenants, and errors per tenant, the webhook panel shows. */
export const WEBHOOK_ERROR_TENANTS = 50;
export const WEBHOOK_ERRORS_SHOWN = 5;

/** States that are not finished yet: the queue's depth. */
const PENDING_STATES = ['waiting', 'prioritized', 'delayed', 'active', 'waiting-children', 'paused'];
const BREAKER_STATES: readonly string[] = ['closed', 'open', 'half-open'] satisfies BreakerState[];

export interface OverviewSourceDeps {
  config: Config;
  connection: Redis;
  /** Every queue, keyed by name; `QueueName.Prompts` must be among them. */
  queues: Map<string, Queue>;
  /** Whether Redis is up, and since when it is not: reported with every overview. */
  health: RedisHealth;
}

/**
 * Reads everything the overview shows from Redis: counters, index sets, sorted-set ranges and the
 * newest `FAILURE_SAMPLE` failure reasons. Nothing here grows with the number of jobs kept in
 * Redis (no KEYS, no SCAN, no loading of job hashes beyond that sample), so it stays fast with a
 * million completed jobs. Each section is read independently: one that fails is reported in
 * `errors` and the others are still shown.
 */
export class OverviewSource {
  private readonly ledger: UsageLedger;
  private readonly limiter: FleetLimiter;
  private readonly budgets: BudgetGuard;
  private readonly prefix: string;

  constructor(private readonly deps: OverviewSourceDeps) {
    this.prefix = deps.config.redis.prefix;
    this.ledger = new UsageLedger(deps.connection, this.prefix);
    this.limiter = new FleetLimiter(deps.connection, this.prefix);
    this.budgets = new BudgetGuard(deps.connection, this.prefix, deps.config.tenants);
  }

  /**
   * Every section, read in parallel, each bounded by `READ_TIMEOUT_MS`: the answer comes within
   * about that long even while Redis hangs. While the connection is down nothing is read at all,
   * and the answer is immediate. Either way `redis` says since when Redis is unavailable.
   */
  async read(now: Date = new Date()): Promise<Overview> {
    const { health } = this.deps;
    const errors: Overview['errors'] = [];
    const connected = await health.connectedWithin(READ_TIMEOUT_MS);
    let redisFailed = false;
    const section = async <T>(name: string, read: () => Promise<T>, fallback: T): Promise<T> => {
      if (!connected) return fallback;
      try {
        return await within(read(), READ_TIMEOUT_MS);
      } catch (error) {
        if (health.failed(error)) redisFailed = true;
        errors.push({ section: name, message: error instanceof Error ? error.message : String(error) });
        return fallback;
      }
    };
    const prompts = this.prompts();
    const nowMs = now.getTime();
    const emptyWebhooks: WebhookDeliveries = { pending: 0, retrying: 0, deadLettered: 0, delivered: 0, recentErrors: [] };
    const [queues, throughput, depthHistory, queueWait, providerLatency, failures, usage, breakers, { limits, links }, workers, budgets, webhooks] = await Promise.all([
      section('queues', () => this.queueCounts(), []),
      section('throughput', () => this.throughput(prompts, nowMs), emptyThroughput(nowMs)),
      section('depthHistory', () => this.depthHistory(nowMs), { sampleMs: DEPTH_SAMPLE_MS, samples: [] }),
      section('queueWait', () => this.queueWait(prompts, nowMs), { oldestWaitingMs: null, sampled: 0, limit: WAIT_SAMPLE, p50Ms: null, p95Ms: null }),
      section('providerLatency', () => this.providerLatency(nowMs), { windowMs: LATENCY_WINDOW_MS, links: [] }),
      section('failures', () => this.failures(prompts), { sampled: 0, limit: FAILURE_SAMPLE, byCode: [] }),
      section('usage', () => this.usage(now), undefined),
      section('breakers', () => this.breakers(), []),
      section('limits', () => this.limitsAndLinks(nowMs), { limits: [], links: [] }),
      section('workers', () => this.workers(prompts), []),
      section('budgets', () => this.budgetViews(now), []),
      section('webhooks', () => this.webhooks(), emptyWebhooks),
    ]);
    if (connected && !redisFailed) health.succeeded();
    const redis = health.state;
    if (redis.status === 'unavailable') {
      // One line for the page's error banner and for scripts that only read `errors`.
      errors.unshift({ section: 'redis', message: `Redis unavailable since ${new Date(redis.since).toISOString()} (${redis.reason})` });
    }
    return {
      generatedAt: now.getTime(),
      redis,
      readOnly: this.deps.config.dashboard.readOnly,
      queues,
      throughput,
      depthHistory,
      queueWait,
      providerLatency,
      failures,
      usage: usage ?? null,
      breakers,
      limits,
      links,
      workers: { count: workers.length, list: workers },
      budgets,
      webhooks,
      errors,
    };
  }

  private prompts(): Queue {
    const queue = this.deps.queues.get(QueueName.Prompts);
    if (!queue) throw new Error(`queue ${QueueName.Prompts} is missing`);
    return queue;
  }

  /** `getJobCounts()` per queue: ZCARD/LLEN only. */
  private async queueCounts(): Promise<QueueOverview[]> {
    return Promise.all(
      [...this.deps.queues.values()].map(async (queue) => {
        const counts = await queue.getJobCounts();
        const depth = PENDING_STATES.reduce((sum, state) => sum + (counts[state] ?? 0), 0);
        return { name: queue.name, counts, depth };
      }),
    );
  }

  /**
   * Jobs finished per minute over the last hour. BullMQ's metrics when the worker records them;
   * otherwise one ZCOUNT per minute on the completed and failed sets (scored by finish time, kept
   * for the result TTL): 120 O(log n) commands in one round trip.
   */
  private async throughput(queue: Queue, nowMs: number): Promise<Throughput> {
    const buckets = minuteBuckets(nowMs, THROUGHPUT_MINUTES);
    const startMs = buckets[0]!.startMs;
    const [completedMetrics, failedMetrics] = await Promise.all([
      queue.getMetrics('completed', 0, THROUGHPUT_MINUTES),
      queue.getMetrics('failed', 0, THROUGHPUT_MINUTES),
    ]);
    let source: Throughput['source'];
    let completed: number[];
    let failed: number[];
    if (completedMetrics.meta.prevTS || failedMetrics.meta.prevTS) {
      source = 'metrics';
      completed = metricsSeries(completedMetrics, nowMs, THROUGHPUT_MINUTES);
      failed = metricsSeries(failedMetrics, nowMs, THROUGHPUT_MINUTES);
    } else {
      source = 'finished-sets';
      const pipeline = this.deps.connection.pipeline();
      for (const key of [queue.keys.completed!, queue.keys.failed!]) {
        for (const { startMs: from, endMs } of buckets) pipeline.zcount(key, from, `(${endMs}`);
      }
      const results = await pipeline.exec();
      if (!results) throw new Error('throughput pipeline returned no results');
      const values = results.map(([error, value]) => {
        if (error) throw error;
        return Number(value);
      });
      completed = values.slice(0, THROUGHPUT_MINUTES);
      failed = values.slice(THROUGHPUT_MINUTES);
    }
    const total = [...completed, ...failed].reduce((sum, value) => sum + value, 0);
    return { source, startMs, completed, failed, perMinute: total / THROUGHPUT_MINUTES };
  }

  /** The workers' depth samples of the last hour (one ZRANGEBYSCORE). */
  private async depthHistory(nowMs: number): Promise<DepthHistory> {
    return { sampleMs: DEPTH_SAMPLE_MS, samples: await readDepthHistory(this.deps.connection, this.prefix, nowMs) };
  }

  /**
   * The oldest waiting job's age and the wait of the newest completed jobs: three range reads, then
   * one HMGET per job read (at most 2 × 50 + 50 + 200), two round trips, whatever the queue's size.
   */
  private async queueWait(queue: Queue, nowMs: number): Promise<QueueWait> {
    const redis = this.deps.connection;
    const [oldestInWait, nextPrioritized, lastPrioritized, completed] = await Promise.all([
      redis.lrange(queue.keys.wait!, -OLDEST_SAMPLE, -1),
      redis.zrange(queue.keys.prioritized!, 0, OLDEST_SAMPLE - 1),
      redis.zrange(queue.keys.prioritized!, -OLDEST_SAMPLE, -1),
      redis.zrevrange(queue.keys.completed!, 0, WAIT_SAMPLE - 1),
    ]);
    const waiting = [...new Set([...oldestInWait, ...nextPrioritized, ...lastPrioritized])];
    const pipeline = redis.pipeline();
    for (const id of waiting) pipeline.hget(queue.toKey(id), 'timestamp');
    for (const id of completed) pipeline.hmget(queue.toKey(id), 'timestamp', 'processedOn');
    const results = waiting.length + completed.length > 0 ? ((await pipeline.exec()) ?? []) : [];
    const enqueued = results
      .slice(0, waiting.length)
      .map(([error, value]) => (error ? NaN : Number(value)))
      .filter((ms) => Number.isFinite(ms) && ms > 0);
    const waits = results.slice(waiting.length).flatMap(([error, value]) => {
      if (error) return [];
      const [timestamp, processedOn] = (value as [string | null, string | null]).map(Number);
      return Number.isFinite(timestamp) && Number.isFinite(processedOn) && processedOn! >= timestamp! ? [processedOn! - timestamp!] : [];
    });
    return {
      oldestWaitingMs: enqueued.length > 0 ? Math.max(0, nowMs - Math.min(...enqueued)) : null,
      sampled: waits.length,
      limit: WAIT_SAMPLE,
      p50Ms: percentile(waits, 50),
      p95Ms: percentile(waits, 95),
    };
  }

  /** The workers' latency samples of the window, by link (one ZRANGEBYSCORE, at most LATENCY_MAX_SAMPLES). */
  private async providerLatency(nowMs: number): Promise<Overview['providerLatency']> {
    const byLink = await readProviderLatencies(this.deps.connection, this.prefix, nowMs);
    const links = Object.entries(byLink)
      .map(([link, values]): LinkLatency => ({ link, calls: values.length, p50Ms: percentile(values, 50)!, p95Ms: percentile(values, 95)! }))
      .sort((a, b) => b.calls - a.calls || a.link.localeCompare(b.link));
    return { windowMs: LATENCY_WINDOW_MS, links };
  }

  /** The newest failures grouped by error code: ZREVRANGE plus one HMGET per job, one round trip each. */
  private async failures(queue: Queue): Promise<Failures> {
    const ids = await this.deps.connection.zrevrange(queue.keys.failed!, 0, FAILURE_SAMPLE - 1);
    const byCode = new Map<string, Failures['byCode'][number]>();
    if (ids.length > 0) {
      const pipeline = this.deps.connection.pipeline();
      for (const id of ids) pipeline.hmget(queue.toKey(id), 'failedReason', 'finishedOn');
      const results = (await pipeline.exec()) ?? [];
      results.forEach(([error, value], i) => {
        if (error) return;
        const [reason, finishedOn] = value as [string | null, string | null];
        // A job removed between the two reads has no hash any more: skip it.
        if (reason === null && finishedOn === null) return;
        const { code, message } = parseFailedReason(reason ?? undefined);
        const group = byCode.get(code);
        if (group) group.count += 1;
        // Newest first: the first job of each code is its latest failure.
        else byCode.set(code, { code, count: 1, lastMessage: message, lastJobId: ids[i]!, lastAt: finishedOn ? Number(finishedOn) : null });
      });
    }
    const sampled = [...byCode.values()].reduce((sum, group) => sum + group.count, 0);
    return { sampled, limit: FAILURE_SAMPLE, byCode: [...byCode.values()].sort((a, b) => b.count - a.count || a.code.localeCompare(b.code)) };
  }

  private async usage(now: Date): Promise<UsageSection> {
    return usageSection(await this.ledger.overview({ days: COST_DAYS, now }));
  }

  /** The breaker states the worker publishes in `<prefix>:breakers` (field: link, value: JSON). */
  private async breakers(): Promise<BreakerView[]> {
    const hash = await this.deps.connection.hgetall(breakerStatesKey(this.prefix));
    return Object.entries(hash)
      .map(([link, raw]) => parseBreaker(link, raw))
      .sort((a, b) => a.link.localeCompare(b.link));
  }

  /**
   * The links the workers publish (one HGETALL), and the limiter's rolling window per scope (one Lua
   * call each): the configured scopes and the published links' scopes. Scopes without configured
   * limits are shown only while they have traffic or a pause, plus the default model.
   */
  private async limitsAndLinks(nowMs: number): Promise<{ limits: LimitView[]; links: LinkView[] }> {
    const links = await readPublishedLinks(this.deps.connection, this.prefix, nowMs);
    return { limits: await this.limits(links), links };
  }

  private async limits(links: readonly PublishedLink[]): Promise<LimitView[]> {
    const views = await Promise.all(
      limitScopes(this.deps.config, links).map(async ({ key, limits, configured }): Promise<LimitView> => {
        const state = await this.limiter.state(key, limits);
        return {
          provider: key.provider,
          model: key.model,
          project: key.project ?? 'default',
          requests: state.requests,
          tokens: state.tokens,
          rpmLimit: state.rpmLimit,
          tpmLimit: state.tpmLimit,
          rpmUtilization: state.rpmLimit > 0 ? state.requests / state.rpmLimit : null,
          tpmUtilization: state.tpmLimit > 0 ? state.tokens / state.tpmLimit : null,
          learned: state.learned ?? null,
          pausedUntil: state.pausedUntil,
          pauseReason: state.pauseReason ?? null,
          slowStart: state.slowStart ?? null,
          configured,
        };
      }),
    );
    const defaultModel = this.deps.config.gemini.defaultModel;
    return views.filter(
      (view) => view.configured || view.requests > 0 || view.tokens > 0 || view.pausedUntil !== null || view.model === defaultModel,
    );
  }

  /** Worker connections of the prompts queue (CLIENT LIST), named `<host>:<pid>` by the worker. */
  private async workers(queue: Queue): Promise<WorkerView[]> {
    const clients = (await queue.getWorkers()) as Record<string, string>[];
    return clients
      .map((client) => {
        const raw = client.rawname ?? '';
        const marker = raw.indexOf(':w:');
        return {
          name: marker >= 0 ? raw.slice(marker + 3) : raw || 'unnamed',
          addr: client.addr ?? null,
          ageSeconds: client.age !== undefined ? Number(client.age) : null,
        };
      })
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /**
   * Delivery counts of the `webhooks` queue (a delivery waiting for its backoff is `delayed`; the
   * failed set holds the dead letters) and each tenant's newest errors: three round trips.
   */
  private async webhooks(): Promise<WebhookDeliveries> {
    const queue = this.deps.queues.get(QueueName.Webhooks);
    if (!queue) throw new Error(`queue ${QueueName.Webhooks} is missing`);
    const [counts, recentErrors] = await Promise.all([
      queue.getJobCounts(),
      readWebhookDeliveryErrors(this.deps.connection, this.prefix, { maxTenants: WEBHOOK_ERROR_TENANTS, perTenant: WEBHOOK_ERRORS_SHOWN }),
    ]);
    return {
      pending: (counts.waiting ?? 0) + (counts.prioritized ?? 0) + (counts.paused ?? 0) + (counts.active ?? 0),
      retrying: counts.delayed ?? 0,
      deadLettered: counts.failed ?? 0,
      delivered: counts.completed ?? 0,
      recentErrors,
    };
  }

  private async budgetViews(now: Date): Promise<BudgetView[]> {
    // Tenants listed only for their webhook have no budget to show.
    const tenants = Object.entries(this.deps.config.tenants)
      .filter(([, settings]) => settings.dailyUsd !== undefined || settings.monthlyUsd !== undefined)
      .map(([tenant]) => tenant)
      .sort();
    return Promise.all(tenants.map(async (tenant) => ({ tenant, remaining: await this.budgets.remaining(tenant, now) })));
  }
}

/** The ledger's overview, with the daily series reduced to what the cost chart needs. */
export function usageSection(overview: UsageOverview): UsageSection {
  const { totals } = overview.today;
  return {
    day: overview.day,
    monthKey: overview.monthKey,
    today: overview.today,
    month: overview.month,
    daily: overview.daily.map((day) => ({
      day: day.day,
      costUsd: day.totals.costUsd,
      jobs: day.totals.jobs,
      costByModel: Object.fromEntries(Object.entries(day.byModel).map(([model, usage]) => [model, usage.costNanoUsd])),
      costByTenant: Object.fromEntries(Object.entries(day.byTenant).map(([tenant, usage]) => [tenant, usage.costNanoUsd])),
    })),
    hourly: overview.hourly,
    cacheHitRateToday: totals.jobs > 0 ? totals.cacheHits / totals.jobs : null,
  };
}

function parseBreaker(link: string, raw: string): BreakerView {
  let value: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(raw);
    if (typeof parsed === 'object' && parsed !== null) value = parsed as Record<string, unknown>;
  } catch {
    // An unreadable entry still shows, as state unknown.
  }
  const time = (field: unknown): number | null => {
    if (typeof field === 'number' && Number.isFinite(field)) return field;
    if (typeof field === 'string' && field !== '') {
      const ms = /^\d+$/.test(field) ? Number(field) : Date.parse(field);
      return Number.isFinite(ms) ? ms : null;
    }
    return null;
  };
  const state = typeof value.state === 'string' && BREAKER_STATES.includes(value.state) ? (value.state as BreakerState) : 'unknown';
  return {
    link,
    state,
    since: time(value.since),
    retryAt: time(value.retryAt),
    updatedAt: time(value.updatedAt),
    workerId: typeof value.workerId === 'string' ? value.workerId : null,
  };
}

function emptyThroughput(nowMs: number): Throughput {
  const startMs = minuteBuckets(nowMs, THROUGHPUT_MINUTES)[0]!.startMs;
  const zeros = new Array<number>(THROUGHPUT_MINUTES).fill(0);
  return { source: 'finished-sets', startMs, completed: zeros, failed: [...zeros], perMinute: 0 };
}
