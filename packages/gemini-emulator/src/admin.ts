// Control API under /_emulator/: no Gemini auth, JSON in and out. Lets tests and benchmarks
// read counters and switch faults, quotas and latency at runtime.

import { BATCH_STATES, parseBatchConfig, type BatchConfig, type BatchState, type BatchSummary } from './batches.js';
import type { CountersSnapshot, WindowStats } from './counters.js';
import { ApiError } from './errors.js';
import { parseServiceAccountKey, type OAuthStats, type ServiceAccountKey } from './oauth.js';
import { parseFlexConfig, type FlexConfig } from './tiers.js';
import { parseSharedQuota, type SharedQuotaConfig, type SharedQuotaUsage } from './vertex.js';
import { parseFaultSpec, type ActiveFault, type FaultSpec } from './faults.js';
import { parseQuotaConfig, type QuotaConfig, type QuotaLimit, type QuotaUsage } from './quotas.js';
import { parseTokenizerConfig, type TokenizerConfig, type TokenizerSettings } from './tokens.js';

/** What the control API needs from the emulator. */
export interface EmulatorControl {
  counters(): CountersSnapshot;
  windowStats(windowMs?: number): Record<string, WindowStats>;
  reset(): void;
  addFault(spec: FaultSpec): ActiveFault;
  removeFault(id: string): boolean;
  clearFaults(): void;
  listFaults(): ActiveFault[];
  setQuotas(quotas: Record<string, QuotaLimit | null>): void;
  getQuotas(): QuotaConfig;
  /** Per model: limits, rolling-window usage and this Pacific day's request count. */
  quotaUsage(): Record<string, QuotaUsage>;
  /** Replaces the tokenizer (`{}` restores the defaults); returns the settings now in force. */
  setTokenizer(config: TokenizerConfig): TokenizerSettings;
  getTokenizer(): TokenizerSettings;
  setLatency(ms: number, jitterMs?: number): void;
  getLatency(): { ms: number; jitterMs: number };
  /** Trusts a service account's public key at the token endpoint. */
  registerServiceAccount(key: ServiceAccountKey): void;
  /** Revokes a key: its assertions and the tokens minted with it are refused. False if unknown. */
  revokeServiceAccountKey(keyId: string): boolean;
  /** Expires every issued access token now; returns how many were live. */
  expireAllTokens(): number;
  /** Lifetime of tokens issued from now on, s. */
  setTokenTtl(seconds: number): void;
  oauthStats(): OAuthStats;
  /** Vertex AI's own per-model limits (merge; `null` removes a model). */
  setVertexQuotas(quotas: Record<string, QuotaLimit | null>): void;
  getVertexQuotas(): QuotaConfig;
  vertexQuotaUsage(): Record<string, QuotaUsage>;
  /** Dynamic Shared Quota for all Vertex projects; `null` turns it off. */
  setSharedQuota(config: SharedQuotaConfig | null): void;
  sharedQuotaUsage(): SharedQuotaUsage | null;
  setFlex(config: FlexConfig): FlexConfig;
  getFlex(): FlexConfig;
  setBatchConfig(config: BatchConfig): BatchConfig;
  getBatchConfig(): BatchConfig;
  listBatches(): BatchSummary[];
  /** Forces a batch (`batches/{id}` or `{id}`) into a state now, e.g. EXPIRED or FAILED. */
  forceBatchState(name: string, state: BatchState): BatchSummary;
}

export interface AdminReply { status: number; body: unknown }

const ok = (body: unknown = { ok: true }): AdminReply => ({ status: 200, body });
const fail = (status: number, message: string): AdminReply => ({ status, body: { error: message } });

function parseBody(raw: string): unknown {
  if (raw.trim() === '') return undefined;
  return JSON.parse(raw) as unknown;
}

function parseLatency(body: unknown): { ms: number; jitterMs?: number } {
  if (typeof body !== 'object' || body === null) throw new Error('latency body must be {"ms": n, "jitterMs"?: n}');
  const { ms, jitterMs } = body as Record<string, unknown>;
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 0) throw new Error('latency ms must be a non-negative integer');
  if (jitterMs !== undefined && (typeof jitterMs !== 'number' || !Number.isInteger(jitterMs) || jitterMs < 0)) {
    throw new Error('latency jitterMs must be a non-negative integer');
  }
  return typeof jitterMs === 'number' ? { ms, jitterMs } : { ms };
}

