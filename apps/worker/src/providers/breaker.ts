import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import CircuitBreaker from 'opossum';
import type { Redis } from 'ioredis';
import { breakerStatesKey, type Logger } from '@prompt-queue/shared';
import { countsAgainstLink } from '../pipeline/fate.js';
import { BreakerOpenError, isBreakerOpenError, isCallNotSent } from './call-signal.js';
import { BreakerFeed, FleetLink, type BreakerFeedOptions, type FleetView } from './fleet-breaker.js';

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
 * State is fleet-wide (fleet-breaker.ts, docs/decisions/breakers.md): opossum keeps this process's
 * rolling window; each counted failure reports that window to the link's fleet state in Redis, which
 * opens the link for every worker when this worker's breaker trips or the fleet's windows summed
 * cross the thresholds. Other workers learn an open or a close by pub/sub (a 1 s re-read is the
 * safety net) and force their opossum circuit to match. Once `retryAt` passes, one process
 * fleet-wide wins the trial lease and calls; every other one treats the link as open. The trial's
 * answer closes or re-opens the link for all. A closed link's successful calls touch no Redis.
 *
 * Each local transition is also published to `<prefix>:breakers` (a hash with one field per link)
 * for the dashboard and metrics; every worker follows the fleet state, so they write the same
 * state (last writer wins, `workerId` says whose).
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
  /**
   * How long the half-open trial lease lasts, ms: while one process's trial call runs, no other
   * process fleet-wide calls the link; a trial that outlives it (or a process that died holding it)
   * lets the next claimant try. @defaultValue resetTimeoutMs
   */
  trialLeaseMs?: number;
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
  /**
   * The fleet-wide state (fleet-breaker.ts); `false` keeps the breaker to this process.
   * @defaultValue on, with the feed shared by every breaker on `redis` and `prefix`
   */
  fleet?: false | BreakerFeedOptions;
}

type Call = () => Promise<unknown>;

export class ProviderBreaker {
  readonly link: string;
  private readonly circuit: CircuitBreaker<[Call], unknown>;
  private readonly deps: ProviderBreakerDeps;
  private readonly now: () => number;
  private readonly workerId: string;
  private current: BreakerState;

