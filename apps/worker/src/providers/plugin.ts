import type { Redis } from 'ioredis';
import type { z } from 'zod';
import type { Config, CredentialHealth, LinkConfigBase, Logger, ProviderError } from '@prompt-queue/shared';
import type { KeyRing } from './gemini/key-ring.js';
import type { Provider } from './provider.js';

export type { CredentialHealth, LinkConfigBase };

/**
 * A provider as a plug-in: one folder `providers/<name>/` exporting one `ProviderPlugin`, listed by
 * one line in registry.ts. The worker, its config check and the dashboard (through the links the
 * worker publishes) know providers only through this interface.
 *
 * A plugin's methods receive its link RESOLVED: parsed by `linkSchema`, `model` concrete (`$job`
 * replaced by the job's model), `project` and `timeoutMs` filled in from the limits table and
 * `gemini.timeoutMs`.
 */
export interface ProviderPlugin<L extends LinkConfigBase = LinkConfigBase> {
  /** The `provider` value of a chain link in CONFIG_FILE. */
  readonly name: string;
  /** This provider's link config: a strict zod object with `provider: z.literal(name)` — one variant of the links' union. */
  readonly linkSchema: z.ZodType<L>;
  /**
   * Fleet-wide limiter scope of a link (links sharing a provider quota pool share a scope): the
   * quota pool, the first part of the limiter key `{<scope>:<model>:<project>}`.
   */
  limitScope(link: L): string;
  /** Where the link's credentials come from; checked at startup; describe() gives fingerprints only, never secrets. */
  credentials(link: L, context: PluginContext): CredentialSource;
  /** The adapter (apps/worker/src/providers/provider.ts `Provider`). */
  create(link: L, context: PluginContext & { credentials: CredentialSource }): Provider;
  /**
   * Any error of this provider's calls → a shared ProviderError; fate.ts (pipeline) maps it to the
   * job's fate. The chain applies it to whatever the adapter throws unclassified (chain.ts).
   */
  classify(error: unknown, context: { timeoutMs?: number }): ProviderError;
}

export interface CredentialSource {
  /** Throws a clear error naming the link when no usable credential exists (startup check). */
  check(): Promise<void>;
  /** Fingerprints and state for the dashboard/logs, e.g. [{ fingerprint: 'sha256:ab12…', state: 'ok' | 'rejected' | 'unknown', detail? }]. */
  describe(): CredentialHealth[];
  close?(): void;
}

/** What the worker gives a plugin: one context per worker process. */
export interface PluginContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly redis: Redis;
  /**
   * The worker's Gemini API keys (GEMINI_API_KEY, GEMINI_API_KEY_FILE): one ring per process,
   * reloaded on SIGHUP; Gemini links without keys of their own draw from it.
   */
  readonly keyRing: KeyRing;
  /**
   * Process-wide state a plugin shares across its links (a token cache): `create` runs once per
   * `key` and worker process; the result's `close()`, if any, runs when the worker closes.
   */
  processScoped<T extends object>(key: string, create: () => T): T;
  /** For adapters that call HTTP themselves; tests pass their own. @defaultValue globalThis.fetch */
  readonly fetch?: typeof fetch;
}

/** A resolved link's id, `<name>:<model>:<project>`: its breaker's name, in logs and on the dashboard. */
export function linkId(link: LinkConfigBase): string {
  return `${link.name ?? link.provider}:${link.model}:${link.project ?? 'default'}`;
}
