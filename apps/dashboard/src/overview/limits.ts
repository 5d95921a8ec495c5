import type { Config, LimitKey, RateLimits } from '@prompt-queue/shared';

/** One rate-limit scope the overview shows, with the limits the worker enforces on it. */
export interface LimitScope {
  key: LimitKey;
  limits: RateLimits;
  /** False when no limits are configured for it: the overview then shows usage only. */
  configured: boolean;
}

/** The provider of the models in `config.models` (the Gemini adapter's name in the limiter keys). */
const DEFAULT_PROVIDER = 'gemini';
/** Providers a `limits` key may start with (`gemini:gemini-3.6-flash`). */
const PROVIDERS = ['gemini', 'openai'];

interface LimitEntry {
  provider?: unknown;
  model?: unknown;
  project?: unknown;
  rpm?: unknown;
  tpm?: unknown;
}

/**
 * The scopes to show: the configured limits when the config has a `limits` section (a record keyed
 * by `provider:model` or model, of `{ rpm, tpm, project? }`; a list of `{ provider?, model, … }`
 * is read too); otherwise every known
 * model (`config.models`) without limits (0 = unlimited), so its current usage still shows.
 *
 * The `limits` section comes with the worker's rate-limit work; this reads it defensively so the
 * dashboard works before and after it lands. Limits set on chain links themselves are not shown yet.
 */
export function limitScopes(config: Config): LimitScope[] {
  const section = (config as unknown as { limits?: unknown }).limits;
  const entries: LimitEntry[] = [];
  if (Array.isArray(section)) {
    entries.push(...section.filter(isObject));
  } else if (isObject(section)) {
    for (const [name, value] of Object.entries(section)) {
      if (!isObject(value)) continue;
      // Keys are `provider:model` or a bare model (a model name may itself contain colons).
      const colon = name.indexOf(':');
      const provider = colon > 0 ? name.slice(0, colon) : '';
      entries.push(PROVIDERS.includes(provider) ? { provider, model: name.slice(colon + 1), ...value } : { model: name, ...value });
    }
  }
  const scopes = entries.flatMap((entry): LimitScope[] => {
    if (typeof entry.model !== 'string' || entry.model === '') return [];
    const key: LimitKey = { provider: typeof entry.provider === 'string' ? entry.provider : DEFAULT_PROVIDER, model: entry.model };
    if (typeof entry.project === 'string') key.project = entry.project;
    return [{ key, limits: { rpm: count(entry.rpm), tpm: count(entry.tpm) }, configured: true }];
  });
  if (scopes.length > 0) return scopes;
  return Object.keys(config.models)
    .sort()
    .map((model) => ({ key: { provider: DEFAULT_PROVIDER, model }, limits: { rpm: 0, tpm: 0 }, configured: false }));
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : 0;
}
