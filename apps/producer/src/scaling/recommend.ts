/**
 * How many workers the queue calls for, and how many the quota can feed (pure; `GET /scaling`
 * reads its inputs from Redis in scaling/read.ts).
 *
 * - Backlog: jobs ready to run (`waiting` + `prioritized` + delayed jobs whose time has come) plus
 *   the `active` ones. Our fairness gives every job a priority, so BullMQ keeps them in
 *   `prioritized`, never in `wait`: a scaler that counts only the wait list sees zero.
 * - Backlog workers: enough to hold all of them at once, `ceil(jobs / worker.concurrency)`.
 * - Quota workers: a quota scope serves at most `min(RPM, TPM / tokens per request)` requests per
 *   window; with calls lasting `latency`, that rate keeps `rate × latency` calls in flight
 *   (Little's law), and `ceil(Σ calls in flight / concurrency)` workers hold them. More pods than
 *   that only wait in the limiter.
 * - Recommended: the smaller of the two. A scope without any limit (configured or learned) means
 *   the quota caps nothing.
 *
 * One job is counted as one request: true of `generate` jobs; an `embed` batch is one request for
 * up to `batching.size` jobs, so for embed traffic the cap errs low (docs/running-at-scale.md).
 */

/** Jobs of the `prompts` queue by what they mean for scaling. */
export interface Backlog {
  /** BullMQ `wait` list (jobs without a priority; ours rarely). */
  waiting: number;
  /** BullMQ `prioritized` set: where fairness puts every job. */
  prioritized: number;
  /** Delayed jobs whose time has come (score ≤ now): BullMQ promotes them on its next look. */
  delayedDue: number;
  /** Delayed jobs still in the future (retries in backoff, daily-quota waits): not counted. */
  delayedLater: number;
  /** Jobs a worker holds now. */
  active: number;
}

/** One quota scope (`provider:model:project`) as the limiter and the fleet history see it. */
export interface ScopeReading {
  /** `<link name>:<model>:<project>`, as the limiter and the worker's breakers name it. */
  scope: string;
  /** Effective requests per window, min(configured, learned); 0 = unlimited. */
  rpmLimit: number;
  /** Effective input tokens per window, min(configured, learned); 0 = unlimited. */
  tpmLimit: number;
  /** Requests reserved in the current window. */
  requests: number;
  /** Input tokens reserved in the current window. */
  tokens: number;
  /** Length of the limiter's window, ms. */
  windowMs: number;
  /** A fleet-wide pause in force (429), its end in ms since the epoch; null when none. */
  pausedUntil: number | null;
  pauseReason?: 'rate-limited' | 'daily-quota';
  /** Mean latency of recent successful calls, ms; null with too few samples. */
  observedLatencyMs: number | null;
  /** Median of the same calls, ms (reported only). */
  observedP50Ms: number | null;
}

export interface ScalingAssumptions {
  /** `worker.concurrency`: jobs one worker holds. */
  concurrency: number;
  /** `scaling.latencyMs`: latency assumed without observations, ms. */
  latencyMs: number;
  /** `scaling.tokensPerRequest`: tokens per request assumed when the window is empty. */
  tokensPerRequest: number;
}

/** What `GET /scaling` says of one scope. */
export interface ScopeCapacity {
  scope: string;
  rpmLimit: number;
  tpmLimit: number;
  requests: number;
  tokens: number;
  /** Tokens per request used to turn TPM into requests: the window's average, else assumed. */
  tokensPerRequest: number;
  /** Latency used, ms, and where it came from. */
  latencyMs: number;
  latencySource: 'observed' | 'configured';
  observedP50Ms: number | null;
  /** Requests per minute the quota admits (null: unlimited; 0 while a daily quota is spent). */
  requestsPerMinute: number | null;
  /** Calls in flight that rate keeps busy (null: unlimited). */
  callsInFlight: number | null;
  /** The window is full (the next request would wait) or the scope is paused. */
  saturated: boolean;
  pausedUntil: number | null;
  pauseReason?: 'rate-limited' | 'daily-quota';
}

