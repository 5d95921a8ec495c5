/**
 * One quota scope. Google counts Gemini quotas per Cloud project and per model (not per API key),
 * and every worker replica that calls with that project and model draws from the same quota.
 */
export interface LimitKey {
  /** e.g. `gemini`. */
  provider: string;
  /** e.g. `gemini-3.6-flash`. */
  model: string;
  /** The Cloud project whose quota is used. @defaultValue `'default'` */
  project?: string;
}

/** Configured limits per rolling window; 0 means unlimited in that dimension. */
export interface RateLimits {
  /** Requests per window (RPM for the default 60 s window). */
  rpm: number;
  /** Input tokens per window (TPM for the default 60 s window). */
  tpm: number;
}

/** One granted request; keep it until the call is settled or released. Plain data (JSON-safe). */
export interface Reservation {
  key: LimitKey;
  /** Member id in the window's sorted set, unique across the fleet. */
  id: string;
  /** Input tokens reserved for this request. */
  estimatedTokens: number;
  /** Redis server time of the reservation, ms since the epoch. */
  reservedAt: number;
}

export interface ReserveResult {
  /** Reservations for the longest prefix of the requested batch that fits, in order. */
  granted: Reservation[];
  /**
   * 0 when the whole batch was granted; otherwise ms until the next request of the batch could fit
   * (from the oldest reservations leaving the window) or until a fleet pause ends. An upper bound:
   * settles and releases by other workers can free room earlier.
   */
  waitMs: number;
  /** Set while a fleet-wide pause is in force: its end, Redis server time in ms. */
  pausedUntil?: number;
  /** Why the scope is paused, with `pausedUntil`. */
  pauseReason?: PauseReason;
  /** While a limit is unknown: the slow start's cap on calls in flight. */
  slowStart?: number;
  /** Redis server time at which the reservation was decided, ms since the epoch. */
  now: number;
}

/**
 * Why a scope is paused fleet-wide: `rate-limited` after a per-minute 429 (its RetryInfo delay);
 * `daily-quota` when the requests-per-day quota is spent (until Google's reset, midnight Pacific).
 */
export type PauseReason = 'rate-limited' | 'daily-quota';

export interface SettleItem {
  reservation: Reservation;
  /** Input tokens the provider actually counted (usageMetadata.promptTokenCount). */
  actualTokens: number;
  /**
   * When the call left the worker, on the Redis clock (ms): `reservedAt` plus the local time
   * between the reservation and the call. Omitted: the reservation keeps its time.
   */
  sentAt?: number;
}

/** A limit learned from a 429 received below the configured limits. */
export interface LearnedLimits {
  /** Learned requests per window, when learned. */
  rpm?: number;
  /** Learned input tokens per window, when learned. */
  tpm?: number;
  /** When the learned limits lapse and the configured ones apply again, Redis server time in ms. */
  expiresAt: number;
}

/** Result of `observeRateLimit`: which dimension was lowered, and to what. */
export interface ObservedRateLimit {
  dimension: 'rpm' | 'tpm';
  /** The new learned limit for that dimension, per window. */
  limit: number;
  /** Redis server time in ms when the learned limits lapse. */
  expiresAt: number;
}

/** Read-only view of one scope for the dashboard and metrics. */
export interface LimiterState {
  /** Requests reserved in the current rolling window. */
  requests: number;
  /** Input tokens reserved (estimates, or actuals once settled) in the current rolling window. */
  tokens: number;
  /** Effective request limit: min(configured, learned); 0 = unlimited. */
  rpmLimit: number;
  /** Effective token limit: min(configured, learned); 0 = unlimited. */
  tpmLimit: number;
  learned?: LearnedLimits;
  /** End of the fleet-wide pause, Redis server time in ms, or null when not paused. */
  pausedUntil: number | null;
  /** Why it is paused (with `pausedUntil`). */
  pauseReason?: PauseReason;
  /** While rpm or tpm is unknown: the slow start's current cap on calls in flight. */
  slowStart?: number;
  /** Redis server time of this reading, ms since the epoch. */
  now: number;
}

export interface FleetLimiterOptions {
  /** Length of the rolling window, ms. Google counts per rolling minute. @defaultValue 60000 */
  windowMs?: number;
  /** How long a learned limit lasts after the last 429 that lowered it, ms. @defaultValue 600000 (10 min) */
  learnedTtlMs?: number;
  /** Share of the window's usage that becomes the learned limit. @defaultValue 0.9 */
  learnFactor?: number;
  /** A learned token limit never goes below this, tokens per window. @defaultValue 1000 */
  minLearnedTokens?: number;
  /**
   * How long a limit the provider reported (QuotaFailure quotaValue) is kept after it last bound,
   * ms. @defaultValue 3600000 (1 h)
   */
  reportedTtlMs?: number;
  /**
   * Slow start while rpm or tpm is neither configured nor learned: the calls in flight to begin
   * with; 0 turns it off (unknown then means unlimited). @defaultValue 0
   */
  slowStartRequests?: number;
  /** Growth of the slow start's cap per served call (1: it doubles per round trip). @defaultValue 1 */
  slowStartGrowth?: number;
}
