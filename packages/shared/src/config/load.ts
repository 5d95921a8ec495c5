import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_MODELS } from '../models.js';
import { DEFAULT_PRICES } from '../pricing/prices.js';
import { unsafeSettings } from './safety.js';
import { clusterUrl, configSchema, type Config } from './schema.js';
import { closestKey } from './suggest.js';

/**
 * Environment variable → config path. The single place where `process.env` is read (besides
 * `CONFIG_FILE`, `GEMINI_RPM`/`GEMINI_TPM`, chain links' `apiKeyEnv` and tenants' webhook
 * `secretEnv`, read below).
 */
export const ENV_PATHS: Readonly<Record<string, string>> = {
  NODE_ENV: 'env',
  LOG_LEVEL: 'logLevel',
  REDIS_URL: 'redis.url',
  REDIS_PREFIX: 'redis.prefix',
  REDIS_CLUSTER_NODES: 'redis.clusterNodes',
  REDIS_WAIT_REPLICAS: 'redis.waitReplicas',
  REDIS_WAIT_TIMEOUT_MS: 'redis.waitTimeoutMs',
  GEMINI_API_KEY: 'gemini.apiKeys',
  GEMINI_API_KEY_FILE: 'gemini.apiKeyFile',
  GEMINI_BASE_URL: 'gemini.baseUrl',
  GEMINI_API_VERSION: 'gemini.apiVersion',
  GEMINI_MODEL: 'gemini.defaultModel',
  GEMINI_TIMEOUT_MS: 'gemini.timeoutMs',
  PRODUCER_PORT: 'producer.port',
  API_KEYS: 'producer.apiKeys',
  MAX_REQUEST_BYTES: 'producer.maxRequestBytes',
  MAX_IMAGE_BYTES: 'producer.maxImageBytes',
  MAX_WAIT_SECONDS: 'producer.maxWaitSeconds',
  RESULT_TTL_SECONDS: 'producer.resultTtlSeconds',
  WORKER_PORT: 'worker.port',
  WORKER_CONCURRENCY: 'worker.concurrency',
  PROVIDER_KEEP_ALIVE_MS: 'worker.providerKeepAliveMs',
  JOB_ATTEMPTS: 'worker.attempts',
  BACKOFF_BASE_MS: 'worker.backoffBaseMs',
  BACKOFF_MAX_MS: 'worker.backoffMaxMs',
  SHUTDOWN_TIMEOUT_MS: 'worker.shutdownTimeoutMs',
  LOCK_DURATION_MS: 'worker.lockDurationMs',
  MAX_STALLED_COUNT: 'worker.maxStalledCount',
  BATCH_SIZE: 'batching.size',
  BATCH_MAX_WAIT_MS: 'batching.maxWaitMs',
  LIMITER_WINDOW_MS: 'limiter.windowMs',
  LIMITER_GUARD_MS: 'limiter.guardMs',
  LIMITER_SLOW_START_REQUESTS: 'limiter.slowStartRequests',
  LIMITER_REPORTED_TTL_MS: 'limiter.reportedTtlMs',
  BREAKER_ERROR_THRESHOLD_PERCENTAGE: 'breaker.errorThresholdPercentage',
  BREAKER_VOLUME_THRESHOLD: 'breaker.volumeThreshold',
  BREAKER_RESET_TIMEOUT_MS: 'breaker.resetTimeoutMs',
  BREAKER_ROLLING_COUNT_TIMEOUT_MS: 'breaker.rollingCountTimeoutMs',
  DASHBOARD_PORT: 'dashboard.port',
  DASHBOARD_USER: 'dashboard.user',
  DASHBOARD_PASSWORD: 'dashboard.password',
  DASHBOARD_TOKEN: 'dashboard.token',
  DASHBOARD_READ_ONLY: 'dashboard.readOnly',
  DASHBOARD_REDACT_TEXT: 'dashboard.redactText',
  DASHBOARD_TRUST_PROXY: 'dashboard.trustProxy',
  METRICS_TOKEN: 'metrics.token',
  SCALING_LATENCY_MS: 'scaling.latencyMs',
  SCALING_TOKENS_PER_REQUEST: 'scaling.tokensPerRequest',
  AUDIT_LOG: 'audit.destination',
  LOG_PROMPTS: 'audit.logPrompts',
  RESPONSE_CACHE: 'responseCache.enabled',
  RESPONSE_CACHE_TTL_SECONDS: 'responseCache.defaultTtlSeconds',
  RESPONSE_CACHE_SHARED: 'responseCache.shareAcrossTenants',
  WEBHOOK_ATTEMPTS: 'webhooks.attempts',
  WEBHOOK_BACKOFF_BASE_MS: 'webhooks.backoffBaseMs',
  WEBHOOK_BACKOFF_MAX_MS: 'webhooks.backoffMaxMs',
  WEBHOOK_TIMEOUT_MS: 'webhooks.timeoutMs',
  WEBHOOK_MAX_RESPONSE_BYTES: 'webhooks.maxResponseBytes',
  WEBHOOK_CONCURRENCY: 'webhooks.concurrency',
  WEBHOOK_ERRORS_PER_TENANT: 'webhooks.errorsPerTenant',
  EVENTS_HISTORY_PER_TENANT: 'events.historyPerTenant',
  EVENTS_HEARTBEAT_SECONDS: 'events.heartbeatSeconds',
};

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * One ConfigError for every problem found, on one line (`Invalid configuration: a; b`): log
 * collectors split stderr by line, and a service that refuses to start should say why in one event.
 */
