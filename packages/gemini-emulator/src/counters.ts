// Counters read by tests and benchmarks. Accepted calls are also kept as a bounded log of
// (timestamp, input tokens) so the busiest sliding window can be computed exactly.

import { createHash } from 'node:crypto';
import type { BatchCounters } from './batches.js';

export interface ModelCounters {
  /** Every request routed to this model, rejected ones included. */
  calls: number;
  successes: number;
  /** All 429s = quota429 + injected429. */
  rateLimited: number;
  quota429: number;
  injected429: number;
  /** Other injected faults that fired (5xx, badRequest, slow). */
  faultsInjected: number;
  errors4xx: number;
  errors5xx: number;
  /** Client went away before the answer was written. */
  aborted: number;
  /** Input tokens of successful calls. */
  inputTokens: number;
  /** Output tokens of successful calls (candidates + thoughts). */
  outputTokens: number;
  thoughtsTokens: number;
  byMethod: Record<string, number>;
  byStatus: Record<string, number>;
}

export interface WindowStats {
  windowMs: number;
  /** Accepted (quota-consuming) calls in the log. */
  acceptedCalls: number;
  maxCallsInWindow: number;
  maxInputTokensInWindow: number;
  /** True when the log hit its bound and dropped its oldest entries. */
  truncated: boolean;
}

export interface CountersSnapshot {
  /** Epoch ms of the last reset. */
  since: number;
  totalCalls: number;
  totals: Omit<ModelCounters, 'byMethod' | 'byStatus'>;
  byModel: Record<string, ModelCounters>;
  /** Calls per API key fingerprint (first 8 hex of sha256); "none" when no key was sent. */
  byKey: Record<string, number>;
  byStatus: Record<string, number>;
  windows: Record<string, WindowStats>;
  /** Calls per API surface: `gemini` (API key), `vertex` (Bearer token), `openai`. */
  byApi: Record<string, number>;
  /** Per service tier: calls that asked for it, calls it served, Flex calls shed with 503. */
  byTier: Record<string, TierCounters>;
  /** Batch API: batches created, requests in them, and what finished batches produced. */
  batches: BatchCounters;
  /**
   * Model calls being served right now (received, not yet answered or aborted), and the most at
   * once since the last reset: how many calls a client holds in flight.
   */
  inFlight: { now: number; peak: number };
  /** TCP connections clients opened (since start or the last reset). */
  connectionsOpened: number;
}

export interface TierCounters { calls: number; served: number; shed: number }

