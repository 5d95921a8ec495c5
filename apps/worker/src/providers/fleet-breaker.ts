import type { Redis } from 'ioredis';
import { breakerChannel, breakerFleetKey, type Logger } from '@prompt-queue/shared';

/**
 * The fleet-wide state of one link's breaker, in Redis (keys.ts `breakerFleetKey`, tagged by link):
 *
 * - `state`: `closed` or `open` with `openedAt`/`retryAt`, and `gen`, bumped by every transition so a
 *   process applies each one once and never goes back to an older one. Half-open is not stored: it
 *   is `open` with `retryAt` passed, and the trial lease says who may call.
 * - `votes`: each worker's rolling window (`failures:calls:at`), written only when one of its calls
 *   fails. The link opens when the summed fresh windows cross the thresholds, so 8 workers open it
 *   after as many failures as one would, not 8 × volumeThreshold.
 * - `trial`: the half-open lease (SET NX PX): the one process holding it makes the trial call.
 *
 * Every transition is PUBLISHed on `breakerChannel` from inside its script; each process has one
 * subscriber connection ({@link BreakerFeed}) and re-reads every link it serves once a second as a
 * safety net for messages lost while the subscriber reconnects. Nothing here runs on a closed
 * link's successful calls: a failure costs one script, a trial three, a healthy call none.
 */

/** A link's fleet state as a process sees it. */
export type FleetView = { state: 'closed'; gen: number } | { state: 'open'; gen: number; openedAt: number; retryAt: number };

/** What a claim for the half-open trial answered. */
export type TrialClaim =
  | { kind: 'lease' }
  /** Another process holds the lease for this long, ms. */
  | { kind: 'held'; pttlMs: number }
  /** No trial due: the link is closed, or open with its retryAt still ahead. */
  | { kind: 'state'; view: FleetView };

/**
 * KEYS: 1 state, 2 votes. ARGV: 1 now, 2 workerId, 3 window failures, 4 window calls, 5 window ms,
 * 6 volumeThreshold, 7 errorThresholdPercentage, 8 open now (1: this worker's own window tripped),
 * 9 openedAt, 10 retryAt, 11 channel, 12 link.
 * Records the worker's window and opens the link if it tripped or the fleet's windows cross the
 * thresholds (opossum's rule: calls ≥ volume and failures > pct % of calls). Returns the state
 * `{ state, gen, openedAt, retryAt }`.
 */
const FAILURE_LUA = `
local s = redis.call('HMGET', KEYS[1], 'state', 'gen', 'openedAt', 'retryAt')
if s[1] == 'open' then return {'open', s[2], s[3], s[4]} end
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[5])
local open = ARGV[8] == '1'
if not open then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3] .. ':' .. ARGV[4] .. ':' .. ARGV[1])
  redis.call('PEXPIRE', KEYS[2], window)
  local failures, calls = 0, 0
  local votes = redis.call('HGETALL', KEYS[2])
  for i = 1, #votes, 2 do
    local f, c, at = string.match(votes[i + 1], '^(%d+):(%d+):(%d+)$')
    if f and tonumber(at) > now - window then
      failures = failures + tonumber(f)
      calls = calls + tonumber(c)
    else
      redis.call('HDEL', KEYS[2], votes[i])
    end
  end
  open = calls >= tonumber(ARGV[6]) and failures * 100 > tonumber(ARGV[7]) * calls
end
if not open then return {'closed', s[2] or '0', '0', '0'} end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
redis.call('HSET', KEYS[1], 'state', 'open', 'openedAt', ARGV[9], 'retryAt', ARGV[10], 'updatedAt', ARGV[1], 'workerId', ARGV[2])
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[11], cjson.encode({link = ARGV[12], state = 'open', gen = gen, openedAt = tonumber(ARGV[9]), retryAt = tonumber(ARGV[10])}))
return {'open', tostring(gen), ARGV[9], ARGV[10]}
`;