export function invalidConfiguration(problems: readonly string[]): ConfigError {
  return new ConfigError(`Invalid configuration: ${problems.join('; ')}`);
}

type Env = Record<string, string | undefined>;

/**
 * Reads CONFIG_FILE (YAML or JSON) when set, applies environment overrides on top, and validates
 * the result. Throws a ConfigError whose message names the offending variable or file field: an
 * unknown key with the closest valid one, a bad value with what is accepted.
 */
export function loadConfig(env: Env = process.env): Config {
  const fromFile = env.CONFIG_FILE ? readConfigFile(env.CONFIG_FILE) : {};
  const raw: Record<string, unknown> = structuredClone(fromFile);
  const origin = new Map<string, string>();

  for (const [name, path] of Object.entries(ENV_PATHS)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    setPath(raw, path, parseEnvValue(name, value));
    origin.set(path, name);
  }
  // File entries extend the shipped tables rather than replace them.
  raw.models = { ...DEFAULT_MODELS, ...(raw.models as object | undefined) };
  raw.prices = { ...DEFAULT_PRICES, ...(raw.prices as object | undefined) };

  /** Where a path's value came from: `VARIABLE (path)` or `CONFIG_FILE path`. */
  const where = (path: readonly PropertyKey[]): string => {
    const dotted = path.map(String).join('.');
    const source = origin.get(dotted) ?? origin.get(path.slice(0, 2).map(String).join('.'));
    return source ? `${source} (${dotted})` : `${env.CONFIG_FILE ? 'CONFIG_FILE ' : ''}${dotted || '(root)'}`;
  };

  // The valid keys of each object that had unknown ones, by path, for "did you mean".
  const validKeys = new Map<string, string[]>();
  const parsed = configSchema.safeParse(raw, {
    error: (issue) => {
      if (issue.code === 'unrecognized_keys' && issue.inst instanceof z.ZodObject) {
        validKeys.set((issue.path ?? []).map(String).join('.'), Object.keys(issue.inst.shape));
      }
      return undefined;
    },
  });
  if (!parsed.success) {
    const problems = parsed.error.issues.flatMap((issue) => {
      if (issue.code !== 'unrecognized_keys') return [`${where(issue.path)}: ${issue.message}`];
      const valid = validKeys.get(issue.path.map(String).join('.')) ?? [];
      return issue.keys.map((key) => {
        const suggestion = closestKey(key, valid);
        const hint = suggestion ? `did you mean ${suggestion}?` : `expected one of ${valid.join(', ')}`;
        return `${where([...issue.path, key])}: unknown key, ${hint}`;
      });
    });
    throw invalidConfiguration(problems);
  }
  const config = resolveWebhookSecrets(applyLinkEnvironment(applyEnvironmentDefaults(parsed.data), env), env);
  // REDIS_CLUSTER_NODES becomes the URL's node list: every connection reads `redis.url` alone.
  if (config.redis.clusterNodes.length > 0) config.redis.url = clusterUrl(config.redis.url, config.redis.clusterNodes);
  const unsafe = unsafeSettings(config);
  if (unsafe.length > 0) throw invalidConfiguration(unsafe.map(({ path, message }) => `${where(path.split('.'))}: ${message}`));
  return config;
}

/** `GEMINI_RPM` / `GEMINI_TPM`: limits of `gemini.defaultModel`, over any CONFIG_FILE entry. */
const DEFAULT_MODEL_LIMIT_VARIABLES = { GEMINI_RPM: 'rpm', GEMINI_TPM: 'tpm' } as const;

/**
 * Environment that depends on parsed values: the default model's limits, and each chain link's
 * `apiKeyEnv` resolved into its `apiKeys` (so no other module reads the environment).
 */
function applyLinkEnvironment(config: Config, env: Env): Config {
  for (const [name, field] of Object.entries(DEFAULT_MODEL_LIMIT_VARIABLES)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    const parsed = Number(value);
    if (!Number.isInteger(parsed) || parsed < 0) {
      throw invalidConfiguration([`${name} (limits.${config.gemini.defaultModel}.${field}): expected an integer ≥ 0 (0 = unlimited)`]);
    }
    const model = config.gemini.defaultModel;
    config.limits[model] = { rpm: 0, tpm: 0, ...config.limits[model], [field]: parsed };
  }
  // `apiKeyEnv` is a provider field (the worker's plugin schema checks it), read here because no
  // other module reads the environment.
  for (const [chain, links] of Object.entries(config.chains)) {
    links.forEach((link, index) => {
      if (typeof link.apiKeyEnv !== 'string') return;
      const keys = splitList(env[link.apiKeyEnv] ?? '');
      if (keys.length === 0) {
        throw invalidConfiguration([`chains.${chain}.${index}.apiKeyEnv: ${link.apiKeyEnv} is not set`]);
      }
      link.apiKeys = keys;
    });
  }
  return config;
}

