// Per-model RPM and input-TPM over a rolling window made of call timestamps (no fixed
// buckets): Google's window rolls, so a burst must wait until its oldest calls age out.
// RPD is different: a plain count per Pacific calendar day, reset at midnight Los Angeles.
// Check order: RPD first, then RPM, then TPM; the first one that fails is reported.

import { nextPacificMidnight, pacificDate } from './pacific.js';

export interface QuotaLimit {
  /** Requests per window. */
  rpm?: number;
  /** Input tokens per window. */
  tpm?: number;
  /** Requests per Pacific day (resets at midnight America/Los_Angeles). */
  rpd?: number;
}

export type QuotaConfig = Record<string, QuotaLimit>;

export type QuotaDecision =
  | { ok: true }
  | { ok: false; kind: 'rpm' | 'tpm' | 'rpd'; limit: number; retryAfterMs: number };

/** What a model has used against its limits, for the control API. */
export interface QuotaUsage {
  limits: QuotaLimit;
  /** Accepted calls and their input tokens within the rolling window. */
  window: { windowMs: number; requests: number; inputTokens: number };
  /** Accepted calls this Pacific day. */
  day: { date: string; requests: number; resetsAt: number };
}

interface Entry { t: number; tokens: number }

/** One Pacific day's count; a new one starts once `now` reaches `resetsAt`. */
interface Day { date: string; requests: number; resetsAt: number }

export class QuotaManager {
  private limits = new Map<string, QuotaLimit>();
  private windows = new Map<string, Entry[]>();
  private days = new Map<string, Day>();

  constructor(
    private readonly now: () => number = Date.now,
    readonly windowMs = 60_000,
  ) {}

  /** Merges limits per model; `null` removes a model's limits. */
  setLimits(config: Record<string, QuotaLimit | null>): void {
    for (const [model, limit] of Object.entries(config)) {
      if (limit === null) this.limits.delete(model);
      else this.limits.set(model, { ...limit });
    }
  }

  getLimits(): QuotaConfig {
    return Object.fromEntries(this.limits);
  }

  /** Forgets recorded calls in the rolling windows (limits and day counts stay). */
  resetWindows(): void {
    this.windows.clear();
  }

  /** Forgets today's request counts, as if the Pacific day had just rolled over. */
  resetDays(): void {
    this.days.clear();
  }

  /** Forgets every recorded call: windows and day counts (limits stay). */
  reset(): void {
    this.resetWindows();
    this.resetDays();
  }

  private day(model: string, now: number): Day {
    let day = this.days.get(model);
    // Midnight is computed once per model per day, not on every call.
    if (!day || now >= day.resetsAt) {
      day = { date: pacificDate(now), requests: 0, resetsAt: nextPacificMidnight(now) };
      this.days.set(model, day);
    }
    return day;
  }

  private entries(model: string, now: number): Entry[] {
    let list = this.windows.get(model);
    if (!list) {
      list = [];
      this.windows.set(model, list);
    }
    // Entries older than the window no longer count.
    let drop = 0;
    while (drop < list.length && (list[drop]?.t ?? 0) <= now - this.windowMs) drop++;
    if (drop > 0) list.splice(0, drop);
    return list;
  }

  /** Usage within the current window. */
  usage(model: string): { requests: number; tokens: number } {
    const list = this.entries(model, this.now());
    return { requests: list.length, tokens: list.reduce((s, e) => s + e.tokens, 0) };
  }

  /** Accepted calls this Pacific day and when the count resets (epoch ms). */
  dayUsage(model: string): { date: string; requests: number; resetsAt: number } {
    return { ...this.day(model, this.now()) };
  }

  /** Limits and usage of every model that has limits or recorded calls. */
  usageAll(): Record<string, QuotaUsage> {
    const models = new Set([...this.limits.keys(), ...this.windows.keys(), ...this.days.keys()]);
    const out: Record<string, QuotaUsage> = {};
    for (const model of [...models].sort()) {
      const w = this.usage(model);
      out[model] = {
        limits: { ...this.limits.get(model) },
        window: { windowMs: this.windowMs, requests: w.requests, inputTokens: w.tokens },
        day: this.dayUsage(model),
      };
    }
    return out;
  }

  /** Checks and, when allowed, records the call. Rejected calls consume nothing. */
  tryConsume(model: string, tokens: number): QuotaDecision {
    const limit = this.limits.get(model);
    const now = this.now();
    const list = this.entries(model, now);
    const day = this.day(model, now);
    if (limit) {
      if (limit.rpd !== undefined && day.requests + 1 > limit.rpd) {
        return { ok: false, kind: 'rpd', limit: limit.rpd, retryAfterMs: day.resetsAt - now };
      }
      const decision = this.check(list, limit, tokens, now);
      if (!decision.ok) return decision;
    }
    list.push({ t: now, tokens });
    day.requests++;
    return { ok: true };
  }

  private check(list: Entry[], limit: QuotaLimit, tokens: number, now: number): QuotaDecision {
    if (limit.rpm !== undefined && list.length + 1 > limit.rpm) {
      // The call fits once enough of the oldest calls have left the window.
      const freeing = list[list.length - limit.rpm];
      const retryAfterMs = freeing ? freeing.t + this.windowMs - now : this.windowMs;
      return { ok: false, kind: 'rpm', limit: limit.rpm, retryAfterMs };
    }
    if (limit.tpm !== undefined) {
      let used = list.reduce((s, e) => s + e.tokens, 0);
      if (used + tokens > limit.tpm) {
        // A request larger than the whole limit never fits; say "a full window".
        let retryAfterMs = this.windowMs;
        if (tokens <= limit.tpm) {
          for (const e of list) {
            used -= e.tokens;
            if (used + tokens <= limit.tpm) {
              retryAfterMs = e.t + this.windowMs - now;
              break;
            }
          }
        }
        return { ok: false, kind: 'tpm', limit: limit.tpm, retryAfterMs };
      }
    }
    return { ok: true };
  }
}

/** Validates a quota map from JSON (env or control API); throws with a readable message. */
export function parseQuotaConfig(value: unknown, allowNull: boolean): Record<string, QuotaLimit | null> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new Error('quotas must be a JSON object like {"gemini-2.5-flash":{"rpm":10,"tpm":1000,"rpd":500}}');
  }
  const out: Record<string, QuotaLimit | null> = {};
  for (const [model, raw] of Object.entries(value as Record<string, unknown>)) {
    if (raw === null && allowNull) {
      out[model] = null;
      continue;
    }
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error(`quota for ${model} must be an object with rpm, tpm and/or rpd`);
    const limit: QuotaLimit = {};
    for (const [key, n] of Object.entries(raw as Record<string, unknown>)) {
      if (key !== 'rpm' && key !== 'tpm' && key !== 'rpd') throw new Error(`quota for ${model} has unknown field "${key}" (use rpm, tpm, rpd)`);
      if (n === null) continue;
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new Error(`quota ${model}.${key} must be a positive integer`);
      limit[key] = n;
    }
    out[model] = limit;
  }
  return out;
}
