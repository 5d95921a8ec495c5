import type { Redis } from 'ioredis';
import { isProviderError, type ChainLinkSpec, type Config, type LimitKey, type Logger, type RateLimits } from '@prompt-queue/shared';
import { ProviderBreaker, type BreakerState } from './breaker.js';
import { CallLatencies } from './call-latencies.js';
import { UnnamedRateLimitBackoff } from './rate-limit.js';
import { createPluginContext, LinkCredentials } from './credentials.js';
import { KeyRing } from './gemini/key-ring.js';
import { linkId, type LinkConfigBase, type ProviderPlugin } from './plugin.js';
import type { CallOptions, EmbedBatchRequest, Provider } from './provider.js';
import { defaultRegistry, type ProviderRegistry } from './registry.js';

/**
 * The fallback chain: which links may serve a job, in order. A link is one provider + model (+ quota
 * project) with its own adapter, its own fleet-wide limits and its own circuit breaker; prices
 * follow the model (`config.prices`). What a link's provider means (its fields, adapter,
 * credentials, limiter scope) comes from its plugin in the registry (registry.ts).
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
  /** How long to wait after a 429 that names no delay (this process's streak on the link). */
  readonly rateLimitBackoff: UnnamedRateLimitBackoff;
  /** This process's recent call latencies on the link, to date calls in the limiter's window. */
  readonly latencies: CallLatencies;
}

export interface ChainDeps {
  config: Config;
  logger: Logger;
  redis: Redis;
  /** The providers links may name. @defaultValue defaultRegistry (the built-in ones) */
  registry?: ProviderRegistry;
  /**
   * Every link's credential source, and the plugins' context (the key ring…).
   * @defaultValue built from a key ring of `gemini.apiKeys` / `gemini.apiKeyFile`
   */
  credentials?: LinkCredentials;
  /** Builds a link's adapter; tests wrap it to observe calls. */
  createProvider?: (spec: ResolvedLinkSpec) => Provider;
  /** Builds a link's breaker; defaults to ProviderBreaker with `config.breaker`. */
  createBreaker?: (linkId: string) => LinkBreaker;
  /** Told of every link built (the first job of its route): the worker republishes its links. */
  onLinkBuilt?: (spec: ResolvedLinkSpec) => void;
  /** Observes every breaker transition (metrics), and each link's initial `closed`. */
  onBreakerTransition?: (linkId: string, state: BreakerState['state']) => void;
}

/** A chain link with `$job` and every common default resolved, and its plugin. */
export interface ResolvedLinkSpec {
  /** `<name>:<model>:<project>`. */
  id: string;
  /** The plugin's name (`gemini`, `openai`…). */
  provider: string;
  /** In results and logs: the link's `name`, else the provider. */
  name: string;
  model: string;
  project: string;
  timeoutMs: number;
  limits: RateLimits;
  /** The fleet-wide limiter scope: `{ provider: plugin.limitScope(link), model, project }`. */
  limitKey: Required<LimitKey>;
  plugin: ProviderPlugin;
  /** The link as its plugin parsed it, `model`, `project` and `timeoutMs` resolved: what the plugin's methods get. */
  link: LinkConfigBase;
}

export class ProviderChains {
  private readonly links = new Map<string, Link>();
  private readonly chains = new Map<string, Link[]>();
  private readonly builtSpecs = new Map<string, ResolvedLinkSpec>();

  private readonly registry: ProviderRegistry;
  private readonly credentials: LinkCredentials;

