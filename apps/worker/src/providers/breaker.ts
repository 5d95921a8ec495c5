import { hostname } from 'node:os';
import CircuitBreaker from 'opossum';
import type { Redis } from 'ioredis';
import { breakerStatesKey, type Logger } from '@prompt-queue/shared';
import { countsAgainstLink } from '../pipeline/fate.js';
import { BreakerOpenError } from './call-signal.js';

/**
 * A circuit breaker around one provider link (a provider + model, or whatever the caller names a
 * "link" in its fallback chain), built on opossum.
 *
 * What counts as a failure is decided by the shared `ProviderError.disposition` (classify.ts and
 * the adapters are the one place that sets it): only `backoff` failures (5xx, timeout, network)
 * say the provider is unhealthy. A `fail` (400, 401, a safety block) or a `rate-limit` (a quota 429)
 * come from a provider that answered, so opossum's `errorFilter` lets them through as non-failures.
 * Errors that are not ProviderErrors at all count as failures (an adapter should never throw them).
 *
 * State is per process: every worker trips its own breaker from its own calls. Each transition is
 * also published to Redis (`<prefix>:breakers`, a hash with one field per link) for the dashboard
 * and metrics. Several workers write the same field, so the hash shows the latest transition of any
 * worker (last writer wins, `workerId` says whose), not a fleet-wide vote.
 */

export type BreakerState =
  | { state: 'closed'; since: number }
  | { state: 'open'; since: number; retryAt: number }
  | { state: 'half-open'; since: number };

/** A state as published in Redis: who wrote it and when. */
export type PublishedBreakerState = BreakerState & { updatedAt: number; workerId: string };

export interface BreakerOptions {
  /**
   * Share of failed calls in the rolling window above which the breaker opens, percent.
   * @defaultValue 50
   */
  errorThresholdPercentage: number;
  /**
   * Calls in the rolling window before the breaker may open at all, so that one failure out of
   * one call does not open it.
   * @defaultValue 5
   */
  volumeThreshold: number;
  /**
   * How long the breaker stays open before it lets one trial call through (half-open), ms.
   * @defaultValue 10000
   */
  resetTimeoutMs: number;
  /**
   * Length of the rolling window the error percentage is computed over, ms (10 buckets).
   * @defaultValue 10000
   */
  rollingCountTimeoutMs: number;
  /**
   * opossum's own per-call timeout, ms. Off by default: the providers enforce their own timeout and
   * abort the HTTP call, which opossum's timer cannot do.
   * @defaultValue false
   */
  timeoutMs?: number | false;
}

export const DEFAULT_BREAKER_OPTIONS: BreakerOptions = {
  errorThresholdPercentage: 50,
  volumeThreshold: 5,
  resetTimeoutMs: 10_000,
  rollingCountTimeoutMs: 10_000,
  timeoutMs: false,
};


// Kept importable from here: the error a short-circuit rejects with belongs with the breaker's API.
export { BreakerOpenError, isBreakerOpenError } from './call-signal.js';

export interface ProviderBreakerDeps {
  /** Name of the guarded link, e.g. `gemini:gemini-2.5-flash`; the Redis hash field. */
  link: string;
  redis: Redis;
  /** Key prefix (the same as BullMQ's). */
  prefix: string;
  logger: Logger;
  options: BreakerOptions;
  /** Recorded with published states. @defaultValue `<hostname>:<pid>` */
  workerId?: string;
  /** Observes each transition (metrics); must not throw. */
  onTransition?: (state: BreakerState) => void;
  /** Clock for `since`, `retryAt`, `updatedAt` and `isOpen()`; opossum keeps its own timers. */
  now?: () => number;
}

type Call = () => Promise<unknown>;

export class ProviderBreaker {
  readonly link: string;
  private readonly circuit: CircuitBreaker<[Call], unknown>;
  private readonly deps: ProviderBreakerDeps;
  private readonly now: () => number;
  private readonly workerId: string;
  private current: BreakerState;

