import { within, type FleetLimiter } from '@prompt-queue/shared';
import type { Redis } from 'ioredis';
import type { ProviderChains } from './providers/chain.js';

/**
 * In-process counters for `GET /status`: what this worker sees (batch sizes, jobs held, calls per
 * link). Fleet-wide state lives in Redis: the limiter's windows and pauses (FleetLimiter.state) and
 * the published breaker states (readBreakerStates), which the dashboard reads.
 */
export class WorkerStats {
  private jobsHeld = 0;
  private batches = 0;
  private jobsBatched = 0;
  private largestBatch = 0;
  /** Batch size → how many batches had it. */
  private readonly sizes = new Map<number, number>();
  private readonly servedByLink = new Map<string, number>();

  jobStarted(): void {
    this.jobsHeld += 1;
  }

  jobEnded(): void {
    this.jobsHeld -= 1;
  }

  batch(_route: string, size: number): void {
    this.batches += 1;
    this.jobsBatched += size;
    this.largestBatch = Math.max(this.largestBatch, size);
    this.sizes.set(size, (this.sizes.get(size) ?? 0) + 1);
  }

  served(linkId: string, jobs: number): void {
    this.servedByLink.set(linkId, (this.servedByLink.get(linkId) ?? 0) + jobs);
  }

  snapshot() {
    return {
      jobsHeld: this.jobsHeld,
      batches: {
        count: this.batches,
        jobs: this.jobsBatched,
        meanSize: this.batches === 0 ? 0 : Math.round((this.jobsBatched / this.batches) * 100) / 100,
        largest: this.largestBatch,
        bySize: Object.fromEntries([...this.sizes].sort(([a], [b]) => a - b)),
      },
      servedByLink: Object.fromEntries(this.servedByLink),
    };
  }
}

export type StatusReport = ReturnType<WorkerStats['snapshot']> & {
  /** `unavailable`: the fleet-wide parts (each link's `window`, `pausedUntil`) could not be read. */
  redis: 'up' | 'unavailable';
  links: Record<string, { breaker: unknown; pausedUntil: number | null; window: { requests: number; tokens: number; rpmLimit: number; tpmLimit: number } | null }>;
};

/**
 * The body of `GET /status`: local counters plus, per link this worker has used, breaker and
 * limiter state. The worker's connection waits through outages (BullMQ needs it to), so the
 * limiter reads are skipped while it is down and bounded while Redis hangs: the local part always
 * answers, within `READ_TIMEOUT_MS`.
 */
export async function statusReport(stats: WorkerStats, chains: ProviderChains, limiter: FleetLimiter, redis: Redis): Promise<StatusReport> {
  const links: StatusReport['links'] = {};
  const connected = redis.status === 'ready';
  let reachable = connected;
  const read = <T>(promise: () => Promise<T>): Promise<T | null> =>
    connected
      ? within(promise()).catch(() => {
          reachable = false;
          return null;
        })
      : Promise.resolve(null);
  // A PING too, in parallel: a worker that has used no link yet still says whether Redis answers.
  await Promise.all([
    read(() => redis.ping()),
    ...chains.all().map(async (link) => {
      const state = await read(() => limiter.state(link.limitKey, link.limits));
      links[link.id] = {
        breaker: link.breaker.state,
        pausedUntil: state?.pausedUntil ?? null,
        window: state ? { requests: state.requests, tokens: state.tokens, rpmLimit: state.rpmLimit, tpmLimit: state.tpmLimit } : null,
      };
    }),
  ]);
  return { ...stats.snapshot(), redis: reachable ? 'up' : 'unavailable', links };
}
