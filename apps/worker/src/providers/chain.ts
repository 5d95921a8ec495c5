import type { Redis } from 'ioredis';
import type { ChainLinkSpec, Config, LimitKey, Logger, RateLimits } from '@prompt-queue/shared';
import { ProviderBreaker, type BreakerState } from './breaker.js';
import { GeminiProvider, type KeySource } from './gemini/gemini-provider.js';
import { OpenAICompatibleProvider } from './openai/openai-compatible.js';
import type { Provider } from './provider.js';

/**
 * The fallback chain: which links may serve a job, in order. A link is one provider + model (+ quota
 * project) with its own adapter, its own fleet-wide limits and its own circuit breaker; prices
 * follow the model (`config.prices`).
 *
 * Chains come from `config.chains`, keyed by the job's model, else `default`; a link whose model is
 * `$job` serves the job's own model, so one chain template yields one concrete link per model. Links
 * are built once and shared (same id → same breaker), whichever chain or route reaches them.
 */

/** The chain when nothing is configured: Gemini serving the job's own model. */
export const DEFAULT_CHAIN: readonly ChainLinkSpec[] = [{ provider: 'gemini', model: '$job' }];

/** What the pipeline needs of a breaker (ProviderBreaker; tests may pass their own). */
export type LinkBreaker = Pick<ProviderBreaker, 'isOpen' | 'fire' | 'shutdown'> & { readonly state: BreakerState };

export interface Link {
  /** `<name>:<model>:<project>`: the breaker's name in Redis and logs. */
  readonly id: string;
  /** Recorded as the result's `provider`. */
  readonly providerName: string;
  readonly model: string;
  /** The link's fleet-wide limiter scope. */
  readonly limitKey: LimitKey;
  readonly limits: RateLimits;
  readonly provider: Provider;
  readonly breaker: LinkBreaker;
}

export interface ChainDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  /** Builds a link's adapter; tests wrap it to observe calls. */
  createProvider?: (spec: ResolvedLinkSpec) => Provider;
  /** Builds a link's breaker; defaults to ProviderBreaker with `config.breaker`. */
  createBreaker?: (linkId: string) => LinkBreaker;
  /**
   * The worker's Gemini key ring (GEMINI_API_KEY + GEMINI_API_KEY_FILE): Gemini links without keys
   * of their own take their keys from it, one per call. Without it they use `gemini.apiKeys`.
   */
  keyRing?: KeySource;
  /** Observes every breaker transition (metrics), and each link's initial `closed`. */
  onBreakerTransition?: (linkId: string, state: BreakerState['state']) => void;
}

/** A chain link with `$job` and every default resolved. */
export interface ResolvedLinkSpec {
  id: string;
  provider: ChainLinkSpec['provider'];
  name: string;
  model: string;
  baseUrl: string;
  /** Gemini links: API version in the request path (gemini.apiVersion). */
  apiVersion: Config['gemini']['apiVersion'];
  apiKeys: string[];
  /** The link lists its own keys (else it uses the worker's `gemini` keys, i.e. the key ring). */
  ownKeys: boolean;
  project: string;
  timeoutMs: number;
  limits: RateLimits;
  /** File URI prefixes the link's backend may fetch (config `fileUris.allow`). */
  fileUriAllow: readonly string[];
}

export class ProviderChains {
  private readonly links = new Map<string, Link>();
  private readonly chains = new Map<string, Link[]>();

  constructor(private readonly deps: ChainDeps) {}

