// Service tiers (standard, flex, priority). A request picks one with a top-level
// `serviceTier` field: @google/genai 2.32.0 sends `config.serviceTier` as
// `"serviceTier": "flex"` (lowercase enum values: unspecified, flex, standard, priority) on
// both the Gemini API and Vertex; raw JSON may say `service_tier` and upper case.
// Flex is served with its own, much longer latency, and may be shed with 503 under load.

import { badRequest } from './errors.js';

export type ServiceTier = 'standard' | 'flex' | 'priority';

export const SERVICE_TIERS: readonly ServiceTier[] = ['standard', 'flex', 'priority'];

/** How the Flex tier behaves. Google's target is 1–15 min; tests scale it down. */
export interface FlexConfig {
  /** Base latency of a Flex call, ms (default 0; Google's target is 60000–900000). */
  latencyMs: number;
  /** Extra Flex latency in [0, jitterMs), from the emulator's seeded PRNG (default 0). */
  jitterMs: number;
  /** Share 0..1 of Flex calls shed with 503, drawn from the seeded PRNG (default 0). */
  shedProbability: number;
  /** Flex calls in flight at once; one more is shed with 503 (default: no limit). */
  maxConcurrent: number | null;
}

export const DEFAULT_FLEX: FlexConfig = { latencyMs: 0, jitterMs: 0, shedProbability: 0, maxConcurrent: null };

/** The tier a request body asks for; `unspecified` or absent is standard. Throws 400 on anything else. */
export function requestedTier(body: unknown): ServiceTier {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'standard';
  const r = body as Record<string, unknown>;
  const raw = r.serviceTier ?? r.service_tier;
  if (raw === undefined || raw === null) return 'standard';
  if (typeof raw !== 'string') throw badRequest("Invalid value at 'service_tier' (TYPE_ENUM)");
  const v = raw.toLowerCase().replace(/^service_tier_/, '');
  if (v === 'unspecified' || v === '' || v === 'standard') return 'standard';
  if (v === 'flex' || v === 'priority') return v;
  throw badRequest(`Invalid value at 'service_tier' (type.googleapis.com/google.ai.generativelanguage.v1beta.ServiceTier), "${raw}"`);
}

/** Validates a (partial) Flex configuration from the control API; unset fields keep `base`. */
export function parseFlexConfig(raw: unknown, base: FlexConfig = DEFAULT_FLEX): FlexConfig {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error('flex must be {"latencyMs"?, "jitterMs"?, "shedProbability"?, "maxConcurrent"?}');
  }
  const r = raw as Record<string, unknown>;
  const out: FlexConfig = { ...base };
  for (const [key, v] of Object.entries(r)) {
    switch (key) {
      case 'latencyMs':
      case 'jitterMs':
        if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 3_600_000) throw new Error(`flex ${key} must be an integer between 0 and 3600000`);
        out[key] = v;
        break;
      case 'shedProbability':
        if (typeof v !== 'number' || !(v >= 0 && v <= 1)) throw new Error('flex shedProbability must be a number between 0 and 1');
        out.shedProbability = v;
        break;
      case 'maxConcurrent':
        if (v !== null && (typeof v !== 'number' || !Number.isInteger(v) || v < 0)) throw new Error('flex maxConcurrent must be a non-negative integer or null');
        out.maxConcurrent = v;
        break;
      default:
        throw new Error(`unknown flex field "${key}"`);
    }
  }
  return out;
}
