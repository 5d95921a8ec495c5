import { geminiPlugin } from './gemini/index.js';
import { openaiPlugin } from './openai/index.js';
import type { ProviderPlugin } from './plugin.js';
import { vertexPlugin } from './vertex/index.js';

/**
 * The providers a chain link may name. Adding one: a folder `providers/<name>/` exporting its
 * plugin, and one line here.
 */
export const BUILTIN_PROVIDERS: readonly ProviderPlugin[] = [
  geminiPlugin,
  openaiPlugin,
  vertexPlugin,
];

/** Plugins by name. */
export interface ProviderRegistry {
  get(name: string): ProviderPlugin | undefined;
  names(): string[];
}

/** A registry of `plugins`; two with the same name are a programming error. */
export function createRegistry(plugins: readonly ProviderPlugin[]): ProviderRegistry {
  const byName = new Map<string, ProviderPlugin>();
  for (const plugin of plugins) {
    if (byName.has(plugin.name)) throw new Error(`two provider plugins are named ${plugin.name}`);
    byName.set(plugin.name, plugin);
  }
  return {
    get: (name) => byName.get(name),
    names: () => [...byName.keys()],
  };
}

/** The worker's providers. */
export const defaultRegistry: ProviderRegistry = createRegistry(BUILTIN_PROVIDERS);
