// Small fetch-based client of the control API, for tests and benchmarks.

import type { CountersSnapshot, WindowStats } from './counters.js';
import type { ActiveFault, FaultSpec } from './faults.js';
import type { QuotaConfig, QuotaLimit, QuotaUsage } from './quotas.js';
import type { TokenizerConfig, TokenizerSettings } from './tokens.js';
import type { BatchConfig, BatchState, BatchSummary } from './batches.js';
import type { OAuthStats, ServiceAccountKey } from './oauth.js';
import type { FlexConfig } from './tiers.js';
import type { SharedQuotaConfig, SharedQuotaUsage } from './vertex.js';

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

  // --- Vertex AI: service accounts and OAuth tokens ---

  /** Trusts a service account's PUBLIC key at the token endpoint (never send the private key). */
  async registerServiceAccount(key: ServiceAccountKey): Promise<void> {
    await this.call('POST', '/service-accounts', key);
  }

  /** Revokes a key id: its assertions get invalid_grant and its tokens get 401. */
  async revokeServiceAccountKey(keyId: string): Promise<void> {
    await this.call('POST', `/service-accounts/keys/${encodeURIComponent(keyId)}/revoke`);
  }

  /** Expires every issued access token now; resolves with how many were live. */
  async expireAllTokens(): Promise<number> {
    return (await this.call<{ expired: number }>('POST', '/oauth/expire-tokens')).expired;
  }

  /** Lifetime of tokens issued from now on (`expires_in`), s. */
  async setTokenTtl(seconds: number): Promise<void> {
    await this.call('PUT', '/oauth', { tokenTtlSeconds: seconds });
  }

  /** Accounts, keys (fingerprints only), tokens issued per account, refusals by reason. */
  oauthStats(): Promise<OAuthStats> {
    return this.call('GET', '/oauth');
  }

  // --- Vertex AI quota pool ---

  /** Vertex AI's own per-model limits (merge; `null` removes a model's). */
  setVertexQuotas(quotas: Record<string, QuotaLimit | null>): Promise<QuotaConfig> {
    return this.call('PUT', '/vertex/quotas', quotas);
  }

  vertexQuotaUsage(): Promise<{ models: Record<string, QuotaUsage>; sharedQuota: SharedQuotaUsage | null }> {
    return this.call('GET', '/vertex/quotas/usage');
  }

  /** Dynamic Shared Quota across all Vertex projects (`null` = off): over capacity, a 429 with no QuotaFailure. */
  async setSharedQuota(config: (Omit<SharedQuotaConfig, 'windowMs'> & { windowMs?: number }) | null): Promise<SharedQuotaUsage | null> {
    return (await this.call<{ sharedQuota: SharedQuotaUsage | null }>('PUT', '/vertex/shared-quota', config)).sharedQuota;
  }

  // --- Flex tier ---

  /** Changes the given Flex fields (latency, jitter, shedProbability, maxConcurrent); resolves with the whole config. */
  setFlex(config: Partial<FlexConfig>): Promise<FlexConfig> {
    return this.call('PUT', '/flex', config);
  }

  getFlex(): Promise<FlexConfig> {
    return this.call('GET', '/flex');
  }

  // --- Batch API ---

  /** Changes the given batch settings (timings, per-request errors, size limit); new batches use them. */
  setBatchConfig(config: Partial<BatchConfig>): Promise<BatchConfig> {
    return this.call('PUT', '/batches/config', config);
  }

  getBatchConfig(): Promise<BatchConfig> {
    return this.call('GET', '/batches/config');
  }

  async listBatches(): Promise<BatchSummary[]> {
    return (await this.call<{ batches: BatchSummary[] }>('GET', '/batches')).batches;
  }

  /** Forces a batch (`batches/{id}` or `{id}`) into a state now, e.g. EXPIRED or FAILED. */
  forceBatchState(name: string, state: BatchState): Promise<BatchSummary> {
    return this.call('POST', `/batches/${encodeURIComponent(name.replace(/^batches\//, ''))}/state`, { state });
  }
}