/** Handles one control request; `path` is the part after /_emulator. */
export function handleAdmin(control: EmulatorControl, method: string, path: string, query: URLSearchParams, rawBody: string): AdminReply {
  let body: unknown;
  try {
    body = parseBody(rawBody);
  } catch {
    return fail(400, 'body must be JSON');
  }
  try {
    const route = `${method} ${path.replace(/\/+$/, '') || '/'}`;
    switch (route) {
      case 'GET /healthz':
        return ok({ ok: true });
      case 'GET /counters':
        return ok(control.counters());
      case 'GET /windows': {
        const w = query.get('windowMs');
        const windowMs = w === null ? undefined : Number(w);
        if (windowMs !== undefined && (!Number.isInteger(windowMs) || windowMs < 1)) return fail(400, 'windowMs must be a positive integer');
        return ok(control.windowStats(windowMs));
      }
      case 'POST /reset':
        control.reset();
        return ok();
      case 'GET /faults':
        return ok({ faults: control.listFaults() });
      case 'POST /faults': {
        const fault = control.addFault(parseFaultSpec(body));
        return ok({ id: fault.id, fault });
      }
      case 'DELETE /faults':
        control.clearFaults();
        return ok();
      case 'GET /quotas':
        return ok(control.getQuotas());
      case 'PUT /quotas':
        control.setQuotas(parseQuotaConfig(body, true));
        return ok(control.getQuotas());
      case 'GET /quotas/usage':
        return ok(control.quotaUsage());
      case 'GET /tokenizer':
        return ok(control.getTokenizer());
      case 'PUT /tokenizer':
        return ok(control.setTokenizer(parseTokenizerConfig(body)));
      case 'GET /latency':
        return ok(control.getLatency());
      case 'PUT /latency': {
        const l = parseLatency(body);
        control.setLatency(l.ms, l.jitterMs);
        return ok(control.getLatency());
      }
      case 'GET /service-accounts':
      case 'GET /oauth':
        return ok(control.oauthStats());
      case 'POST /service-accounts':
        control.registerServiceAccount(parseServiceAccountKey(body));
        return ok();
      case 'POST /oauth/expire-tokens':
        return ok({ expired: control.expireAllTokens() });
      case 'PUT /oauth': {
        const ttl = (body as { tokenTtlSeconds?: unknown } | undefined)?.tokenTtlSeconds;
        if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1) return fail(400, 'tokenTtlSeconds must be a positive integer');
        control.setTokenTtl(ttl);
        return ok(control.oauthStats());
      }
      case 'GET /vertex/quotas':
        return ok(control.getVertexQuotas());
      case 'PUT /vertex/quotas':
        control.setVertexQuotas(parseQuotaConfig(body, true));
        return ok(control.getVertexQuotas());
      case 'GET /vertex/quotas/usage':
        return ok({ models: control.vertexQuotaUsage(), sharedQuota: control.sharedQuotaUsage() });
      case 'GET /vertex/shared-quota':
        return ok({ sharedQuota: control.sharedQuotaUsage() });
      case 'PUT /vertex/shared-quota':
        control.setSharedQuota(parseSharedQuota(body === undefined ? null : body));
        return ok({ sharedQuota: control.sharedQuotaUsage() });
      case 'GET /flex':
        return ok(control.getFlex());
      case 'PUT /flex':
        return ok(control.setFlex(parseFlexConfig(body, control.getFlex())));
      case 'GET /batches':
        return ok({ batches: control.listBatches() });
      case 'GET /batches/config':
        return ok(control.getBatchConfig());
      case 'PUT /batches/config':
        return ok(control.setBatchConfig(parseBatchConfig(body, control.getBatchConfig())));
    }
    const revoke = /^\/service-accounts\/keys\/([^/]+)\/revoke$/.exec(path);
    if (revoke?.[1] && method === 'POST') {
      return control.revokeServiceAccountKey(decodeURIComponent(revoke[1])) ? ok() : fail(404, 'no such key');
    }
    const force = /^\/batches\/([^/]+)\/state$/.exec(path);
    if (force?.[1] && method === 'POST') {
      const state = (body as { state?: unknown } | undefined)?.state;
      if (typeof state !== 'string' || !BATCH_STATES.includes(state as BatchState)) return fail(400, `state must be one of ${BATCH_STATES.join(', ')}`);
      try {
        return ok(control.forceBatchState(decodeURIComponent(force[1]), state as BatchState));
      } catch (e) {
        if (e instanceof ApiError) return fail(e.status, 'no such batch');
        throw e;
      }
    }
    const faultId = /^\/faults\/([^/]+)$/.exec(path);
    if (faultId?.[1] && method === 'DELETE') {
      return control.removeFault(decodeURIComponent(faultId[1])) ? ok() : fail(404, 'no such fault');
    }
    return fail(404, `no control route ${method} /_emulator${path}`);
  } catch (e) {
    return fail(400, e instanceof Error ? e.message : String(e));
  }
}
