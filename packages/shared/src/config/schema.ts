import { z } from 'zod';
import { DEFAULT_MODELS } from '../models.js';
import { DEFAULT_PRICES } from '../pricing/prices.js';

const port = z.coerce.number().int().min(0).max(65_535);
const positiveInt = z.coerce.number().int().positive();

const priceRates = z.object({
  input: z.number().nonnegative(),
  output: z.number().nonnegative(),
  cachedInput: z.number().nonnegative(),
});

const modelSpec = z.object({
  kind: z.enum(['generate', 'embed']).default('generate'),
  inputTokenLimit: positiveInt,
  outputTokenLimit: z.coerce.number().int().nonnegative(),
});

/** A producer API key: the key itself or, better, its sha256 (`sha256:<hex>`), for one tenant. */
const apiKeyEntry = z.object({
  tenant: z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'tenant names are 1-64 of A-Z a-z 0-9 _ . -'),
  key: z.string().min(1),
});

/** A boolean from the environment: `true`/`false`, `1`/`0`, `yes`/`no` (z.coerce would read "false" as true). */
const booleanFlag = z.union([
  z.boolean(),
  z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((value) => ['true', '1', 'yes'].includes(value)),
]);

/** Per-tenant spend limits, USD. Enforced fleet-wide by `BudgetGuard` (accounting/budgets.ts). */
const tenantBudget = z.object({
  /** Spend limit per UTC day, USD. None when absent. */
  dailyUsd: z.number().nonnegative().optional(),
  /** Spend limit per UTC month, USD. None when absent. */
  monthlyUsd: z.number().nonnegative().optional(),
  /** Over budget: `fail` the job (402 upfront from the producer) or `wait` until the next period. */
  onExceeded: z.enum(['fail', 'wait']).default('fail'),
});

/**
 * The whole configuration, parsed once at start. Every field documents its default and unit;
 * docs/configuration.md lists the environment variables that set them.
 */
export const configSchema = z.object({
  /** `production` refuses unsafe defaults (no API keys, no dashboard credentials). */
  env: z.enum(['development', 'production', 'test']).default('development'),
  logLevel: z.enum(['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly']).default('info'),
  redis: z
    .object({
      url: z.string().regex(/^rediss?:\/\//, 'must start with redis:// or rediss://').default('redis://127.0.0.1:6379'),
      /** Prefix of every Redis key we write, BullMQ's included. */
      prefix: z.string().regex(/^[A-Za-z0-9_{}-]+$/).default('pq'),
    })
    .prefault({}),
  gemini: z
    .object({
      apiKeys: z.array(z.string().min(1)).default([]),
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
    .object({
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
    .object({
      /** Health endpoint port. */
      port: port.default(3002),
      /** Jobs served at once by one worker process. */
      concurrency: positiveInt.default(16),
      /** Attempts per job for retryable failures (5xx, timeouts, network). */
      attempts: positiveInt.default(5),
      /** Exponential backoff with full jitter: base and cap, ms. */
      backoffBaseMs: positiveInt.default(1_000),
      backoffMaxMs: positiveInt.default(60_000),
      /** On SIGTERM, how long in-flight jobs may take before the worker exits anyway, ms. */
      shutdownTimeoutMs: positiveInt.default(25_000),
      /** BullMQ lock duration, ms: a killed worker's jobs return to the queue after this. */
      lockDurationMs: positiveInt.default(30_000),
    })
    .prefault({}),
  dashboard: z
    .object({
      port: port.default(3001),
      user: z.string().min(1).optional(),
      password: z.string().min(1).optional(),
    })
    .prefault({}),
  /** Per-tenant budgets (CONFIG_FILE only), keyed by tenant name. Tenants not listed have none. */
  tenants: z.record(apiKeyEntry.shape.tenant, tenantBudget).default({}),
  audit: z
    .object({
      /** Where audit lines go: `stdout`, `stderr` or a file path (appended). */
      destination: z.string().min(1).default('stderr'),
      /** Adds the prompt text to every audit line. Off by default: audit lines carry only its sha256. */
      logPrompts: booleanFlag.default(false),
    })
    .prefault({}),
  /** Known models; CONFIG_FILE entries add to or override the defaults. */
  models: z.record(z.string(), modelSpec).default(DEFAULT_MODELS),
  /** Prices in USD per 1M tokens; CONFIG_FILE entries add to or override the defaults. */
  prices: z
    .record(
      z.string(),
      priceRates.extend({ longPrompt: priceRates.extend({ aboveInputTokens: positiveInt }).optional() }),
    )
    .default(DEFAULT_PRICES),
});

export type Config = z.infer<typeof configSchema>;
export type ConfigInput = z.input<typeof configSchema>;