  /**
   * The links for a job of this kind and model, in order, without duplicates. Embed jobs only get
   * links whose adapter can embed (`embedBatch`) and whose model is an embedding model.
   */
  linksFor(kind: 'generate' | 'embed', jobModel: string): Link[] {
    const cacheKey = `${kind}\u0000${jobModel}`;
    const cached = this.chains.get(cacheKey);
    if (cached) return cached;
    const { config } = this.deps;
    const specs = config.chains[jobModel] ?? config.chains.default ?? DEFAULT_CHAIN;
    const chain: Link[] = [];
    for (const spec of specs) {
      const link = this.link(resolveLinkSpec(config, spec, jobModel));
      if (chain.some((known) => known.id === link.id)) continue;
      if (kind === 'embed' && !(link.provider.embedBatch && config.models[link.model]?.kind === 'embed')) continue;
      if (kind === 'generate' && config.models[link.model]?.kind === 'embed') continue;
      chain.push(link);
    }
    // A job must always have somewhere to go: its own model on Gemini, as without configuration.
    if (chain.length === 0) chain.push(this.link(resolveLinkSpec(config, DEFAULT_CHAIN[0]!, jobModel)));
    this.chains.set(cacheKey, chain);
    return chain;
  }

  /** Every link built so far (for /status). */
  all(): Link[] {
    return [...this.links.values()];
  }

  shutdown(): void {
    for (const link of this.links.values()) link.breaker.shutdown();
  }

  private link(spec: ResolvedLinkSpec): Link {
    const known = this.links.get(spec.id);
    if (known) return known;
    const { config, logger, redis } = this.deps;
    const provider = this.deps.createProvider?.(spec) ?? createProvider(spec, this.deps.keyRing);
    const onTransition = this.deps.onBreakerTransition;
    const breaker =
      this.deps.createBreaker?.(spec.id) ??
      new ProviderBreaker({
        link: spec.id,
        redis,
        prefix: config.redis.prefix,
        logger,
        options: { ...config.breaker },
        ...(onTransition ? { onTransition: (state: BreakerState) => onTransition(spec.id, state.state) } : {}),
      });
    onTransition?.(spec.id, breaker.state.state);
    const link: Link = {
      id: spec.id,
      providerName: spec.name,
      model: spec.model,
      limitKey: { provider: spec.name, model: spec.model, project: spec.project },
      limits: spec.limits,
      provider,
      breaker,
    };
    this.links.set(spec.id, link);
    return link;
  }
}

/** Fills in `$job`, the Gemini defaults and the limits of one link. */
export function resolveLinkSpec(config: Config, spec: ChainLinkSpec, jobModel: string): ResolvedLinkSpec {
  const model = spec.model === '$job' ? jobModel : spec.model;
  const name = spec.name ?? spec.provider;
  const table = config.limits[`${name}:${model}`] ?? config.limits[`${spec.provider}:${model}`] ?? config.limits[model];
  const limits = spec.limits ?? table;
  const project = spec.project ?? limits?.project ?? 'default';
  return {
    id: `${name}:${model}:${project}`,
    provider: spec.provider,
    name,
    model,
    baseUrl: spec.baseUrl ?? config.gemini.baseUrl,
    apiVersion: config.gemini.apiVersion,
    apiKeys: spec.apiKeys ?? (spec.provider === 'gemini' ? config.gemini.apiKeys : []),
    ownKeys: spec.apiKeys !== undefined,
    project,
    timeoutMs: spec.timeoutMs ?? config.gemini.timeoutMs,
    limits: { rpm: limits?.rpm ?? 0, tpm: limits?.tpm ?? 0 },
    fileUriAllow: config.fileUris.allow,
  };
}

function createProvider(spec: ResolvedLinkSpec, keyRing: KeySource | undefined): Provider {
  if (spec.provider === 'openai') {
    return new OpenAICompatibleProvider({
      name: spec.name,
      baseUrl: spec.baseUrl,
      timeoutMs: spec.timeoutMs,
      fileUriAllow: spec.fileUriAllow,
      ...(spec.apiKeys[0] !== undefined ? { apiKey: spec.apiKeys[0] } : {}),
    });
  }
  const keys = !spec.ownKeys && keyRing ? { keyRing } : { apiKeys: spec.apiKeys };
  return new GeminiProvider({ ...keys, baseUrl: spec.baseUrl, apiVersion: spec.apiVersion, timeoutMs: spec.timeoutMs, fileUriAllow: spec.fileUriAllow });
}
