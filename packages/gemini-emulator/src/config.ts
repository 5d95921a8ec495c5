// Reads the CLI's environment. Each problem names the variable so a bad deploy is obvious.

import { parseQuotaConfig, type QuotaLimit } from './quotas.js';
import { parseTokenizerConfig, type TokenizerConfig } from './tokens.js';

export interface CliConfig {
  port: number;
  host: string;
  apiKeys: string[];
  latencyMs: number;
  jitterMs: number;
  quotas: Record<string, QuotaLimit>;
  tokenizer: TokenizerConfig;
  /** Lifetime of access tokens from the OAuth endpoint, s. */
  tokenTtlSeconds: number;
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be an integer between ${min} and ${max} (got "${raw}")`);
  return n;
}

export function readConfig(env: NodeJS.ProcessEnv): CliConfig {
  const host = env.EMULATOR_HOST?.trim() || '127.0.0.1';
  const keysRaw = env.EMULATOR_API_KEYS;
  const apiKeys = keysRaw === undefined ? ['emulator-key'] : keysRaw.split(',').map((k) => k.trim()).filter((k) => k !== '');
  if (apiKeys.length === 0) throw new Error('EMULATOR_API_KEYS must list at least one key (comma-separated)');
  let quotas: Record<string, QuotaLimit> = {};
  const quotasRaw = env.EMULATOR_QUOTAS;
  if (quotasRaw !== undefined && quotasRaw.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(quotasRaw) as unknown;
    } catch {
      throw new Error('EMULATOR_QUOTAS must be JSON like {"gemini-2.5-flash":{"rpm":10,"tpm":1000,"rpd":500}}');
    }
    try {
      quotas = parseQuotaConfig(parsed, false) as Record<string, QuotaLimit>;
    } catch (e) {
      throw new Error(`EMULATOR_QUOTAS: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  let tokenizer: TokenizerConfig = {};
  const tokenizerRaw = env.EMULATOR_TOKENIZER;
  if (tokenizerRaw !== undefined && tokenizerRaw.trim() !== '') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(tokenizerRaw) as unknown;
    } catch {
      throw new Error('EMULATOR_TOKENIZER must be JSON like {"asciiCharsPerToken":3,"nonAsciiTokensPerChar":1.2,"imageTiling":true}');
    }
    try {
      tokenizer = parseTokenizerConfig(parsed);
    } catch (e) {
      throw new Error(`EMULATOR_TOKENIZER: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return {
    port: int(env, 'EMULATOR_PORT', 8090, 0, 65535),
    host,
    apiKeys,
    latencyMs: int(env, 'EMULATOR_LATENCY_MS', 0, 0, 3_600_000),
    jitterMs: int(env, 'EMULATOR_JITTER_MS', 0, 0, 3_600_000),
    quotas,
    tokenizer,
    tokenTtlSeconds: int(env, 'EMULATOR_TOKEN_TTL_SECONDS', 3600, 1, 86_400),
  };
}