  constructor(deps: ProviderBreakerDeps) {
    this.deps = deps;
    this.link = deps.link;
    this.now = deps.now ?? Date.now;
    this.workerId = deps.workerId ?? `${hostname()}:${process.pid}`;
    this.current = { state: 'closed', since: this.now() };

    const { options } = deps;
    this.circuit = new CircuitBreaker<[Call], unknown>((call: Call) => call(), {
      name: deps.link,
      timeout: options.timeoutMs ?? false,
      errorThresholdPercentage: options.errorThresholdPercentage,
      volumeThreshold: options.volumeThreshold,
      resetTimeout: options.resetTimeoutMs,
      rollingCountTimeout: options.rollingCountTimeoutMs,
      rollingCountBuckets: 10,
      // We read neither latency percentiles nor snapshots: skip their work and their timer.
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      // true = "not a failure". In half-open, such an answer also closes the breaker: the provider
      // answered, so it is up.
      // A call abandoned before it was sent (shutdown, cancel) learned nothing about the provider.
      errorFilter: (error: unknown) => !countsAgainstLink(error),
    });

    this.circuit.on('open', () => {
      const since = this.now();
      this.transition({ state: 'open', since, retryAt: since + options.resetTimeoutMs });
    });
    this.circuit.on('halfOpen', () => this.transition({ state: 'half-open', since: this.now() }));
    this.circuit.on('close', () => this.transition({ state: 'closed', since: this.now() }));
  }

  get state(): BreakerState {
    return { ...this.current };
  }

  /** true while calls should skip this link (open and resetTimeout not yet elapsed). */
  isOpen(): boolean {
    return this.current.state === 'open' && this.now() < this.current.retryAt;
  }

  /**
   * Runs the call through the breaker. Rejects with the call's own error, or, when short-circuited
   * (open, or half-open with its one trial call still running), with a `BreakerOpenError`: a
   * `PROVIDER_UNAVAILABLE` ProviderError with disposition `backoff` and `breakerOpen = true`.
   */
  async fire<T>(call: () => Promise<T>): Promise<T> {
    try {
      return (await this.circuit.fire(call)) as T;
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code === 'EOPENBREAKER') {
        const retryAfterMs = this.current.state === 'open' ? Math.max(0, this.current.retryAt - this.now()) : undefined;
        throw new BreakerOpenError(this.link, retryAfterMs, error);
      }
      throw error;
    }
  }

  /** Stops opossum's timers; later `fire` calls reject. Published state is left as it is. */
  shutdown(): void {
    this.circuit.shutdown();
    this.circuit.removeAllListeners();
  }

  private transition(next: BreakerState): void {
    const from = this.current.state;
    this.current = next;
    const meta = { link: this.link, from, to: next.state };
    if (next.state === 'open') this.deps.logger.warn('provider breaker opened', { ...meta, retryAt: new Date(next.retryAt).toISOString() });
    else this.deps.logger.info(`provider breaker ${next.state === 'closed' ? 'closed' : 'half-open'}`, meta);
    this.publish(next);
    try {
      this.deps.onTransition?.(next);
    } catch (error) {
      this.deps.logger.warn('breaker transition observer failed', { link: this.link, error: String(error) });
    }
  }

  /** Fire-and-forget: a Redis outage must never fail or slow a provider call. */
  private publish(state: BreakerState): void {
    const value: PublishedBreakerState = { ...state, updatedAt: this.now(), workerId: this.workerId };
    try {
      this.deps.redis.hset(breakerStatesKey(this.deps.prefix), this.link, JSON.stringify(value)).catch((error: unknown) => {
        this.deps.logger.warn('cannot publish provider breaker state', { link: this.link, error });
      });
    } catch (error) {
      this.deps.logger.warn('cannot publish provider breaker state', { link: this.link, error });
    }
  }
}

/**
 * The published state of every link, as the last writer left it (see the module comment). Entries
 * that do not parse are skipped.
 */
export async function readBreakerStates(redis: Redis, prefix: string): Promise<Record<string, PublishedBreakerState>> {
  const raw = await redis.hgetall(breakerStatesKey(prefix));
  const states: Record<string, PublishedBreakerState> = {};
  for (const [link, json] of Object.entries(raw)) {
    const parsed = parsePublished(json);
    if (parsed) states[link] = parsed;
  }
  return states;
}

function parsePublished(json: string): PublishedBreakerState | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const { since, updatedAt, workerId } = v;
  if (typeof since !== 'number' || typeof updatedAt !== 'number' || typeof workerId !== 'string') return undefined;
  switch (v.state) {
    case 'open':
      return typeof v.retryAt === 'number' ? { state: 'open', since, retryAt: v.retryAt, updatedAt, workerId } : undefined;
    case 'closed':
    case 'half-open':
      return { state: v.state, since, updatedAt, workerId };
    default:
      return undefined;
  }
}
