import type { Redis } from 'ioredis';
import {
  compareStreamIds,
  createRedis,
  lastJobEventId,
  readJobEventsOfTenants,
  type Config,
  type Logger,
  type StoredJobEvent,
} from '@prompt-queue/shared';
import { redisUnavailable } from './redis-availability.js';

/** Most events one read takes per tenant stream (a replay of a long history takes several reads). */
const READ_COUNT = 500;
/**
 * How long one XREAD waits for new events, ms. Short, so that a subscriber added while the read
 * blocks (and whose CLIENT UNBLOCK raced the XREAD) waits at most this long; an idle producer with
 * watchers then costs one command per second.
 */
const BLOCK_MS = 1_000;
/** Pause after a failed read (Redis down), ms; subscribers keep their connection meanwhile. */
const RETRY_MS = 1_000;

export interface LiveSubscriber {
  /** Only events it accepts are delivered; the position advances over every event either way. */
  accepts?(event: StoredJobEvent): boolean;
  /** One event, in stream order, each once. */
  deliver(event: StoredJobEvent): void;
  /** The first time the subscriber has seen everything its tenant's stream held. */
  caughtUp?(): void;
  /** The producer is shutting down: end the response. */
  end(): void;
}

interface Subscription {
  tenant: string;
  subscriber: LiveSubscriber;
  /** Stream id of the last event it has been given (or skipped). */
  cursor: string;
  /** Reads numbered from here on include it; reads already under way do not. */
  since: number;
  caughtUp: boolean;
  /** Unsubscribed: an event later in the same read must not reach it. */
  gone: boolean;
}

/**
 * Live job events for every SSE client of this process through one reader. Per client a blocking
 * XREAD would cost a Redis connection each (and Redis' client limit is the fleet's, not ours);
 * polling per client multiplies commands by clients. Here one dedicated connection XREADs the
 * streams of every tenant being watched, each from the oldest position any of its subscribers
 * needs, and fans the events out: a subscriber skips what it already has, so catching up after a
 * `Last-Event-ID` and following live are the same path, gapless and without duplicates.
 *
 * A new subscriber wakes the blocked read (CLIENT UNBLOCK) and makes the next read non-blocking
 * until it has caught up, so a replay starts at once.
 */
export class LiveEvents {
  private readonly byTenant = new Map<string, Set<Subscription>>();
  private reads = 0;
  private loop: Promise<void> | undefined;
  private wakeLoop: (() => void) | undefined;
  private readerId: number | undefined;
  private closing: Promise<void> | undefined;

  /**
   * @param reader connection for the blocking reads, this object's own (closed by `close`)
   * @param redis the producer's fail-fast connection: positions, and waking the reader
   */
  constructor(
    private readonly reader: Redis,
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly logger: Logger,
  ) {
    reader.on('error', () => undefined); // reported by failed reads
    reader.on('close', () => (this.readerId = undefined));
  }

  /** The `worker` role waits through reconnects: a Redis restart pauses the streams, never ends them. */
  static start(config: Config, redis: Redis, logger: Logger): LiveEvents {
    return new LiveEvents(createRedis(config.redis.url, 'worker', 'pq-producer-live-events'), redis, config.redis.prefix, logger);
  }

  get closed(): boolean {
    return this.closing !== undefined;
  }

  /** Subscribers now; for tests and metrics. */
  get size(): number {
    let size = 0;
    for (const set of this.byTenant.values()) size += set.size;
    return size;
  }

  /**
   * Follows a tenant's events after `after` (a full stream id, exclusive), or from now (`$`).
   * Rejects (503) while Redis is down, so the caller answers before opening a stream. Returns the
   * unsubscribe function (idempotent).
   */
  async subscribe(tenant: string, after: string, subscriber: LiveSubscriber): Promise<() => void> {
    if (this.closed || this.redis.status !== 'ready') throw redisUnavailable();
    const cursor = after === '$' ? await lastJobEventId(this.redis, this.prefix, tenant) : after;
    if (this.closed) throw redisUnavailable();
    const subscription: Subscription = { tenant, subscriber, cursor, since: this.reads + 1, caughtUp: false, gone: false };
    let set = this.byTenant.get(tenant);
    if (!set) this.byTenant.set(tenant, (set = new Set()));
    set.add(subscription);
    this.wake();
    return () => {
      subscription.gone = true;
      const current = this.byTenant.get(tenant);
      current?.delete(subscription);
      if (current?.size === 0) this.byTenant.delete(tenant);
    };
  }

  /** Ends every subscriber's response and stops the reader; never waits on a client. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const subscriptions = [...this.byTenant.values()].flatMap((set) => [...set]);
      this.byTenant.clear();
      for (const subscription of subscriptions) {
        subscription.gone = true;
        subscription.subscriber.end();
      }
      this.wakeLoop?.();
      this.reader.disconnect(); // ends a blocked XREAD now
      await this.loop;
    })();
    return this.closing;
  }

  private wake(): void {
    if (this.wakeLoop) {
      this.wakeLoop();
    } else if (!this.loop) {
      this.loop = this.run();
    } else if (this.readerId !== undefined) {
      // The loop is (about to be) blocked in XREAD on the old set of streams: end that read early.
      this.redis.client('UNBLOCK', this.readerId).catch(() => undefined);
    }
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      if (this.byTenant.size === 0) {
        await this.pause();
        continue;
      }
      const read = ++this.reads;
      const positions = new Map<string, string>();
      let replaying = false;
      for (const [tenant, set] of this.byTenant) {
        for (const subscription of set) {
          const current = positions.get(tenant);
          if (current === undefined || compareStreamIds(subscription.cursor, current) < 0) positions.set(tenant, subscription.cursor);
          replaying ||= !subscription.caughtUp;
        }
      }
      try {
        this.readerId ??= (await this.reader.client('ID')) as number;
        const events = await readJobEventsOfTenants(this.reader, this.prefix, positions, { count: READ_COUNT, ...(replaying ? {} : { blockMs: BLOCK_MS }) });
        this.fanOut(read, positions, events);
      } catch (error) {
        if (this.closed) break;
        this.logger.debug('live events read failed', { error: error instanceof Error ? error.message : String(error) });
        await this.pause(RETRY_MS);
      }
    }
  }

  /** Until `wake` (a subscriber, or close), or `ms` passed. */
  private async pause(ms?: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.wakeLoop = resolve;
      if (ms !== undefined) timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.wakeLoop = undefined;
  }

  private fanOut(read: number, positions: ReadonlyMap<string, string>, events: ReadonlyMap<string, StoredJobEvent[]>): void {
    for (const tenant of positions.keys()) {
      const tenantEvents = events.get(tenant) ?? [];
      // Fewer than asked: the read reached the stream's end.
      const atEnd = tenantEvents.length < READ_COUNT;
      for (const subscription of [...(this.byTenant.get(tenant) ?? [])]) {
        // A subscriber added after this read's positions were taken may be behind them: the next read serves it.
        if (subscription.since > read) continue;
        for (const event of tenantEvents) {
          if (subscription.gone) break;
          if (compareStreamIds(event.id, subscription.cursor) <= 0) continue;
          subscription.cursor = event.id;
          if (subscription.subscriber.accepts?.(event) ?? true) subscription.subscriber.deliver(event);
        }
        if (atEnd && !subscription.caughtUp && !subscription.gone) {
          subscription.caughtUp = true;
          subscription.subscriber.caughtUp?.();
        }
      }
    }
  }
}