export interface ScalingRecommendation {
  /** Jobs ready to run: waiting + prioritized + delayedDue. */
  backlog: number;
  jobs: Backlog;
  concurrency: number;
  /** `ceil((backlog + active) / concurrency)`. */
  backlogWorkers: number;
  /** Workers the quota can keep busy; null when some scope is unlimited (or none is configured). */
  quotaWorkers: number | null;
  /** min(backlogWorkers, quotaWorkers): KEDA's `valueLocation`. */
  recommendedWorkers: number;
  /** True when the quota lowered the recommendation. */
  capped: boolean;
  /** Every limited scope is saturated: the fleet uses the whole quota. */
  saturated: boolean;
  scopes: ScopeCapacity[];
}

const MINUTE_MS = 60_000;

export function scopeCapacity(reading: ScopeReading, assumptions: ScalingAssumptions): ScopeCapacity {
  const { rpmLimit, tpmLimit, requests, tokens, windowMs } = reading;
  const tokensPerRequest = requests > 0 && tokens > 0 ? tokens / requests : assumptions.tokensPerRequest;
  const latencyMs = reading.observedLatencyMs ?? assumptions.latencyMs;
  let perWindow: number | null = null; // requests the quota admits per window
  if (rpmLimit > 0) perWindow = rpmLimit;
  if (tpmLimit > 0) perWindow = Math.min(perWindow ?? Infinity, tpmLimit / tokensPerRequest);
  // A spent daily quota feeds nothing until Google's reset; a per-minute pause lasts seconds.
  if (reading.pauseReason === 'daily-quota' && reading.pausedUntil !== null) perWindow = 0;
  const requestsPerMinute = perWindow === null ? null : (perWindow * MINUTE_MS) / windowMs;
  const callsInFlight = perWindow === null ? null : (perWindow / windowMs) * latencyMs;
  const full = (rpmLimit > 0 && requests + 1 > rpmLimit) || (tpmLimit > 0 && tokens + tokensPerRequest > tpmLimit);
  return {
    scope: reading.scope,
    rpmLimit,
    tpmLimit,
    requests,
    tokens,
    tokensPerRequest: round(tokensPerRequest),
    latencyMs: Math.round(latencyMs),
    latencySource: reading.observedLatencyMs === null ? 'configured' : 'observed',
    observedP50Ms: reading.observedP50Ms,
    requestsPerMinute: requestsPerMinute === null ? null : round(requestsPerMinute),
    callsInFlight: callsInFlight === null ? null : round(callsInFlight),
    saturated: full || reading.pausedUntil !== null,
    pausedUntil: reading.pausedUntil,
    ...(reading.pauseReason ? { pauseReason: reading.pauseReason } : {}),
  };
}

export function recommendWorkers(jobs: Backlog, readings: readonly ScopeReading[], assumptions: ScalingAssumptions): ScalingRecommendation {
  const { concurrency } = assumptions;
  const backlog = jobs.waiting + jobs.prioritized + jobs.delayedDue;
  const backlogWorkers = Math.ceil((backlog + jobs.active) / concurrency);
  const scopes = readings.map((reading) => scopeCapacity(reading, assumptions));
  const unlimited = scopes.length === 0 || scopes.some((scope) => scope.callsInFlight === null);
  // Rounded up: a quota that keeps 0.3 workers' worth of calls busy still needs one worker.
  // (Less a hair, so that float noise in 128.0000001 calls does not add a worker.)
  const inFlight = scopes.reduce((sum, scope) => sum + (scope.callsInFlight ?? 0), 0);
  const quotaWorkers = unlimited ? null : Math.max(0, Math.ceil(inFlight / concurrency - 1e-9));
  const recommendedWorkers = quotaWorkers === null ? backlogWorkers : Math.min(backlogWorkers, quotaWorkers);
  return {
    backlog,
    jobs,
    concurrency,
    backlogWorkers,
    quotaWorkers,
    recommendedWorkers,
    capped: recommendedWorkers < backlogWorkers,
    saturated: !unlimited && scopes.every((scope) => scope.saturated),
    scopes,
  };
}

function round(value: number): number {
  return Math.round(value * 100) / 100;
}
