import type { Config, LimitKey, RateLimitSpec, RateLimits } from '@prompt-queue/shared';

/** The fields of a chain link that decide its quota scope (every provider's link has them). */
interface ScopeFields {
  provider: string;
  model: string;
  name?: string | undefined;
  project?: string | undefined;
  limits?: RateLimitSpec | undefined;
}

/** One quota scope the configuration names, with its configured limits. */
export interface QuotaScope {
  /** `<link name>:<model>:<project>`, the worker's link id. */
  id: string;
  key: Required<LimitKey>;
  limits: RateLimits;
  /** Key of its latencies in the fleet history: `<link name>:<model>`. */
  latencyLink: string;
}

/**
 * The quota scopes the fleet's chains draw from, deduplicated: every link with a fixed model, and
 * for links that call the job's own model (`$job`, the default chain's only link) every model the
 * `limits` table names for them. Limits resolve as the worker's `resolveLinkSpec` does
 * (apps/worker/src/providers/chain.ts): the link's own, else `limits["<name>:<model>"]`,
 * `limits["<provider>:<model>"]`, `limits["<model>"]`. Models nobody configured are not listed:
 * the scaler cannot know which the backlog asks for, so it caps only what it knows
 * (docs/running-at-scale.md).
 */
export function quotaScopes(config: Config): QuotaScope[] {
  const chains = Object.values(config.chains);
  const links: ScopeFields[] = chains.length > 0 ? chains.flat() : [{ provider: 'gemini', model: '$job' }];
  const scopes = new Map<string, QuotaScope>();
  for (const link of links) {
    const name = link.name ?? link.provider;
    const models = link.model === '$job' ? tableModels(config, [name, link.provider]) : [link.model];
    for (const model of models) {
      const limits = link.limits ?? config.limits[`${name}:${model}`] ?? config.limits[`${link.provider}:${model}`] ?? config.limits[model];
      const project = link.project ?? limits?.project ?? 'default';
      const id = `${name}:${model}:${project}`;
      if (scopes.has(id)) continue;
      scopes.set(id, {
        id,
        key: { provider: name, model, project },
        limits: { rpm: limits?.rpm ?? 0, tpm: limits?.tpm ?? 0 },
        latencyLink: `${name}:${model}`,
      });
    }
  }
  return [...scopes.values()];
}

/** Models of the `limits` table that apply to a `$job` link named `names[0]` of provider `names[1]`. */
function tableModels(config: Config, names: readonly string[]): string[] {
  const models = new Set<string>();
  for (const key of Object.keys(config.limits)) {
    const colon = key.indexOf(':');
    if (colon < 0) models.add(key);
    else if (names.includes(key.slice(0, colon))) models.add(key.slice(colon + 1));
  }
  return [...models];
}