/**
 * KEYS: 1 state, 2 trial. ARGV: 1 now, 2 lease token, 3 lease ms.
 * Hands out the half-open trial lease once the link is open and its retryAt has passed. Returns
 * `{ 'lease' }`, `{ 'held', pttl }`, or the state `{ state, gen, openedAt, retryAt }` when no
 * trial is due.
 */
const CLAIM_LUA = `
local s = redis.call('HMGET', KEYS[1], 'state', 'gen', 'openedAt', 'retryAt')
if s[1] ~= 'open' then return {'closed', s[2] or '0', '0', '0'} end
if tonumber(ARGV[1]) < tonumber(s[4]) then return {'open', s[2], s[3], s[4]} end
if redis.call('SET', KEYS[2], ARGV[2], 'NX', 'PX', ARGV[3]) then return {'lease'} end
return {'held', tostring(redis.call('PTTL', KEYS[2]))}
`;

/**
 * KEYS: 1 state, 2 trial, 3 votes. ARGV: 1 now, 2 workerId, 3 lease token, 4 outcome (`closed`,
 * `open` or `release`), 5 retryAt (for `open`), 6 channel, 7 link.
 * Ends a trial: `closed` (the provider answered) closes the link, `open` re-opens it until retryAt,
 * `release` (the call never went out) only frees the lease. Applied only while the lease is the
 * caller's: a trial whose lease lapsed and was handed on decides nothing. Returns the state.
 */
const SETTLE_LUA = `
local s = redis.call('HMGET', KEYS[1], 'state', 'gen', 'openedAt', 'retryAt')
if redis.call('GET', KEYS[2]) ~= ARGV[3] then return {s[1] or 'closed', s[2] or '0', s[3] or '0', s[4] or '0'} end
redis.call('DEL', KEYS[2])
if ARGV[4] == 'release' or s[1] ~= 'open' then return {s[1] or 'closed', s[2] or '0', s[3] or '0', s[4] or '0'} end
local gen = redis.call('HINCRBY', KEYS[1], 'gen', 1)
if ARGV[4] == 'closed' then
  redis.call('HSET', KEYS[1], 'state', 'closed', 'updatedAt', ARGV[1], 'workerId', ARGV[2])
  redis.call('HDEL', KEYS[1], 'openedAt', 'retryAt')
  redis.call('DEL', KEYS[3])
  redis.call('PUBLISH', ARGV[6], cjson.encode({link = ARGV[7], state = 'closed', gen = gen}))
  return {'closed', tostring(gen), '0', '0'}
end
redis.call('HSET', KEYS[1], 'state', 'open', 'openedAt', ARGV[1], 'retryAt', ARGV[5], 'updatedAt', ARGV[1], 'workerId', ARGV[2])
redis.call('PUBLISH', ARGV[6], cjson.encode({link = ARGV[7], state = 'open', gen = gen, openedAt = tonumber(ARGV[1]), retryAt = tonumber(ARGV[5])}))
return {'open', tostring(gen), ARGV[1], ARGV[5]}
`;

type FleetRedis = Redis & {
  pqBreakerFailure(state: string, votes: string, ...args: (string | number)[]): Promise<string[]>;
  pqBreakerClaim(state: string, trial: string, ...args: (string | number)[]): Promise<string[]>;
  pqBreakerSettle(state: string, trial: string, votes: string, ...args: (string | number)[]): Promise<string[]>;
};

function defineScripts(redis: Redis): FleetRedis {
  redis.defineCommand('pqBreakerFailure', { numberOfKeys: 2, lua: FAILURE_LUA });
  redis.defineCommand('pqBreakerClaim', { numberOfKeys: 2, lua: CLAIM_LUA });
  redis.defineCommand('pqBreakerSettle', { numberOfKeys: 3, lua: SETTLE_LUA });
  return redis as FleetRedis;
}

function toView(reply: readonly (string | number | null)[]): FleetView {
  const gen = Number(reply[1] ?? 0) || 0;
  if (reply[0] === 'open') return { state: 'open', gen, openedAt: Number(reply[2]), retryAt: Number(reply[3]) };
  return { state: 'closed', gen };
}