export function keyFingerprint(key: string | undefined): string {
  if (key === undefined || key === '') return 'none';
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

function emptyModel(): ModelCounters {
  return {
    calls: 0, successes: 0, rateLimited: 0, quota429: 0, injected429: 0, faultsInjected: 0, errors4xx: 0, errors5xx: 0,
    aborted: 0, inputTokens: 0, outputTokens: 0, thoughtsTokens: 0, byMethod: {}, byStatus: {},
  };
}

interface LogEntry { t: number; model: string; tokens: number }

/** Busiest window (start, start + windowMs] over sorted entries, by calls and by tokens. */
export function maxInWindow(entries: readonly { t: number; tokens: number }[], windowMs: number): { calls: number; tokens: number } {
  let maxCalls = 0;
  let maxTokens = 0;
  let start = 0;
  let tokens = 0;
  for (let end = 0; end < entries.length; end++) {
    const e = entries[end];
    if (!e) continue;
    tokens += e.tokens;
    // A window ending at e.t covers (e.t - windowMs, e.t]; the busiest window always ends at a call.
    while (start < end && (entries[start]?.t ?? 0) <= e.t - windowMs) {
      tokens -= entries[start]?.tokens ?? 0;
      start++;
    }
    maxCalls = Math.max(maxCalls, end - start + 1);
    maxTokens = Math.max(maxTokens, tokens);
  }
  return { calls: maxCalls, tokens: maxTokens };
}

export class Counters {
  private since = 0;
  private totalCalls = 0;
  private models = new Map<string, ModelCounters>();
  private keys = new Map<string, number>();
  private statuses = new Map<string, number>();
  private log: LogEntry[] = [];
  private truncated = false;
  private apis = new Map<string, number>();
  private tiers = new Map<string, TierCounters>();
  private inFlightNow = 0;
  private inFlightPeak = 0;
  private connections = 0;

  constructor(
    private readonly now: () => number = Date.now,
    readonly windowMs = 60_000,
    readonly maxLogEntries = 200_000,
  ) {
    this.reset();
  }

  reset(): void {
    this.since = this.now();
    this.totalCalls = 0;
    this.models.clear();
    this.keys.clear();
    this.statuses.clear();
    this.log = [];
    this.truncated = false;
    this.apis.clear();
    this.tiers.clear();
    this.connections = 0;
    // Calls in flight across a reset are still in flight; the peak restarts from them.
    this.inFlightPeak = this.inFlightNow;
  }

  /** A model call arrived (`callStarted`) or was answered or dropped (`callEnded`): the in-flight gauge. */
  /** A client opened a TCP connection to the emulator. */
  connectionOpened(): void {
    this.connections += 1;
  }

  callStarted(): void {
    this.inFlightNow += 1;
    if (this.inFlightNow > this.inFlightPeak) this.inFlightPeak = this.inFlightNow;
  }

  callEnded(): void {
    this.inFlightNow = Math.max(0, this.inFlightNow - 1);
  }

  recordApi(api: string): void {
    this.apis.set(api, (this.apis.get(api) ?? 0) + 1);
  }

  private tier(name: string): TierCounters {
    let t = this.tiers.get(name);
    if (!t) this.tiers.set(name, (t = { calls: 0, served: 0, shed: 0 }));
    return t;
  }

  /** A generate call reached the tier decision: `served` once answered, `shed` when refused with 503. */
  recordTier(name: string, outcome: 'call' | 'served' | 'shed'): void {
    const t = this.tier(name);
    if (outcome === 'call') t.calls++;
    else t[outcome]++;
  }

  private model(name: string): ModelCounters {
    let m = this.models.get(name);
    if (!m) {
      m = emptyModel();
      this.models.set(name, m);
    }
    return m;
  }

  recordCall(model: string, method: string, keyFp: string): void {
    this.totalCalls++;
    const m = this.model(model);
    m.calls++;
    m.byMethod[method] = (m.byMethod[method] ?? 0) + 1;
    this.keys.set(keyFp, (this.keys.get(keyFp) ?? 0) + 1);
  }

  /** A call passed faults and quota: it goes into the window log. */
  recordAccepted(model: string, inputTokens: number): void {
    this.log.push({ t: this.now(), model, tokens: inputTokens });
    if (this.log.length > this.maxLogEntries) {
      this.log.splice(0, this.log.length - this.maxLogEntries);
      this.truncated = true;
    }
  }

  recordStatus(model: string, status: number, reason?: 'quota' | 'fault'): void {
    const m = this.model(model);
    const key = String(status);
    m.byStatus[key] = (m.byStatus[key] ?? 0) + 1;
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + 1);
    if (status === 429) {
      m.rateLimited++;
      if (reason === 'fault') m.injected429++;
      else m.quota429++;
    } else if (reason === 'fault') {
      m.faultsInjected++;
    }
    if (status >= 500) m.errors5xx++;
    else if (status >= 400) m.errors4xx++;
  }

  recordSlowFault(model: string): void {
    this.model(model).faultsInjected++;
  }

  recordSuccess(model: string, inputTokens: number, outputTokens: number, thoughtsTokens: number): void {
    const m = this.model(model);
    m.successes++;
    m.inputTokens += inputTokens;
    m.outputTokens += outputTokens;
    m.thoughtsTokens += thoughtsTokens;
    const key = '200';
    m.byStatus[key] = (m.byStatus[key] ?? 0) + 1;
    this.statuses.set(key, (this.statuses.get(key) ?? 0) + 1);
  }

  recordAborted(model: string): void {
    this.model(model).aborted++;
  }

  windowStats(windowMs = this.windowMs): Record<string, WindowStats> {
    const perModel = new Map<string, LogEntry[]>();
    for (const e of this.log) {
      let list = perModel.get(e.model);
      if (!list) perModel.set(e.model, (list = []));
      list.push(e);
    }
    const out: Record<string, WindowStats> = {};
    for (const [model, entries] of perModel) {
      const max = maxInWindow(entries, windowMs);
      out[model] = { windowMs, acceptedCalls: entries.length, maxCallsInWindow: max.calls, maxInputTokensInWindow: max.tokens, truncated: this.truncated };
    }
    return out;
  }

  snapshot(): Omit<CountersSnapshot, 'batches'> {
    const totals = emptyModel();
    const byModel: Record<string, ModelCounters> = {};
    for (const [name, m] of this.models) {
      byModel[name] = structuredClone(m);
      for (const k of Object.keys(totals) as (keyof ModelCounters)[]) {
        if (k === 'byMethod' || k === 'byStatus') continue;
        totals[k] += m[k];
      }
    }
    const { byMethod: _bm, byStatus: _bs, ...flatTotals } = totals;
    return {
      since: this.since,
      totalCalls: this.totalCalls,
      totals: flatTotals,
      byModel,
      byKey: Object.fromEntries(this.keys),
      byStatus: Object.fromEntries(this.statuses),
      windows: this.windowStats(),
      byApi: Object.fromEntries(this.apis),
      byTier: Object.fromEntries([...this.tiers].map(([k, v]) => [k, { ...v }])),
      inFlight: { now: this.inFlightNow, peak: this.inFlightPeak },
      connectionsOpened: this.connections,
    };
  }
}