/** Shortest accepted webhook signing secret, characters. */
export const MIN_WEBHOOK_SECRET_LENGTH = 16;

/**
 * Each tenant webhook's `secretEnv` or `secretFile` read into its `secrets`, once: secrets stay out
 * of CONFIG_FILE, and no other module reads the environment or the secret files.
 */
function resolveWebhookSecrets(config: Config, env: Env): Config {
  const problems: string[] = [];
  for (const [tenant, settings] of Object.entries(config.tenants)) {
    const webhook = settings.webhook;
    if (!webhook) continue;
    const path = `tenants.${tenant}.webhook`;
    let secrets: string[];
    if (webhook.secretEnv !== undefined) {
      secrets = splitList(env[webhook.secretEnv] ?? '');
      if (secrets.length === 0) problems.push(`${path}.secretEnv: ${webhook.secretEnv} is not set`);
    } else {
      try {
        secrets = readFileSync(webhook.secretFile!, 'utf8')
          .split('\n')
          .map((line) => line.replace(/#.*/, '').trim())
          .filter(Boolean);
      } catch (error) {
        problems.push(`${path}.secretFile: cannot read ${webhook.secretFile}: ${(error as Error).message}`);
        continue;
      }
      if (secrets.length === 0) problems.push(`${path}.secretFile: ${webhook.secretFile} holds no secret`);
    }
    // Never the secret in the message: only how long it is.
    const short = secrets.find((secret) => secret.length < MIN_WEBHOOK_SECRET_LENGTH);
    if (short !== undefined) problems.push(`${path}: a secret of ${short.length} characters; at least ${MIN_WEBHOOK_SECRET_LENGTH} are required`);
    webhook.secrets = secrets;
  }
  if (problems.length > 0) throw invalidConfiguration(problems);
  return config;
}

/** For `main.ts` files: print what is wrong and exit 1 instead of a stack trace. */
export function loadConfigOrExit(env: Env = process.env): Config {
  try {
    return loadConfig(env);
  } catch (error) {
    console.error(error instanceof Error ? error.message : String(error));
    process.exit(1);
  }
}

function applyEnvironmentDefaults(config: Config): Config {
  if ((config.dashboard.user === undefined) !== (config.dashboard.password === undefined)) {
    throw invalidConfiguration(['DASHBOARD_USER and DASHBOARD_PASSWORD must be set together']);
  }
  return config;
}

/**
 * The producer refuses to start in production without tenant keys: the development key would let
 * anyone enqueue. Other services do not read API_KEYS, so only the producer calls this.
 */
export function assertProducerApiKeys(config: Config): void {
  if (config.producer.apiKeys.length === 0 && config.env === 'production') {
    throw invalidConfiguration(['API_KEYS: required in production (tenant:key,tenant2:key2)']);
  }
}

/** True when no API_KEYS were given and the development tenant `dev` / `dev-key` is in use. */
export function usesDevelopmentApiKey(config: Config): boolean {
  return config.producer.apiKeys.length === 0;
}

export const DEVELOPMENT_API_KEY = { tenant: 'dev', key: 'dev-key' } as const;

/** Whether the dashboard hides prompt and answer text: `dashboard.redactText`, else on in production only. */
export function dashboardRedactsText(config: Config): boolean {
  return config.dashboard.redactText ?? config.env === 'production';
}

function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw invalidConfiguration([`CONFIG_FILE: cannot read ${file}: ${(error as Error).message}`]);
  }
  try {
    const value: unknown = /\.json$/i.test(file) ? JSON.parse(text) : parseYaml(text);
    return z.record(z.string(), z.unknown()).parse(value ?? {});
  } catch (error) {
    throw invalidConfiguration([`CONFIG_FILE: ${file} is not valid YAML/JSON: ${(error as Error).message.replace(/\s*\n\s*/g, ' ')}`]);
  }
}

function parseEnvValue(name: string, value: string): unknown {
  switch (name) {
    case 'GEMINI_API_KEY':
    case 'REDIS_CLUSTER_NODES':
      return splitList(value);
    case 'API_KEYS':
      return splitList(value).map((entry) => {
        const colon = entry.indexOf(':');
        if (colon <= 0 || colon === entry.length - 1) {
          throw invalidConfiguration(['API_KEYS: expected tenant:key pairs separated by commas']);
        }
        return { tenant: entry.slice(0, colon), key: entry.slice(colon + 1) };
      });
    default:
      return value;
  }
}

function splitList(value: string): string[] {
  return value
    .split(',')
    .map((item) => item.trim())
    .filter(Boolean);
}

function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let node = target;
  for (const part of parts.slice(0, -1)) {
    const next = node[part];
    if (typeof next !== 'object' || next === null) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[parts.at(-1)!] = value;
}