  private readonly fleet: FleetLink | undefined;
  private readonly unlisten: (() => void) | undefined;
  /** Until the fleet state is first read: a process that starts during an outage makes no call before it knows. */
  private firstRead: Promise<void> | undefined;
  /** The newest fleet transition applied (FleetView.gen). */
  private fleetGen = 0;
  /** Set while the fleet forces the circuit open: the `open` handler takes these times. */
  private forcedOpen: { since: number; retryAt: number } | undefined;
  /** This process's own window tripped the circuit: reported with the next failure. */
  private trippedHere: { openedAt: number; retryAt: number } | undefined;
  /** A trial claim or call of this process is under way: other calls here short-circuit. */
  private trialBusy = false;
  /** Another process holds the trial lease until about then: the link counts as open here. */
  private trialElsewhereUntil = 0;
  /** Turns `open` into `half-open` at retryAt. */
  private halfOpenTimer: ReturnType<typeof setTimeout> | undefined;

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
      // The reset timer is ours (halfOpenTimer, at the fleet's retryAt); opossum's never fires.
      resetTimeout: 2 ** 31 - 1,
      rollingCountTimeout: options.rollingCountTimeoutMs,
      rollingCountBuckets: 10,
      // We read neither latency percentiles nor snapshots: skip their work and their timer.
      rollingPercentilesEnabled: false,
      enableSnapshots: false,
      // true = "not a failure".
      // A call abandoned before it was sent (shutdown, cancel) learned nothing about the provider.
      errorFilter: (error: unknown) => !countsAgainstLink(error),
    });

    this.circuit.on('open', () => {
      const forced = this.forcedOpen;
      this.forcedOpen = undefined;
      const since = forced?.since ?? this.now();
      const retryAt = forced?.retryAt ?? since + options.resetTimeoutMs;
      if (!forced) this.trippedHere = { openedAt: since, retryAt };
      this.transition({ state: 'open', since, retryAt });
    });
    this.circuit.on('close', () => this.transition({ state: 'closed', since: this.now() }));

    if (deps.fleet !== false) {
      this.fleet = new FleetLink(deps.redis, deps.prefix, deps.link, this.workerId);
      const { ready, unlisten } = BreakerFeed.acquire(deps.redis, deps.prefix, deps.logger, deps.fleet ?? {}).listen(this.fleet, (view) => this.applyFleet(view));
      this.unlisten = unlisten;
      this.firstRead = ready.then(() => {
        this.firstRead = undefined;
      });
    }
  }

  get state(): BreakerState {
    return { ...this.current };
  }

  /**
   * true while calls should skip this link: open and its retryAt not reached, or half-open with
   * the trial call in flight (here or, holding the fleet's lease, in another process).
   */
  isOpen(): boolean {
    const now = this.now();
    if (this.current.state === 'closed') return false;
    if (this.current.state === 'open' && now < this.current.retryAt) return true;
    return this.trialBusy || now < this.trialElsewhereUntil;
  }

  /**
   * Runs the call through the breaker. Rejects with the call's own error, or, when short-circuited
   * (open, or half-open with the fleet's one trial call running elsewhere), with a
   * `BreakerOpenError`: a `PROVIDER_UNAVAILABLE` ProviderError with disposition `backoff` and
   * `breakerOpen = true`. Half-open, the process that wins the fleet's trial lease makes the call.
   */
  async fire<T>(call: () => Promise<T>): Promise<T> {
    if (this.firstRead) await this.firstRead;
    if (this.current.state !== 'closed') {
      const now = this.now();
      if (this.current.state === 'open' && now < this.current.retryAt) throw this.shortCircuit();
      if (this.trialBusy || now < this.trialElsewhereUntil) throw this.shortCircuit();
      return this.trial(call);
    }
    return this.callClosed(call);
  }

  /** Stops opossum's timers and leaves the fleet feed; later `fire` calls reject. Published state is left as it is. */
  shutdown(): void {
    this.unlisten?.();
    clearTimeout(this.halfOpenTimer);
    this.circuit.shutdown();
    this.circuit.removeAllListeners();
  }

  private async callClosed<T>(call: () => Promise<T>): Promise<T> {
    try {
      return (await this.circuit.fire(call)) as T;
    } catch (error) {
      if ((error as { code?: unknown } | null)?.code === 'EOPENBREAKER') throw this.shortCircuit(error);
      if (countsAgainstLink(error)) this.reportFailure();
      throw error;
    }
  }

  /**
   * Half-open: claim the fleet's trial lease (one per process at a time), make the trial call if
   * it is ours, and settle the fleet state with its answer.
   */
  private async trial<T>(call: () => Promise<T>): Promise<T> {
    if (!this.fleet) return this.localTrial(call);
    const token = randomUUID();
    const leaseMs = this.deps.options.trialLeaseMs ?? this.deps.options.resetTimeoutMs;
    this.trialBusy = true;
    try {
      let claim;
      try {
        claim = await this.fleet.claimTrial(this.now(), token, leaseMs);
      } catch (error) {
        // Redis is down: this process decides alone, as before fleet-wide breakers.
        this.warn('cannot claim the fleet trial call', error);
        return await this.localTrial(call);
      }
      if (claim.kind === 'held') {
        this.trialElsewhereUntil = this.now() + Math.max(1, claim.pttlMs);
        throw this.shortCircuit();
      }
      if (claim.kind === 'state') {
        this.applyFleet(claim.view, claim.view.state === 'closed');
        if (claim.view.state === 'closed') return await this.callClosed(call);
        throw this.shortCircuit();
      }
      let outcome: 'closed' | 'open' | 'release';
      let result: { value: T } | { error: unknown };
      try {
        result = { value: await call() };
        outcome = 'closed';
      } catch (error) {
        result = { error };
        // Any answer says the provider is up (a 4xx, a 429); a call that never went out says nothing.
        outcome = countsAgainstLink(error) ? 'open' : isCallNotSent(error) || isBreakerOpenError(error) ? 'release' : 'closed';
      }
      const now = this.now();
      const retryAt = now + this.deps.options.resetTimeoutMs;
      if (outcome === 'open') this.openHere(now, retryAt);
      else if (outcome === 'closed') this.circuit.close();
      try {
        this.applyFleet(await this.fleet.settleTrial(now, token, outcome, retryAt));
      } catch (error) {
        this.warn('cannot settle the fleet trial call', error);
      }
      if ('error' in result) throw result.error;
      return result.value;
    } finally {
      this.trialBusy = false;
    }
  }

  /** The trial as one process decides it: its answer closes or re-opens this process's circuit. */
  private async localTrial<T>(call: () => Promise<T>): Promise<T> {
    try {
      const value = await call();
      this.circuit.close();
      return value;
    } catch (error) {
      const now = this.now();
      if (countsAgainstLink(error)) this.openHere(now, now + this.deps.options.resetTimeoutMs);
      else if (!isCallNotSent(error) && !isBreakerOpenError(error)) this.circuit.close();
      throw error;
    }
  }

  /** Opens (or re-opens: half-open, after a failed trial) the circuit with these times. */
  private openHere(since: number, retryAt: number): void {
    if (this.circuit.isShutdown) return;
    if (this.circuit.opened) {
      if (this.current.state !== 'open' || this.current.since !== since || this.current.retryAt !== retryAt) this.transition({ state: 'open', since, retryAt });
      return;
    }
    this.forcedOpen = { since, retryAt };
    this.circuit.open();
  }

  /**
   * A fleet transition (a script's answer, a message, a re-read): newer ones win, older ones are
   * ignored. `force`: a claim found the link closed in Redis, whatever this process last saw (its
   * own open may never have reached Redis).
   */
  private applyFleet(view: FleetView, force = false): void {
    if (view.gen <= this.fleetGen && !force) return;
    this.fleetGen = Math.max(this.fleetGen, view.gen);
    this.trialElsewhereUntil = 0;
    if (view.state === 'closed') {
      if (!this.circuit.closed && !this.circuit.isShutdown) this.circuit.close();
      return;
    }
    this.openHere(view.openedAt, view.retryAt);
  }

  /** Reports this process's window after a counted failure (fire-and-forget: never slows or fails a call). */
  private reportFailure(): void {
    if (!this.fleet) return;
    const tripped = this.trippedHere;
    this.trippedHere = undefined;
    if (!tripped && this.current.state !== 'closed') return; // the fleet already knows
    const { failures, fires } = this.circuit.stats;
    const { options } = this.deps;
    this.fleet
      .failure(this.now(), { failures, calls: fires }, options, tripped, options.resetTimeoutMs)
      .then((view) => this.applyFleet(view))
      .catch((error: unknown) => this.warn('cannot report a failure to the fleet breaker', error));
  }

  private shortCircuit(cause?: unknown): BreakerOpenError {
    const now = this.now();
    const retryAfterMs = this.current.state === 'open' && now < this.current.retryAt ? this.current.retryAt - now : undefined;
    return new BreakerOpenError(this.link, retryAfterMs, cause);
  }

  private warn(message: string, error: unknown): void {
    this.deps.logger.warn(message, { link: this.link, error: String(error) });
  }

  private transition(next: BreakerState): void {
    const from = this.current.state;
    this.current = next;
    clearTimeout(this.halfOpenTimer);
    if (next.state === 'open') {
      this.halfOpenTimer = setTimeout(() => {
        if (this.current === next) this.transition({ state: 'half-open', since: this.now() });
      }, Math.max(0, next.retryAt - this.now()));
      this.halfOpenTimer.unref?.();
    }
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
