// Control API under /_emulator/: no Gemini auth, JSON in and out. Lets tests and benchmarks
// read counters and switch faults, quotas and latency at runtime.

import type { CountersSnapshot, WindowStats } from './counters.js';
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
