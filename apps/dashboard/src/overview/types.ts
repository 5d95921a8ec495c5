// The JSON of `GET /api/overview`. Types only: the browser client (src/client) imports them too.
import type { BudgetRemaining, FleetPeriodUsage, HourlyUsage, LearnedLimits, PublishedLink, WebhookDeliveryError } from '@prompt-queue/shared';

/** BullMQ job states with counts; `getJobCounts()` without arguments. */
export type JobCounts = Record<string, number>;

export interface QueueOverview {
  name: string;
  counts: JobCounts;
  /** Waiting + prioritized + delayed + active + waiting-children: jobs not finished yet. */
  depth: number;
}

export interface Throughput {
  /**
   * `metrics`: BullMQ's per-minute metrics (the worker enables them); `finished-sets`: counted per
   * minute in the completed/failed sorted sets (scored by finish time), when metrics are off.
   */
  source: 'metrics' | 'finished-sets';
  /** Start of the first minute, epoch ms; one point per minute, oldest first, the last is the current minute. */
  startMs: number;
  completed: number[];
  failed: number[];
  /** Mean jobs per minute over the window (completed + failed). */
  perMinute: number;
}

export interface FailureGroup {
  code: string;
  count: number;
  /** The newest failure of this code. */
  lastMessage: string;
  lastJobId: string;
  lastAt: number | null;
}

export interface Failures {
  /** How many of the newest failed jobs were read (at most `limit`). */
  sampled: number;
  limit: number;
  /** Groups by error code, largest first. */
  byCode: FailureGroup[];
}

export interface UsageSection {
  day: string;
  monthKey: string;
  today: FleetPeriodUsage;
  month: FleetPeriodUsage;
  /** Last 30 UTC days, oldest first, without per-model detail of tokens (costs only). */
  daily: { day: string; costUsd: number; jobs: number; costByModel: Record<string, number>; costByTenant: Record<string, number> }[];
  hourly: HourlyUsage[];
  /** Cache hits / jobs today, 0..1; null without jobs. */
  cacheHitRateToday: number | null;
}

export type BreakerState = 'closed' | 'open' | 'half-open';

export interface BreakerView {
  link: string;
  state: BreakerState | 'unknown';
  /** Epoch ms of the last state change. */
  since: number | null;
  retryAt: number | null;
  updatedAt: number | null;
  workerId: string | null;
}

export interface LimitView {
  provider: string;
  model: string;
  project: string;
  requests: number;
  tokens: number;
  /** Effective limits; 0 = unlimited. */
  rpmLimit: number;
  tpmLimit: number;
  /** used / limit, 0..1+, or null when unlimited. */
  rpmUtilization: number | null;
  tpmUtilization: number | null;
  learned: LearnedLimits | null;
  /** End of a fleet-wide 429 pause, epoch ms, or null. */
  pausedUntil: number | null;
  /** Why: a per-minute 429 (`rate-limited`) or the spent daily quota (`daily-quota`, until Google's reset). */
  pauseReason: 'rate-limited' | 'daily-quota' | null;
  /** While a limit is unknown: the slow start's cap on calls in flight, fleet-wide. */
  slowStart: number | null;
  /** Whether the limits come from configuration (false: no limits configured, usage only). */
  configured: boolean;
}

/**
 * A chain link as the workers publish it (packages/shared links/published-links.ts): any provider,
 * shown as it comes; credentials as fingerprints only.
 */
export type LinkView = PublishedLink;

export interface WorkerView {
  name: string;
  addr: string | null;
  /** Connection age, seconds. */
  ageSeconds: number | null;
}

export interface BudgetView {
  tenant: string;
  remaining: BudgetRemaining;
}

/** Queue depth over the last hour, sampled by the workers (one sample per `sampleMs`, fleet-wide). */
export interface DepthHistory {
  sampleMs: number;
  /** Oldest first; `at` is epoch ms; gaps where no worker ran. */
  samples: { at: number; waiting: number; prioritized: number; delayed: number; active: number }[];
}

/** How long jobs wait for a worker. */
export interface QueueWait {
  /**
   * Age of the oldest job waiting to start, ms (null: none waits). Exact for the FIFO wait list; for
   * prioritized jobs, the oldest of the 50 next to run and the 50 last (each tenant's oldest job is
   * at the head of its line, so it is among the next unless more than 50 tenants wait).
   */
  oldestWaitingMs: number | null;
  /** Completed jobs the percentiles were read from: the newest, at most `limit`. */
  sampled: number;
  limit: number;
  /** From enqueue to the start of the attempt that completed (BullMQ `timestamp` → `processedOn`), ms. */
  p50Ms: number | null;
  p95Ms: number | null;
}

/** Successful provider calls of one link (`provider:model`) in the window, as the workers recorded them. */
export interface LinkLatency {
  link: string;
  calls: number;
  p50Ms: number;
  p95Ms: number;
}

/** Webhook deliveries (the `webhooks` queue) and their recent errors. */
export interface WebhookDeliveries {
  /** Waiting for their first attempt, or being sent. */
  pending: number;
  /** Failed at least once, waiting for their backoff before the next attempt. */
  retrying: number;
  /** Used every attempt or cannot succeed: the queue's failed set, retryable in bull-board. */
  deadLettered: number;
  /** Delivered and kept for deduplication (the result TTL). */
  delivered: number;
  /** Tenants with recent errors, by name, each newest first (URLs without query strings, no secrets). */
  recentErrors: { tenant: string; errors: WebhookDeliveryError[] }[];
}

/** Redis as the dashboard sees it; `since` is epoch ms of the first failure of this outage. */
export type RedisView = { status: 'up' } | { status: 'unavailable'; since: number; reason: string };

export interface Overview {
  /** Epoch ms when this snapshot was read. */
  generatedAt: number;
  /** While unavailable, the sections below are empty (nothing could be read), not zero. */
  redis: RedisView;
  readOnly: boolean;
  queues: QueueOverview[];
  throughput: Throughput;
  depthHistory: DepthHistory;
  queueWait: QueueWait;
  /** Per link, over the last `windowMs`; largest traffic first. */
  providerLatency: { windowMs: number; links: LinkLatency[] };
  failures: Failures;
  /** Null when the usage ledger could not be read (see `errors`). */
  usage: UsageSection | null;
  breakers: BreakerView[];
  limits: LimitView[];
  /** The links the workers serve (published within the last minute), by id. */
  links: LinkView[];
  workers: { count: number; list: WorkerView[] };
  budgets: BudgetView[];
  webhooks: WebhookDeliveries;
  /** Sections that could not be read this time (`{ section, message }`); the rest is still shown. */
  errors: { section: string; message: string }[];
}
