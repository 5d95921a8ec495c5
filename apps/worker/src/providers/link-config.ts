import { z } from 'zod';
import { closestKey, invalidConfiguration, loadConfig, type ChainLinkSpec, type Config } from '@prompt-queue/shared';
import { defaultRegistry, type ProviderRegistry } from './registry.js';

/**
 * The worker's half of loading the configuration: packages/shared reads chain links as their common
 * fields plus whatever else they carry; here each link is parsed by its provider plugin's strict
 * schema. A bad link refuses to start, with the link's path, the bad key and the closest valid one:
 *
 *   Invalid configuration: CONFIG_FILE chains.default.1.baseURL: unknown key, did you mean baseUrl?
 *   Invalid configuration: CONFIG_FILE chains.default.0.provider: unknown provider "gemnii", did you mean gemini? (registered: gemini, openai)
 *
 * Parsed links replace the loaded ones in `config.chains` (defaults applied).
 */
export function validateChainLinks(config: Config, registry: ProviderRegistry = defaultRegistry, configFile?: string): Config {
  const where = (path: readonly PropertyKey[]): string => `${configFile ? 'CONFIG_FILE ' : ''}${path.map(String).join('.')}`;
  const problems: string[] = [];
  for (const provider of Object.keys(config.providerPrices)) {
    if (registry.get(provider)) continue;
    const suggestion = closestKey(provider, registry.names());
    problems.push(`${where(['providerPrices', provider])}: unknown provider${suggestion ? `, did you mean ${suggestion}?` : ''} (registered: ${registry.names().join(', ')})`);
  }
  const chains: Record<string, ChainLinkSpec[]> = {};
  for (const [chain, links] of Object.entries(config.chains)) {
    chains[chain] = links.map((link, index) => {
      const path = ['chains', chain, index];
      const plugin = registry.get(link.provider);
      if (!plugin) {
        const suggestion = closestKey(link.provider, registry.names());
        const hint = suggestion ? `, did you mean ${suggestion}?` : '';
        problems.push(`${where([...path, 'provider'])}: unknown provider "${link.provider}"${hint} (registered: ${registry.names().join(', ')})`);
        return link;
      }
      const validKeys = new Map<string, string[]>();
      const parsed = plugin.linkSchema.safeParse(link, {
        error: (issue) => {
          if (issue.code === 'unrecognized_keys' && issue.inst instanceof z.ZodObject) {
            validKeys.set((issue.path ?? []).map(String).join('.'), Object.keys(issue.inst.shape));
          }
          return undefined;
        },
      });
      if (parsed.success) return parsed.data as ChainLinkSpec;
      for (const issue of parsed.error.issues) {
        if (issue.code !== 'unrecognized_keys') {
          problems.push(`${where([...path, ...issue.path])}: ${issue.message}`);
          continue;
        }
        const valid = validKeys.get(issue.path.map(String).join('.')) ?? [];
        for (const key of issue.keys) {
          const suggestion = closestKey(key, valid);
          const hint = suggestion ? `did you mean ${suggestion}?` : `a ${plugin.name} link takes ${valid.join(', ')}`;
          problems.push(`${where([...path, ...issue.path, key])}: unknown key, ${hint}`);
        }
      }
      return link;
    });
  }
  if (problems.length > 0) throw invalidConfiguration(problems);
  config.chains = chains;
  return config;
}

type Env = Record<string, string | undefined>;

/** `loadConfig`, then every chain link checked by its plugin. Throws a ConfigError. */
export function loadWorkerConfig(env: Env = process.env, registry: ProviderRegistry = defaultRegistry): Config {
  return validateChainLinks(loadConfig(env), registry, env.CONFIG_FILE);
}

/** For main.ts: print what is wrong and exit 1 instead of a stack trace. */
export function loadWorkerConfigOrExit(env: Env = process.env, registry: ProviderRegistry = defaultRegistry): Config {
  try {
    return loadWorkerConfig(env, registry);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }
}
