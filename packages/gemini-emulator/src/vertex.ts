// Vertex AI's own quota pool. Per-project-per-model limits (rpm/tpm/rpd) are kept apart
// from the Gemini API's, so exhausting one leaves the other serving. On top of that,
// Dynamic Shared Quota: one capacity per rolling window shared by every Vertex project;
// when it runs out the 429 carries no QuotaFailure, so a client cannot learn a limit.

export interface SharedQuotaConfig {
  /** Calls accepted per window across all Vertex projects and models. */
  capacity: number;
  /** Rolling window, ms (default 60000). */
  windowMs: number;
}

export interface SharedQuotaUsage extends SharedQuotaConfig {
  /** Accepted calls in the current window. */
  inWindow: number;
  /** 429s answered because the shared capacity was used up, since the last reset. */
  rejected: number;
}

/** A rolling window of accepted call times, shared by all Vertex projects. */
export class SharedQuota {
  private times: number[] = [];
  private rejectedCount = 0;

  constructor(private readonly now: () => number, public config: SharedQuotaConfig) {}

  private prune(now: number): void {
    let drop = 0;
    while (drop < this.times.length && (this.times[drop] ?? 0) <= now - this.config.windowMs) drop++;
    if (drop > 0) this.times.splice(0, drop);
  }

  /** True (and recorded) when the call fits in the shared capacity. */
  tryConsume(): boolean {
    const now = this.now();
    this.prune(now);
    if (this.times.length >= this.config.capacity) {
      this.rejectedCount++;
      return false;
    }
    this.times.push(now);
    return true;
  }

  reset(): void {
    this.times = [];
    this.rejectedCount = 0;
  }

  usage(): SharedQuotaUsage {
    this.prune(this.now());
    return { ...this.config, inWindow: this.times.length, rejected: this.rejectedCount };
  }
}

/** Validates `{capacity, windowMs?}` (or null = shared quota off) from the control API. */
export function parseSharedQuota(raw: unknown): SharedQuotaConfig | null {
  if (raw === null) return null;
  if (typeof raw !== 'object' || Array.isArray(raw) || raw === undefined) throw new Error('sharedQuota must be {"capacity": n, "windowMs"?: n} or null');
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) if (key !== 'capacity' && key !== 'windowMs') throw new Error(`unknown sharedQuota field "${key}"`);
  if (typeof r.capacity !== 'number' || !Number.isInteger(r.capacity) || r.capacity < 0) throw new Error('sharedQuota capacity must be a non-negative integer');
  const windowMs = r.windowMs ?? 60_000;
  if (typeof windowMs !== 'number' || !Number.isInteger(windowMs) || windowMs < 1) throw new Error('sharedQuota windowMs must be a positive integer');
  return { capacity: r.capacity, windowMs };
}