/** A rolling window as a worker reports it with a failure. */
export interface WindowStats {
  failures: number;
  calls: number;
}

/** The thresholds a fleet vote applies (the breaker's own options). */
export interface VoteThresholds {
  volumeThreshold: number;
  errorThresholdPercentage: number;
  rollingCountTimeoutMs: number;
}

/** One link's fleet-wide breaker operations, one script each. */
export class FleetLink {
  private readonly redis: FleetRedis;
  private readonly keys: { state: string; votes: string; trial: string };
  private readonly channel: string;

  constructor(
    redis: Redis,
    prefix: string,
    readonly link: string,
    private readonly workerId: string,
  ) {
    this.redis = defineScripts(redis);
    this.keys = {
      state: breakerFleetKey(prefix, link, 'state'),
      votes: breakerFleetKey(prefix, link, 'votes'),
      trial: breakerFleetKey(prefix, link, 'trial'),
    };
    this.channel = breakerChannel(prefix);
  }

  /** A counted failure: records this worker's window; opens the link when `openAt` is given (the worker's own breaker tripped) or the fleet's windows cross the thresholds. */
  async failure(now: number, window: WindowStats, thresholds: VoteThresholds, open: { openedAt: number; retryAt: number } | undefined, resetTimeoutMs: number): Promise<FleetView> {
    const openedAt = open?.openedAt ?? now;
    const retryAt = open?.retryAt ?? now + resetTimeoutMs;
    const reply = await this.redis.pqBreakerFailure(
      this.keys.state,
      this.keys.votes,
      Math.round(now),
      this.workerId,
      window.failures,
      window.calls,
      thresholds.rollingCountTimeoutMs,
      thresholds.volumeThreshold,
      thresholds.errorThresholdPercentage,
      open ? 1 : 0,
      Math.round(openedAt),
      Math.round(retryAt),
      this.channel,
      this.link,
    );
    return toView(reply);
  }

  async claimTrial(now: number, token: string, leaseMs: number): Promise<TrialClaim> {
    const reply = await this.redis.pqBreakerClaim(this.keys.state, this.keys.trial, Math.round(now), token, Math.max(1, Math.round(leaseMs)));
    if (reply[0] === 'lease') return { kind: 'lease' };
    if (reply[0] === 'held') return { kind: 'held', pttlMs: Math.max(0, Number(reply[1])) };
    return { kind: 'state', view: toView(reply) };
  }

  async settleTrial(now: number, token: string, outcome: 'closed' | 'open' | 'release', retryAt: number): Promise<FleetView> {
    const reply = await this.redis.pqBreakerSettle(
      this.keys.state,
      this.keys.trial,
      this.keys.votes,
      Math.round(now),
      this.workerId,
      token,
      outcome,
      Math.round(retryAt),
      this.channel,
      this.link,
    );
    return toView(reply);
  }

  async read(): Promise<FleetView> {
    const [state, gen, openedAt, retryAt] = await this.redis.hmget(this.keys.state, 'state', 'gen', 'openedAt', 'retryAt');
    return toView([state ?? 'closed', gen ?? '0', openedAt ?? '0', retryAt ?? '0']);
  }
}

