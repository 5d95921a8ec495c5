import { z } from 'zod';
import { DEFAULT_MODELS } from '../models.js';
import { DEFAULT_PRICES } from '../pricing/prices.js';
import { isValidAllowPrefix } from '../queue/file-uris.js';
import { isValidAllowPrivateEntry, webhookUrlSyntaxRefusal } from '../webhooks/url-guard.js';

const port = z.coerce.number().int().min(0).max(65_535);
const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().nonnegative();

const priceRates = z.strictObject({
  input: z.number().nonnegative(),
  output: z.number().nonnegative(),
  cachedInput: z.number().nonnegative(),
});

const modelPrice = priceRates.extend({ longPrompt: priceRates.extend({ aboveInputTokens: positiveInt }).optional() });

const modelSpec = z.strictObject({
  kind: z.enum(['generate', 'embed']).default('generate'),
  inputTokenLimit: positiveInt,
  outputTokenLimit: z.coerce.number().int().nonnegative(),
});

/** A producer API key: the key itself or, better, its sha256 (`sha256:<hex>`), for one tenant. */
const apiKeyEntry = z.strictObject({
  tenant: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'tenant names are 1-64 of A-Z a-z 0-9 _ . -'),
  key: z.string().min(1),
});

/**
 * `redis.url` pointed at Cluster seed nodes: its scheme and credentials, the nodes' addresses.
 * loadConfig applies it, so every connection reads `redis.url` alone.
 */
export function clusterUrl(url: string, nodes: readonly string[]): string {
  const match = /^(rediss?)(?:\+cluster)?:\/\/(?:([^@/]*)@)?/.exec(url);
  const scheme = match?.[1] ?? 'redis';
  const auth = match?.[2] !== undefined ? `${match[2]}@` : '';
  return `${scheme}+cluster://${auth}${nodes.join(',')}`;
}

/** The spellings of a boolean the environment may use. */
export const BOOLEAN_FLAG_VALUES = ['true', 'false', '1', '0', 'yes', 'no'] as const;

/** A boolean from the environment: `true`/`false`, `1`/`0`, `yes`/`no` (z.coerce would read "false" as true). */
const booleanFlag = z.union(
  [z.boolean(), z.enum(BOOLEAN_FLAG_VALUES).transform((value) => ['true', '1', 'yes'].includes(value))],
  { error: `expected one of ${BOOLEAN_FLAG_VALUES.join(', ')}` },
);

/** Per-tenant spend limits, USD. Enforced fleet-wide by `BudgetGuard` (accounting/budgets.ts). */
const tenantBudget = z.strictObject({
  /** Spend limit per UTC day, USD. None when absent. */
  dailyUsd: z.number().nonnegative().optional(),
  /** Spend limit per UTC month, USD. None when absent. */
  monthlyUsd: z.number().nonnegative().optional(),
  /** Over budget: `fail` the job (402 upfront from the producer) or `wait` until the next period. */
  onExceeded: z.enum(['fail', 'wait']).default('fail'),
});

/**
 * A tenant's webhook (docs/webhooks.md): its default URL for jobs that name none, and its signing
 * secret(s), by reference only so that no secret sits in CONFIG_FILE: an environment variable
 * (several secrets comma-separated, for rotation) or a file (one per line, `#` comments). The loader
 * reads them once into `secrets`; a delivery is signed with each.
 */
const tenantWebhook = z
  .strictObject({
    /** Default webhook of the tenant's jobs that carry none. @defaultValue none (only jobs' own) */
    url: z
      .string()
      .superRefine((url, ctx) => {
        const refusal = webhookUrlSyntaxRefusal(url);
        if (refusal) ctx.addIssue({ code: 'custom', message: refusal });
      })
      .optional(),
    /** Environment variable holding the secret(s), comma-separated; read once at start. */
    secretEnv: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
    /** File holding the secret(s), one per line (`#` comments); read once at start. */
    secretFile: z.string().min(1).optional(),
  })
  .refine((webhook) => (webhook.secretEnv === undefined) !== (webhook.secretFile === undefined), {
    message: 'set exactly one of secretEnv or secretFile: every delivery is signed',
  })
  // Filled by loadConfig from secretEnv / secretFile; never accepted from the file itself.
  .transform((webhook) => ({ ...webhook, secrets: [] as string[] }));
