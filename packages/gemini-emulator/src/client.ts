// Small fetch-based client of the control API, for tests and benchmarks.

import type { CountersSnapshot, WindowStats } from './counters.js';
import type { ActiveFault, FaultSpec } from './faults.js';
import type { QuotaConfig, QuotaLimit, QuotaUsage } from './quotas.js';
import type { TokenizerConfig, TokenizerSettings } from './tokens.js';

export class EmulatorClient {
  private readonly base: string;

  constructor(baseUrl: string) {
    this.base = baseUrl.replace(/\/+$/, '');
  }

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await fetch(`${this.base}/_emulator${path}`, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await res.json()) as T & { error?: string };
    if (!res.ok) throw new Error(`emulator control ${method} ${path} failed (${res.status}): ${json.error ?? 'unknown error'}`);
    return json;
  }

  counters(): Promise<CountersSnapshot> {
    return this.call('GET', '/counters');
  }

  /** Busiest sliding window per model; `windowMs` defaults to the emulator's (60 s). */
  windows(windowMs?: number): Promise<Record<string, WindowStats>> {
    return this.call('GET', windowMs === undefined ? '/windows' : `/windows?windowMs=${windowMs}`);
  }

  async reset(): Promise<void> {
    await this.call('POST', '/reset');
  }

  /** Adds a fault; resolves with its id. */
  async addFault(fault: FaultSpec): Promise<string> {
    const r = await this.call<{ id: string }>('POST', '/faults', fault);
    return r.id;
  }

  async listFaults(): Promise<ActiveFault[]> {
    return (await this.call<{ faults: ActiveFault[] }>('GET', '/faults')).faults;
  }

  async removeFault(id: string): Promise<void> {
    await this.call('DELETE', `/faults/${encodeURIComponent(id)}`);
  }

  async clearFaults(): Promise<void> {
    await this.call('DELETE', '/faults');
  }

  /** Merges per-model limits; `null` removes a model's limits. */
  setQuotas(quotas: Record<string, QuotaLimit | null>): Promise<QuotaConfig> {
    return this.call('PUT', '/quotas', quotas);
  }

  /** Per model: limits, rolling-window usage and this Pacific day's request count. */
  quotaUsage(): Promise<Record<string, QuotaUsage>> {
    return this.call('GET', '/quotas/usage');
  }

  /** Replaces the tokenizer (`{}` restores the defaults); resolves with the settings now in force. */
  setTokenizer(config: TokenizerConfig): Promise<TokenizerSettings> {
    return this.call('PUT', '/tokenizer', config);
  }

  getTokenizer(): Promise<TokenizerSettings> {
    return this.call('GET', '/tokenizer');
  }

  async setLatency(ms: number, jitterMs?: number): Promise<void> {
    await this.call('PUT', '/latency', jitterMs === undefined ? { ms } : { ms, jitterMs });
  }

  async healthz(): Promise<boolean> {
    return (await this.call<{ ok: boolean }>('GET', '/healthz')).ok;
  }
}