/** A message on the channel: `{ link, state, gen, openedAt?, retryAt? }`. Undefined when it does not parse. */
export function parseFleetMessage(message: string): { link: string; view: FleetView } | undefined {
  let value: unknown;
  try {
    value = JSON.parse(message);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const { link, state, gen, openedAt, retryAt } = value as Record<string, unknown>;
  if (typeof link !== 'string' || typeof gen !== 'number') return undefined;
  if (state === 'closed') return { link, view: { state, gen } };
  if (state === 'open' && typeof openedAt === 'number' && typeof retryAt === 'number') return { link, view: { state, gen, openedAt, retryAt } };
  return undefined;
}

export interface BreakerFeedOptions {
  /**
   * How often every link is re-read from Redis, the safety net for messages missed while the
   * subscriber reconnects, ms.
   * @defaultValue 1000
   */
  refreshMs?: number;
}

type Listener = (view: FleetView) => void;

/**
 * One process's subscription to the fleet's breaker transitions: one subscriber connection (a
 * `duplicate()` of the command connection) and one refresh timer, whatever the number of links.
 * Shared by every breaker on the same connection and prefix ({@link BreakerFeed.acquire}); closed
 * when the last one lets go.
 */
export class BreakerFeed {
  private static readonly shared = new WeakMap<Redis, Map<string, BreakerFeed>>();

  /** The feed of this connection and prefix, created on first use; `release()` it when done. */
  static acquire(redis: Redis, prefix: string, logger: Logger, options: BreakerFeedOptions = {}): BreakerFeed {
    let byPrefix = BreakerFeed.shared.get(redis);
    if (!byPrefix) BreakerFeed.shared.set(redis, (byPrefix = new Map()));
    let feed = byPrefix.get(prefix);
    if (!feed) {
      feed = new BreakerFeed(redis, prefix, logger, options, () => byPrefix.delete(prefix));
      byPrefix.set(prefix, feed);
    }
    return feed;
  }

  private readonly listeners = new Map<string, { fleet: FleetLink; listeners: Set<Listener> }>();
  private readonly subscriber: Redis;
  private readonly timer: ReturnType<typeof setInterval>;
  private refreshFailing = false;

  private constructor(
    redis: Redis,
    prefix: string,
    private readonly logger: Logger,
    options: BreakerFeedOptions,
    private readonly onClose: () => void,
  ) {
    const channel = breakerChannel(prefix);
    this.subscriber = redis.duplicate();
    this.subscriber.on('error', () => undefined); // reconnects on its own; the refresh covers the gap
    this.subscriber.on('message', (from: string, message: string) => {
      if (from !== channel) return;
      const parsed = parseFleetMessage(message);
      if (parsed) this.deliver(parsed.link, parsed.view);
    });
    this.subscriber.subscribe(channel).catch((error: unknown) => {
      this.logger.warn('cannot subscribe to fleet breaker transitions (polling only)', { error: String(error) });
    });
    this.timer = setInterval(() => void this.refresh(), options.refreshMs ?? 1_000);
    this.timer.unref?.();
  }

  /**
   * Calls `listener` with every fleet state of `link` from now on, the current one first: `ready`
   * settles once that one is read (or could not be). Returns it and the unsubscribe.
   */
  listen(fleet: FleetLink, listener: Listener): { ready: Promise<void>; unlisten: () => void } {
    let entry = this.listeners.get(fleet.link);
    if (!entry) this.listeners.set(fleet.link, (entry = { fleet, listeners: new Set() }));
    entry.listeners.add(listener);
    const ready = fleet.read().then(listener, (error: unknown) => {
      this.logger.warn('cannot read the fleet breaker state', { link: fleet.link, error: String(error) });
    });
    const unlisten = () => {
      entry.listeners.delete(listener);
      if (entry.listeners.size === 0) this.listeners.delete(fleet.link);
      if (this.listeners.size === 0) this.close();
    };
    return { ready, unlisten };
  }

  /** Re-reads every link now (the timer's work; tests call it). */
  async refresh(): Promise<void> {
    const entries = [...this.listeners.values()];
    try {
      const views = await Promise.all(entries.map((entry) => entry.fleet.read()));
      entries.forEach((entry, i) => this.deliver(entry.fleet.link, views[i]!));
      this.refreshFailing = false;
    } catch (error) {
      if (!this.refreshFailing) this.logger.warn('cannot read fleet breaker states', { error: String(error) });
      this.refreshFailing = true;
    }
  }

  private deliver(link: string, view: FleetView): void {
    for (const listener of this.listeners.get(link)?.listeners ?? []) {
      try {
        listener(view);
      } catch (error) {
        this.logger.warn('fleet breaker listener failed', { link, error: String(error) });
      }
    }
  }

  private close(): void {
    clearInterval(this.timer);
    this.onClose();
    this.subscriber.disconnect();
  }
}
