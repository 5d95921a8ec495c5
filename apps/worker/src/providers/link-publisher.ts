import type { Redis } from 'ioredis';
import { publishLinks, PUBLISHED_LINKS_REFRESH_MS, within, type Logger, type PublishedLink } from '@prompt-queue/shared';
import type { ProviderChains } from './chain.js';
import type { LinkCredentials } from './credentials.js';

/**
 * Publishes the links this worker serves (the configured ones, and every one built since) to Redis
 * for the dashboard: provider, model, limiter scope and credential health (fingerprints only), at
 * start and every `PUBLISHED_LINKS_REFRESH_MS` (packages/shared links/published-links.ts). A failed
 * write is logged and retried at the next refresh.
 */
/** How long `stop()` waits for a write in flight, ms. */
const STOP_WAIT_MS = 1_000;

export class LinkPublisher {
  private timer: NodeJS.Timeout | undefined;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(
    private readonly deps: {
      redis: Redis;
      prefix: string;
      chains: ProviderChains;
      credentials: LinkCredentials;
      logger: Logger;
      workerId: string;
      /** @defaultValue PUBLISHED_LINKS_REFRESH_MS */
      refreshMs?: number;
      now?: () => number;
    },
  ) {}

  /** What would be published now. */
  links(): PublishedLink[] {
    const { chains, credentials, workerId } = this.deps;
    const updatedAt = (this.deps.now ?? Date.now)();
    return chains.specs().map((spec) => ({
      id: spec.id,
      provider: spec.provider,
      name: spec.name,
      model: spec.model,
      limitKey: spec.limitKey,
      limits: spec.limits,
      credentials: credentials.for(spec).describe(),
      updatedAt,
      workerId,
    }));
  }

  /** Publishes once; never rejects. */
  publish(): Promise<void> {
    this.inFlight = this.inFlight.then(async () => {
      try {
        await publishLinks(this.deps.redis, this.deps.prefix, this.links());
      } catch (error) {
        this.deps.logger.warn('cannot publish the provider links', { error: error instanceof Error ? error.message : String(error) });
      }
    });
    return this.inFlight;
  }

  start(): this {
    if (this.timer) return this;
    void this.publish();
    this.timer = setInterval(() => void this.publish(), this.deps.refreshMs ?? PUBLISHED_LINKS_REFRESH_MS);
    this.timer.unref();
    return this;
  }

  /** Stops refreshing; waits briefly for a write in flight (not for a Redis that hangs). Idempotent. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await within(this.inFlight, STOP_WAIT_MS).catch(() => undefined);
  }
}