export type TenantWebhookConfig = z.infer<typeof tenantWebhook>;

/** A tenant's settings (CONFIG_FILE `tenants.<name>`): its budget, and its webhook. */
const tenantSettings = tenantBudget.extend({
  /** Default webhook URL and signing secrets. @defaultValue none */
  webhook: tenantWebhook.optional(),
  /**
   * How long the tenant's jobs may wait for an answer when they say nothing (`deadline` or
   * `maxWaitSeconds`), s: the tier router (docs/decisions/tiers.md) then picks a cheaper tier.
   * @defaultValue none (as soon as possible: standard)
   */
  maxWaitSeconds: positiveInt.optional(),
});

/**
 * A provider quota per rolling window (`limiter.windowMs`, 60 s like Google's): requests and input
 * tokens, 0 = unlimited. Enforced fleet-wide by `FleetLimiter` (limits/).
 */
const rateLimitSpec = z.strictObject({
  /** Requests per window. @defaultValue 0 (unlimited) */
  rpm: nonNegativeInt.default(0),
  /** Input tokens per window. @defaultValue 0 (unlimited) */
  tpm: nonNegativeInt.default(0),
  /** Cloud project whose quota this is (quotas are per project and model). @defaultValue 'default' */
  project: z.string().min(1).optional(),
});
export type RateLimitSpec = z.infer<typeof rateLimitSpec>;

/**
 * The fields every link of a fallback chain has, whatever its provider. Each link has its own
 * fleet-wide limits (`limits`, or the top-level `limits` table by `provider:model` or model), its
 * own circuit breaker and its own prices (`prices` by model).
 *
 * Provider fields (`baseUrl`, `apiKeys`…) belong to the provider: packages/shared cannot know the
 * worker's providers, so the loader passes them through and the worker validates each link, strictly,
 * with its provider plugin's schema (apps/worker/src/providers/registry.ts), at start. A plugin's
 * schema extends {@link chainLinkBaseShape}.
 */
export const chainLinkBaseShape = {
  /** The link's provider plugin, e.g. `gemini`, `openai` (apps/worker/src/providers/<name>/). */
  provider: z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'a provider name: lowercase letters, digits and -'),
  /** Model this link calls; `$job` = the job's own model. @defaultValue '$job' */
  model: z.string().min(1).default('$job'),
  /** Name in results (`provider`), logs, breaker states and the limiter scope. @defaultValue the provider */
  name: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/).optional(),
  /** Quota project of the link (its limiter scope). @defaultValue the limits entry's, else 'default' */
  project: z.string().min(1).optional(),
  /** Per-call timeout, ms. @defaultValue gemini.timeoutMs */
  timeoutMs: positiveInt.optional(),
  /** The link's own limits; overrides the `limits` table. */
  limits: rateLimitSpec.optional(),
};

/** A chain link as the shared loader reads it: the common fields, provider fields passed through. */
const chainLink = z.looseObject(chainLinkBaseShape);
export type ChainLinkSpec = z.infer<typeof chainLink>;
/** The common fields of a link, without the provider's (what every provider plugin's link type extends). */
export type LinkConfigBase = z.infer<z.ZodObject<typeof chainLinkBaseShape>>;

/**
 * The whole configuration, parsed once at start. Every field documents its default and unit;
 * docs/configuration.md lists the environment variables that set them. Every object is strict: an
 * unknown key (a typo such as `tenants.acme.dailyUSD`) refuses to start instead of being ignored;
 * only the keys of tables (`limits`, `chains`, `tenants`, `models`, `prices`, `providerPrices`) are free.
 */
