import type { Redis } from 'ioredis';
import { outputSamplesKey } from '../redis/keys.js';
import { slotPipeline } from '../redis/cluster.js';

/**
 * The fleet's estimate of a call's output + thinking tokens, per model, for budget reservations.
 *
 * A request's output is only bounded (maxOutputTokens, the model's limit, a thinking budget), and
 * that bound is usually far above what calls produce: reserving it refuses jobs while most of a
 * budget is unspent. So the budget reserves what calls like this one actually produced: a high
 * quantile (p95) of the recent calls of the same model whose output bound is in the same power-of-
 * two class (a 64-token job is not priced from 8k-token ones, nor the other way round).
 *
 * - Errs high until it knows: with fewer than `minSamples` samples in the class, the estimate is
 *   the bound itself (the old worst case).
 * - Shared through Redis: every worker pushes its settled calls to one capped list per (model,
 *   class), and reads the fleet's lists back, so a new worker starts from what the fleet knows.
 * - Observed counts are not capped by the bound: a provider that bills thinking beyond
 *   maxOutputTokens is estimated from what it bills.
 *
 * Overspend this allows (a call above its estimate) is bounded by the calls in flight: see
 * BudgetGuard and the README's budget section.
 */

export interface OutputEstimatorOptions {
  /** Recent samples kept per (model, class). @defaultValue 200 */
  samples?: number;
  /** Samples needed before the quantile replaces the bound. @defaultValue 20 */
  minSamples?: number;
  /** The quantile reserved. @defaultValue 0.95 */
  quantile?: number;
  /** A worker re-reads a (model, class) at most this often, ms. @defaultValue 1000 */
  refreshMs?: number;
  /** An unused list is forgotten after this, ms. @defaultValue 7 days */
  ttlMs?: number;
  /** Clock for refreshes (tests). */
  now?: () => number;
}

/** One settled call: its model, its output bound (tokens) and what it produced (output + thinking). */
export interface OutputSample {
  model: string;
  bound: number;
  tokens: number;
}

interface Entry {
  /** Newest first, as in Redis. */
  samples: number[];
  /** The reserved quantile of `samples`, or undefined while too few. */
  quantile: number | undefined;
  loadedAt: number;
  loading?: Promise<void>;
}

/** The power-of-two class of an output bound: 64 → 6, 65 → 7, 65,536 → 16. */
export function outputBoundClass(bound: number): number {
  return Math.max(0, Math.ceil(Math.log2(Math.max(1, bound))));
}

/** The q-quantile (nearest rank, rounded up) of `values`. */
export function highQuantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[rank] ?? 0;
}

export class OutputTokenEstimator {
  private readonly samples: number;
  private readonly minSamples: number;
  private readonly quantile: number;
  private readonly refreshMs: number;
  private readonly ttlMs: number;
  private readonly now: () => number;
  private readonly cache = new Map<string, Entry>();

  constructor(private readonly redis: Redis, private readonly prefix: string, options: OutputEstimatorOptions = {}) {
    this.samples = options.samples ?? 200;
    this.minSamples = options.minSamples ?? 20;
    this.quantile = options.quantile ?? 0.95;
    this.refreshMs = options.refreshMs ?? 1_000;
    this.ttlMs = options.ttlMs ?? 7 * 24 * 3_600_000;
    this.now = options.now ?? Date.now;
    if (!(this.quantile > 0 && this.quantile <= 1)) throw new RangeError('quantile must be in (0, 1]');
    if (!(this.minSamples >= 1 && this.samples >= this.minSamples)) throw new RangeError('need samples ≥ minSamples ≥ 1');
  }

  /** Makes `estimate()` current for these (model, bound) pairs: awaits first loads, refreshes stale ones in the background. */
  async prepare(requests: readonly { model: string; bound: number }[]): Promise<void> {
    const loads: Promise<void>[] = [];
    for (const { model, bound } of requests) {
      const id = outputSamplesKey(this.prefix, model, outputBoundClass(bound));
      const entry = this.cache.get(id);
      if (!entry) loads.push(this.load(id));
      else if (entry.loading) loads.push(entry.loading);
      else if (this.now() - entry.loadedAt >= this.refreshMs) void this.load(id).catch(() => undefined);
    }
    await Promise.all(loads);
  }

  /**
   * Output + thinking tokens to reserve for a call of `model` bounded by `bound` tokens: the
   * class's p95 once it has `minSamples` samples, else `bound`.
   */
  estimate(model: string, bound: number): number {
    const quantile = this.cache.get(outputSamplesKey(this.prefix, model, outputBoundClass(bound)))?.quantile;
    return quantile ?? bound;
  }

  /** Pushes settled calls to their (model, class) lists. One round trip for the batch. */
  async record(samples: readonly OutputSample[]): Promise<void> {
    const byId = new Map<string, number[]>();
    for (const { model, bound, tokens } of samples) {
      if (!Number.isFinite(tokens) || tokens < 0) continue;
      const id = outputSamplesKey(this.prefix, model, outputBoundClass(bound));
      byId.set(id, [...(byId.get(id) ?? []), Math.round(tokens)]);
    }
    if (byId.size === 0) return;
    const pipeline = slotPipeline(this.redis);
    const ids = [...byId.keys()];
    for (const id of ids) {
      pipeline.lpush(id, ...byId.get(id)!);
      pipeline.ltrim(id, 0, this.samples - 1);
      pipeline.pexpire(id, this.ttlMs);
      pipeline.lrange(id, 0, -1);
    }
    const results = (await pipeline.exec()) ?? [];
    ids.forEach((id, i) => {
      const [error, values] = results[i * 4 + 3] ?? [new Error('missing pipeline result')];
      if (error) throw error;
      this.store(id, values as string[]);
    });
  }

  private load(id: string): Promise<void> {
    const loading = this.redis
      .lrange(id, 0, this.samples - 1)
      .then((values) => this.store(id, values))
      .finally(() => {
        const current = this.cache.get(id);
        if (current) delete current.loading;
      });
    const entry = this.cache.get(id);
    if (entry) entry.loading = loading;
    else this.cache.set(id, { samples: [], quantile: undefined, loadedAt: this.now(), loading });
    return loading;
  }

  private store(id: string, values: readonly string[]): void {
    const samples = values.map(Number).filter((n) => Number.isFinite(n) && n >= 0);
    const quantile = samples.length >= this.minSamples ? highQuantile(samples, this.quantile) : undefined;
    const entry = this.cache.get(id);
    if (entry) Object.assign(entry, { samples, quantile, loadedAt: this.now() });
    else this.cache.set(id, { samples, quantile, loadedAt: this.now() });
  }
}