  constructor(private readonly deps: ChainDeps) {
    this.registry = deps.registry ?? defaultRegistry;
    const { config, logger, redis } = deps;
    this.credentials = deps.credentials ?? new LinkCredentials(createPluginContext({ config, logger, redis, keyRing: KeyRing.fromConfig(config, logger) }));
  }

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
      const link = this.link(resolveLinkSpec(config, spec, jobModel, this.registry));
      if (chain.some((known) => known.id === link.id)) continue;
      if (kind === 'embed' && !(link.provider.embedBatch && config.models[link.model]?.kind === 'embed')) continue;
      if (kind === 'generate' && config.models[link.model]?.kind === 'embed') continue;
      chain.push(link);
    }
    // A job must always have somewhere to go: its own model on Gemini, as without configuration.
    if (chain.length === 0) chain.push(this.link(resolveLinkSpec(config, DEFAULT_CHAIN[0]!, jobModel, this.registry)));
    this.chains.set(cacheKey, chain);
    return chain;
  }

  /** Every link built so far (for /status). */
  all(): Link[] {
    return [...this.links.values()];
  }

  /** The configured links (see {@link configuredLinks}) and every link built since, resolved. */
  specs(): ResolvedLinkSpec[] {
    const specs = new Map(configuredLinks(this.deps.config, this.registry).map((spec) => [spec.id, spec]));
    for (const [id, spec] of this.builtSpecs) specs.set(id, spec);
    return [...specs.values()];
  }

  shutdown(): void {
    for (const link of this.links.values()) link.breaker.shutdown();
  }

  private link(spec: ResolvedLinkSpec): Link {
    const known = this.links.get(spec.id);
    if (known) return known;
    const { config, logger, redis } = this.deps;
    const { credentials } = this;
    const adapter = this.deps.createProvider?.(spec) ?? spec.plugin.create(spec.link, { ...credentials.context, credentials: credentials.for(spec) });
    const provider = classifiedBy(spec, adapter);
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
      limitKey: spec.limitKey,
      limits: spec.limits,
      provider,
      breaker,
      rateLimitBackoff: new UnnamedRateLimitBackoff(),
      latencies: new CallLatencies(),
    };
    this.links.set(spec.id, link);
    this.builtSpecs.set(spec.id, spec);
    this.deps.onLinkBuilt?.(spec);
    return link;
  }
}

/**
 * The adapter with every failure in the shared vocabulary: whatever it throws that is not yet a
 * ProviderError goes through its plugin's `classify`, so the pipeline's one fate mapping (fate.ts)
 * only ever sees ProviderErrors, whichever provider failed and however its adapter was written.
 */
function classifiedBy(spec: ResolvedLinkSpec, adapter: Provider): Provider {
  const classify = (error: unknown): never => {
    throw isProviderError(error) ? error : spec.plugin.classify(error, { timeoutMs: spec.timeoutMs });
  };
  return {
    name: adapter.name,
    generate: (request, options) => adapter.generate(request, options).catch(classify),
    ...(adapter.embedBatch ? { embedBatch: (request: EmbedBatchRequest, options?: CallOptions) => adapter.embedBatch!(request, options).catch(classify) } : {}),
  };
}

/**
 * Fills in `$job`, the common defaults and the limits of one link, and finds its plugin. The link is
 * parsed by the plugin's schema (already done for `config.chains` by validateChainLinks at start;
 * the default chain and tests' configs get it here).
 */
export function resolveLinkSpec(config: Config, spec: ChainLinkSpec, jobModel: string, registry: ProviderRegistry = defaultRegistry): ResolvedLinkSpec {
  const plugin = registry.get(spec.provider);
  if (!plugin) throw new Error(`chain link provider "${spec.provider}" is not registered (registered: ${registry.names().join(', ')})`);
  const parsed = plugin.linkSchema.parse(spec);
  const model = parsed.model === '$job' ? jobModel : parsed.model;
  const name = parsed.name ?? parsed.provider;
  const table = config.limits[`${name}:${model}`] ?? config.limits[`${parsed.provider}:${model}`] ?? config.limits[model];
  const limits = parsed.limits ?? table;
  const project = parsed.project ?? limits?.project ?? 'default';
  const timeoutMs = parsed.timeoutMs ?? config.gemini.timeoutMs;
  const link: LinkConfigBase = { ...parsed, model, project, timeoutMs };
  return {
    id: linkId(link),
    provider: plugin.name,
    name,
    model,
    project,
    timeoutMs,
    limits: { rpm: limits?.rpm ?? 0, tpm: limits?.tpm ?? 0 },
    limitKey: { provider: plugin.limitScope(link), model, project },
    plugin,
    link,
  };
}

/**
 * Every link the configuration names, resolved: a chain's `$job` links as the chain's own model
 * (`default`: gemini.defaultModel). What the startup check asks for credentials, and what the
 * dashboard sees before the first job.
 */
export function configuredLinks(config: Config, registry: ProviderRegistry = defaultRegistry): ResolvedLinkSpec[] {
  const chains = Object.keys(config.chains).length > 0 ? Object.entries(config.chains) : [['default', DEFAULT_CHAIN] as const];
  const specs = new Map<string, ResolvedLinkSpec>();
  for (const [chain, links] of chains) {
    const jobModel = chain === 'default' ? config.gemini.defaultModel : chain;
    for (const link of links) {
      const spec = resolveLinkSpec(config, link, jobModel, registry);
      if (!specs.has(spec.id)) specs.set(spec.id, spec);
    }
  }
  return [...specs.values()];
}