export const configSchema = z.strictObject({
  /** `production` refuses unsafe defaults (no API keys, no dashboard credentials). */
  env: z.enum(['development', 'production', 'test']).default('development'),
  logLevel: z.enum(['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly']).default('info'),
  redis: z
    .strictObject({
      /**
       * One Redis (`redis://`, `rediss://` for TLS), or a Redis Cluster by its seed nodes
       * (`redis+cluster://host:port,host:port`, `rediss+cluster://…`; credentials as in a URL).
       */
      url: z
        .string()
        .regex(/^rediss?(\+cluster)?:\/\//, 'must start with redis://, rediss://, redis+cluster:// or rediss+cluster://')
        .default('redis://127.0.0.1:6379'),
      /**
       * Seed nodes of a Redis Cluster (`host:port`, comma-separated in REDIS_CLUSTER_NODES): when
       * set, the connection is a Cluster over these, with the credentials and TLS of `url`.
       * @defaultValue none (the `url` decides)
       */
      clusterNodes: z.array(z.string().regex(/^[^\s,/]+:\d+$/, 'host:port')).default([]),
      /**
       * Prefix of every Redis key we write, BullMQ's included: BullMQ's keys under `{<prefix>}` (one
       * slot on a Cluster, as BullMQ needs), ours under `<prefix>:` tagged per tenant and scope
       * (docs/decisions/redis-cluster.md). `pq` and `{pq}` mean the same; read as `{pq}`.
       */
      prefix: z
        .string()
        .regex(
          /^\{?[A-Za-z0-9_-]+\}?$/,
          'letters, digits, _ and - (optionally in one {…}): a hash tag anywhere else would put keys of different tenants and scopes in one Redis Cluster slot, or split BullMQ\'s',
        )
        .refine((prefix) => prefix.startsWith('{') === prefix.endsWith('}'), 'an unbalanced { or }')
        .transform((prefix) => `{${prefix.replace(/^\{|\}$/g, '')}}`)
        .default('{pq}'),
      /**
       * Replicas that must confirm the producer's writes before it answers 202 (Redis `WAIT`), so
       * an accepted job survives a failover to a replica; 0 = answer at once (asynchronous
       * replication: a master that dies right after may take the last jobs with it).
       * @defaultValue 0
       */
      waitReplicas: nonNegativeInt.default(0),
      /** How long the producer waits for those replicas, ms; fewer in time answers 503. @defaultValue 1000 */
      waitTimeoutMs: positiveInt.default(1_000),
    })
    .prefault({}),
  gemini: z
    .strictObject({
      apiKeys: z.array(z.string().min(1)).default([]),
      /**
       * File with more Gemini API keys, one per line (`#` comments), added to `apiKeys`. Re-read on
       * SIGHUP and when the file changes, without a restart (apps/worker/src/keys). @defaultValue none
       */
      apiKeyFile: z.string().min(1).optional(),
      /** The only switch between Google and the emulator. */
      baseUrl: z.url().default('https://generativelanguage.googleapis.com'),
      apiVersion: z.enum(['v1beta', 'v1']).default('v1beta'),
      /** Model used when a job names none. */
      defaultModel: z.string().min(1).default('gemini-3.6-flash'),
      /** Per-call timeout, ms. */
      timeoutMs: positiveInt.default(60_000),
    })
    .prefault({}),
  producer: z
    .strictObject({
      port: port.default(3000),
      apiKeys: z.array(apiKeyEntry).default([]),
      /** Largest accepted request body, bytes (base64 images included). */
      maxRequestBytes: positiveInt.default(25 * 1024 * 1024),
      /** Largest total of decoded inline images per job, bytes. */
      maxImageBytes: positiveInt.default(20 * 1024 * 1024),
      /** Upper bound of `GET /v1/jobs/:id?wait=`, seconds. */
      maxWaitSeconds: positiveInt.default(60),
      /** How long results (and images) of finished jobs stay readable, seconds. */
      resultTtlSeconds: positiveInt.default(7 * 24 * 3600),
    })
    .prefault({}),
  worker: z
    .strictObject({
      /** Health endpoint port. */
      port: port.default(3002),
      /**
       * Jobs one worker process holds at once (BullMQ concurrency): jobs being batched, in a batch
       * in flight, or waiting for their provider call. High enough that batches can fill. @defaultValue 64
       */
      concurrency: positiveInt.default(64),
      /**
       * How long an idle keep-alive connection to a provider stays open in the worker's pool, ms
       * (a shorter `Keep-Alive: timeout` from the server wins). Node's own default, 4 s, closes a
       * fleet's connections in every pause longer than that (a quota wait), and each call after it
       * pays a new TCP + TLS handshake. @defaultValue 60000
       */
      providerKeepAliveMs: positiveInt.default(60_000),
      /** Attempts per job for retryable failures (5xx, timeouts, network). */
      attempts: positiveInt.default(5),
      /** Exponential backoff with full jitter: base and cap, ms. */
      backoffBaseMs: positiveInt.default(1_000),
      backoffMaxMs: positiveInt.default(60_000),
      /** On SIGTERM, how long in-flight jobs may take before the worker exits anyway, ms. */
      shutdownTimeoutMs: positiveInt.default(25_000),
      /** BullMQ lock duration, ms: a killed worker's jobs return to the queue after this. */
      lockDurationMs: positiveInt.default(30_000),
      /**
       * How many times a job may lose its lock (its worker died or stalled) before BullMQ fails it.
       * BullMQ's default of 1 fails a job after two worker crashes; a bound still stops a job that
       * crashes every worker from looping forever.
       */
      maxStalledCount: z.coerce.number().int().min(0).default(10),
    })
    .prefault({}),
  /** Micro-batching in the worker (apps/worker/src/batching). */
  batching: z
    .strictObject({
      /** Most jobs in one batch (one limiter reservation, one embed call). @defaultValue 16 */
      size: positiveInt.default(16),
      /**
       * Longest a job waits for its batch to fill while another batch of its route is in flight,
       * ms. A job on an idle route goes out at once. @defaultValue 20
       */
      maxWaitMs: nonNegativeInt.default(20),
    })
    .prefault({}),
  /**
   * Deadline-aware tiers (docs/decisions/tiers.md): a job that may wait (`deadline`,
   * `maxWaitSeconds`, or its tenant's default) goes to the cheapest tier that still answers in
   * time: the Batch API (hours), Flex (minutes), else standard. CONFIG_FILE only.
   */
  tiers: z
    .strictObject({
      /** Price of each tier as a fraction of standard (Google: both 50%). Exact: cost = round(standard × multiplier). */
      priceMultiplier: z
        .strictObject({
          /** @defaultValue 0.5 */
          batch: z.number().min(0).max(1).default(0.5),
          /** @defaultValue 0.5 */
          flex: z.number().min(0).max(1).default(0.5),
        })
        .prefault({}),
      batch: z
        .strictObject({
          /** Jobs whose chain starts with a Gemini API link may go through the Batch API. @defaultValue true */
          enabled: booleanFlag.default(true),
          /**
           * A job goes to a batch only when at least this long is left before its deadline, ms
           * (Google's target is 24 h, "usually much faster": 2 h of batch time plus the fallback
           * margin). @defaultValue 10800000 (3 h)
           */
          minRemainingMs: positiveInt.default(3 * 3600_000),
          /**
           * A batched job that has no answer this long before its deadline is served standard, ms
           * (its delay ends then; enough for a standard call with retries). @defaultValue 3600000 (1 h)
           */
          fallbackMarginMs: positiveInt.default(3600_000),
          /** A model's collected jobs are submitted once there are this many… @defaultValue 500 */
          minJobs: positiveInt.default(500),
          /** …or once the oldest has waited this long, ms. @defaultValue 300000 (5 min) */
          maxCollectMs: positiveInt.default(300_000),
          /** Most requests in one batch job. @defaultValue 5000 */
          maxRequests: positiveInt.default(5_000),
          /** Most bytes of inline requests in one batch job (Google's limit is about 20 MB). @defaultValue 19000000 */
          maxInlineBytes: positiveInt.default(19_000_000),
          /** How often the fleet's leased submitter/poller looks at collections and open batches, ms. @defaultValue 10000 */
          pollIntervalMs: positiveInt.default(10_000),
          /** Lease of the submitter/poller (one holder fleet-wide), ms; a dead holder's lease lapses after this. @defaultValue 60000 */
          leaseMs: positiveInt.default(60_000),
          /** How long a batch answer waits for its job, s. @defaultValue 259200 (3 days) */
          resultTtlSeconds: positiveInt.default(3 * 86_400),
        })
        .prefault({}),
      flex: z
        .strictObject({
          /**
           * Flex (Preview: Google may change the field or the endpoints) for jobs that may wait
           * minutes, on links whose provider supports it. @defaultValue false
           */
          enabled: booleanFlag.default(false),
          /**
           * A job is sent Flex only when at least this long is left before its deadline, ms: Flex's
           * latency target is up to 15 min, and a shed call still needs time for standard.
           * @defaultValue 1200000 (20 min)
           */
          minRemainingMs: positiveInt.default(20 * 60_000),
        })
        .prefault({}),
    })
    .prefault({}),
  limiter: z
    .strictObject({
      /**
       * Rolling window of provider quotas, ms. Google counts per 60 s; change it only to match an
       * emulator with a shorter window (tests). @defaultValue 60000
       */
      windowMs: positiveInt.default(60_000),
      /**
       * Added to the window in our own count, ms: a request is reserved a little before the
       * provider counts it (the call still has to reach it), and calls of one batch arrive a few ms
       * apart, so without a margin a request leaving our window could still sit in the provider's.
       * Costs guardMs / windowMs of throughput (0.8% at the defaults). @defaultValue 500
       */
      guardMs: nonNegativeInt.default(500),
      /**
       * Slow start while a model's RPM or TPM is neither configured nor learned from a 429: the calls
       * in flight to begin with, doubling per round trip of served calls, so an unknown quota costs
       * about the calls in flight in 429s (whose QuotaFailure then names the limit), not a burst.
       * 0: unknown means unlimited. @defaultValue 8
       */
      slowStartRequests: nonNegativeInt.default(8),
      /**
       * How long a limit Google reported in a 429 (QuotaFailure quotaValue) is kept once it stops
       * binding, ms. While it binds it is kept. @defaultValue 3600000 (1 h)
       */
      reportedTtlMs: positiveInt.default(3_600_000),
    })
    .prefault({}),
  /**
   * Fleet-wide quotas keyed by `provider:model` or by model (any provider). Models not listed are
   * not limited (429s still pause them fleet-wide). GEMINI_RPM / GEMINI_TPM set gemini.defaultModel's.
   */
  limits: z.record(z.string(), rateLimitSpec).default({}),
  /** Circuit breaker of every chain link (one per link and worker process, opossum). */
  breaker: z
    .strictObject({
      /** Share of failed calls in the rolling window that opens the breaker, percent. @defaultValue 50 */
      errorThresholdPercentage: z.coerce.number().min(1).max(100).default(50),
      /** Calls in the rolling window before the breaker may open at all. @defaultValue 5 */
      volumeThreshold: nonNegativeInt.default(5),
      /** How long an open breaker waits before a trial call (half-open), ms. @defaultValue 10000 */
      resetTimeoutMs: positiveInt.default(10_000),
      /** Rolling window of the error share, ms. @defaultValue 10000 */
      rollingCountTimeoutMs: positiveInt.default(10_000),
    })
    .prefault({}),
  /**
   * Fallback chains: the links tried in order for a job, keyed by the job's model, else `default`.
   * Without any, one Gemini link serves the job's own model.
   */
  chains: z.record(z.string(), z.array(chainLink).min(1)).default({}),
  dashboard: z
    .strictObject({
      port: port.default(3001),
      /** Basic-auth user; set together with `password`. */
      user: z.string().min(1).optional(),
      /** In production at least `MIN_PRODUCTION_PASSWORD_LENGTH` (12) characters (config/safety.ts). */
      password: z.string().min(1).optional(),
      /** Bearer token for scripts (`Authorization: Bearer <token>`), at least 16 characters. */
      token: z.string().min(16, 'must be at least 16 characters').optional(),
      /** bull-board without retry, clean, promote or delete. @defaultValue false */
      readOnly: booleanFlag.default(false),
      /**
       * Hide prompt, system instruction and answer text (and embeddings) in bull-board's job views;
       * editing or duplicating a job's data is refused meanwhile. Absent: on in production, off
       * otherwise (`dashboardRedactsText`). @defaultValue env === 'production'
       */
      redactText: booleanFlag.optional(),
      /**
       * The dashboard sits behind a reverse proxy: the request's scheme comes from
       * `X-Forwarded-Proto` (Express `trust proxy`), which the CSRF check compares with the
       * `Origin`/`Referer` scheme. Leave off when clients reach the dashboard directly, or any
       * client could claim a scheme. @defaultValue false
       */
      trustProxy: booleanFlag.default(false),
    })
    .prefault({}),
  /**
   * The producer's `GET /scaling` (docs/running-at-scale.md): the backlog and how many workers it
   * and the quota call for, for KEDA's metrics-api scaler.
   */
  scaling: z
    .strictObject({
      /**
       * Provider call latency assumed for a link with too few observed calls in the fleet history
       * (the last 15 min), ms. Workers needed to fill a quota grow with it. @defaultValue 5000
       */
      latencyMs: positiveInt.default(5_000),
      /**
       * Input tokens per request assumed for a link whose current window holds no request, to turn
       * TPM into requests. @defaultValue 1000
       */
      tokensPerRequest: positiveInt.default(1_000),
    })
    .prefault({}),
  /** Prometheus `/metrics` endpoints (producer; the worker may share it). */
  metrics: z
    .strictObject({
      /**
       * When set, `/metrics` requires `Authorization: Bearer <token>` (the series name tenants).
       * At least 16 characters. @defaultValue none: `/metrics` is open, like `/healthz`
       */
      token: z.string().min(16, 'must be at least 16 characters').optional(),
    })
    .prefault({}),
  /** Response cache in Redis (apps/worker/src/cache), keyed by the request's sha256 (and tenant unless shared). */
  responseCache: z
    .strictObject({
      /** Serve repeated requests from the cache (jobs opt out with `cache: false`). @defaultValue true */
      enabled: booleanFlag.default(true),
      /** How long an answer stays cached when the job sets no `cache.ttlSeconds`, s. @defaultValue 86400 */
      defaultTtlSeconds: positiveInt.max(30 * 24 * 3600).default(86_400),
      /**
       * One cache for all tenants: tenant B sending tenant A's prompt gets A's answer (cached, free),
       * and so learns that someone sent it. Off: each tenant has its own entries, and identical
       * jobs of different tenants are not deduplicated. @defaultValue false
       */
      shareAcrossTenants: booleanFlag.default(false),
    })
    .prefault({}),
  /**
   * Which `fileData.fileUri` values jobs may carry (queue/file-uris.ts). Gemini Files API URIs are
   * always accepted, for Gemini links only; any other URL needs a prefix here (CONFIG_FILE only).
   */
  fileUris: z
    .strictObject({
      /**
       * URL prefixes a backend may fetch, e.g. `https://my-bucket.example.com/` or `gs://my-bucket/`:
       * http, https or gs, normalized (lowercase host), ending with `/`. Sent to every link of the
       * chain that can take them (OpenAI-compatible links: http(s) images only). @defaultValue []
       */
      allow: z
        .array(z.string().refine(isValidAllowPrefix, 'must be an http(s):// or gs:// URL with a host, in normalized form (lowercase host, no user:password@), ending with /'))
        .default([]),
    })
    .prefault({}),
  /** Live job events (events/job-events.ts) and their Server-Sent Events routes in the producer. */
  events: z
    .strictObject({
      /**
       * Events kept per tenant (the stream's MAXLEN, trimmed approximately: up to ~100 more): how far
       * back `Last-Event-ID` can resume and a job's events can replay. @defaultValue 10000
       */
      historyPerTenant: positiveInt.default(10_000),
      /** Interval of the `: ping` comment on an open event stream, so proxies keep it open, s. @defaultValue 15 */
      heartbeatSeconds: positiveInt.default(15),
    })
    .prefault({}),
  /**
   * Per-tenant budgets and webhooks (CONFIG_FILE only), keyed by tenant name. Tenants not listed
   * have neither.
   */
  tenants: z.record(apiKeyEntry.shape.tenant, tenantSettings).default({}),
  /** Webhook deliveries (docs/webhooks.md): their own queue, retried over about a day. */
  webhooks: z
    .strictObject({
      /**
       * Non-public addresses webhooks may reach anyway (CONFIG_FILE only): CIDRs (`10.1.0.0/16`),
       * addresses (`127.0.0.1`) or exact hostnames (`receiver.internal`, any address it resolves
       * to). Everything else must resolve to public addresses only. @defaultValue []
       */
      allowPrivate: z
        .array(z.string().refine(isValidAllowPrivateEntry, 'must be a CIDR (10.0.0.0/8), an IP address or a lowercase hostname'))
        .default([]),
      /** Attempts per delivery before it is dead-lettered (the queue's failed set). @defaultValue 15 */
      attempts: positiveInt.default(15),
      /**
       * Exponential backoff between attempts: base × 2^(attempt−1), capped at `backoffMaxMs`, each
       * up to 20% earlier (jitter), ms. The defaults (30 s … 4 h, 15 attempts) span about a day.
       * @defaultValue 30000
       */
      backoffBaseMs: positiveInt.default(30_000),
      /** Cap of one backoff delay, ms. @defaultValue 14400000 (4 h) */
      backoffMaxMs: positiveInt.default(4 * 3600_000),
      /** Whole time of one attempt, connect to the last byte read, ms. @defaultValue 10000 */
      timeoutMs: positiveInt.default(10_000),
      /** Most response bytes read from a receiver (the rest is dropped), bytes. @defaultValue 65536 */
      maxResponseBytes: positiveInt.default(64 * 1024),
      /** Deliveries one worker process sends at once. @defaultValue 16 */
      concurrency: positiveInt.default(16),
      /** Delivery errors kept per tenant for the dashboard (newest first). @defaultValue 20 */
      errorsPerTenant: positiveInt.max(1_000).default(20),
    })
    .prefault({}),
  audit: z
    .strictObject({
      /** Where audit lines go: `stdout`, `stderr` or a file path (appended). */
      destination: z.string().min(1).default('stderr'),
      /** Adds the prompt text to every audit line. Off by default: audit lines carry only its sha256. */
      logPrompts: booleanFlag.default(false),
    })
    .prefault({}),
  /** Known models; CONFIG_FILE entries add to or override the defaults. */
  models: z.record(z.string(), modelSpec).default(DEFAULT_MODELS),
  /** Prices in USD per 1M tokens; CONFIG_FILE entries add to or override the defaults. */
  prices: z.record(z.string(), modelPrice).default(DEFAULT_PRICES),
  /**
   * One provider's own prices where they differ from `prices` (e.g. Vertex AI's list for a model):
   * `providerPrices.<provider>.<model>`, same shape; a model not listed there is priced by `prices`.
   * The worker refuses a provider name it has no plug-in for. CONFIG_FILE only.
   */
  providerPrices: z.record(z.string(), z.record(z.string(), modelPrice)).default({}),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
