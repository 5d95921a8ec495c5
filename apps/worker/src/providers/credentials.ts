import type { Redis } from 'ioredis';
import type { Config, Logger } from '@prompt-queue/shared';
import type { KeyRing } from './gemini/key-ring.js';
import type { CredentialSource, LinkConfigBase, PluginContext, ProviderPlugin } from './plugin.js';

/** A resolved link, as far as its credentials go (chain.ts ResolvedLinkSpec). */
export interface CredentialTarget {
  id: string;
  plugin: ProviderPlugin;
  link: LinkConfigBase;
}

/** The plugins' context of one worker process, with the `processScoped` store it closes. */
export function createPluginContext(deps: { config: Config; logger: Logger; redis: Redis; keyRing: KeyRing; fetch?: typeof fetch }): PluginContext & { close(): void } {
  const scoped = new Map<string, object>();
  return {
    ...deps,
    processScoped<T extends object>(key: string, create: () => T): T {
      let value = scoped.get(key) as T | undefined;
      if (value === undefined) scoped.set(key, (value = create()));
      return value;
    },
    close() {
      for (const value of scoped.values()) (value as { close?: () => void }).close?.();
      scoped.clear();
    },
  };
}

/**
 * Each link's credential source, built once per link id from its plugin (links of one chain
 * template share a source per concrete link). The startup check and the adapters use the same ones.
 */
export class LinkCredentials {
  private readonly sources = new Map<string, CredentialSource>();

  constructor(readonly context: PluginContext & { close?(): void }) {}

  for(spec: CredentialTarget): CredentialSource {
    let source = this.sources.get(spec.id);
    if (!source) this.sources.set(spec.id, (source = spec.plugin.credentials(spec.link, this.context)));
    return source;
  }

  /**
   * The startup check: every link's `credentials.check()`. Throws one error naming every link
   * without a usable credential.
   */
  async check(specs: readonly CredentialTarget[]): Promise<void> {
    const results = await Promise.allSettled(specs.map((spec) => this.for(spec).check()));
    const problems = results.flatMap((result) => (result.status === 'rejected' ? [result.reason instanceof Error ? result.reason.message : String(result.reason)] : []));
    if (problems.length > 0) throw new Error([...new Set(problems)].join('; '));
  }

  /** Closes every source, then the context's process-wide state. Idempotent. */
  close(): void {
    for (const source of this.sources.values()) source.close?.();
    this.sources.clear();
    this.context.close?.();
  }
}
