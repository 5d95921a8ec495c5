import type { Config, LimitKey, PublishedLink, RateLimits } from '@prompt-queue/shared';

/** One rate-limit scope the overview shows, with the limits the worker enforces on it. */
export interface LimitScope {
  key: LimitKey;
  limits: RateLimits;
  /** False when no limits are configured for it: the overview then shows usage only. */
  configured: boolean;
}

/** The provider of the models in `config.models`, and of the worker's chain when none is configured. */
const DEFAULT_PROVIDER = 'gemini';

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
 * A `limits` key's `provider:` part is recognised when some link uses it: a provider or link name of
 * `config.chains` or of the links the workers publish (`links`). The dashboard knows no provider by
 * itself. Every published link's own scope is shown too, with the limits the worker enforces on it.
 */
export function limitScopes(config: Config, links: readonly PublishedLink[] = []): LimitScope[] {
  const providers = new Set([DEFAULT_PROVIDER, ...links.flatMap((link) => [link.provider, link.name, link.limitKey.provider])]);
  for (const chain of Object.values((config as unknown as { chains?: Record<string, unknown> }).chains ?? {})) {
    if (!Array.isArray(chain)) continue;
    for (const link of chain.filter(isObject)) for (const name of [link.provider, link.name]) if (typeof name === 'string') providers.add(name);
  }
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
      entries.push(providers.has(provider) ? { provider, model: name.slice(colon + 1), ...value } : { model: name, ...value });
    }
  }
  const scopes = entries.flatMap((entry): LimitScope[] => {
    if (typeof entry.model !== 'string' || entry.model === '') return [];
    const key: LimitKey = { provider: typeof entry.provider === 'string' ? entry.provider : DEFAULT_PROVIDER, model: entry.model };
    if (typeof entry.project === 'string') key.project = entry.project;
    return [{ key, limits: { rpm: count(entry.rpm), tpm: count(entry.tpm) }, configured: true }];
  });
  const shown = new Set(scopes.map(({ key }) => scopeId(key)));
  for (const link of links) {
    if (shown.has(scopeId(link.limitKey))) continue;
    shown.add(scopeId(link.limitKey));
    scopes.push({ key: { ...link.limitKey }, limits: { ...link.limits }, configured: link.limits.rpm > 0 || link.limits.tpm > 0 });
  }
  if (scopes.length > 0) return scopes;
  return Object.keys(config.models)
    .sort()
    .map((model) => ({ key: { provider: DEFAULT_PROVIDER, model }, limits: { rpm: 0, tpm: 0 }, configured: false }));
}

function scopeId(key: LimitKey): string {
  return `${key.provider}\u0000${key.model}\u0000${key.project ?? 'default'}`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function count(value: unknown): number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : 0;
}
