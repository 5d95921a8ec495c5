// Runs the emulator as a separate process (like production would see it) and hands back
// its URL, a key and a control client.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { EmulatorClient } from './client.js';
import type { QuotaLimit } from './quotas.js';
import type { TokenizerConfig } from './tokens.js';

export interface StartEmulatorOptions {
  /** Extra environment for the child (EMULATOR_PORT is always 0). */
  env?: Record<string, string>;
  quotas?: Record<string, QuotaLimit>;
  /** Passed as EMULATOR_TOKENIZER. */
  tokenizer?: TokenizerConfig;
  latencyMs?: number;
  /** Extra latency in [0, jitterMs), passed as EMULATOR_JITTER_MS. */
  jitterMs?: number;
  apiKeys?: string[];
  /** Lifetime of OAuth access tokens, s (EMULATOR_TOKEN_TTL_SECONDS; default 3600). */
  tokenTtlSeconds?: number;
  /** How long to wait for the listening line (default 10000 ms). */
  startTimeoutMs?: number;
}

export interface EmulatorProcess {
  url: string;
  /** The first configured key. */
  apiKey: string;
  client: EmulatorClient;
  pid: number;
  /** SIGTERM, then waits for exit (SIGKILL after 5 s). */
  stop(): Promise<void>;
}

const LISTENING = /^gemini-emulator listening on (http:\/\/\S+)$/;

/** dist/main.js, whether this module runs from dist/ or from src/ under vitest. */
export function mainScriptPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return basename(here) === 'src' ? join(here, '..', 'dist', 'main.js') : join(here, 'main.js');
}

export function startEmulatorProcess(opts: StartEmulatorOptions = {}): Promise<EmulatorProcess> {
  const apiKeys = opts.apiKeys ?? ['emulator-key'];
  const apiKey = apiKeys[0];
  if (apiKey === undefined) return Promise.reject(new Error('apiKeys must not be empty'));
  const env: Record<string, string> = { ...(process.env as Record<string, string>), ...opts.env, EMULATOR_PORT: '0' };
  env.EMULATOR_API_KEYS = apiKeys.join(',');
  if (opts.quotas) env.EMULATOR_QUOTAS = JSON.stringify(opts.quotas);
  if (opts.tokenizer) env.EMULATOR_TOKENIZER = JSON.stringify(opts.tokenizer);
  if (opts.latencyMs !== undefined) env.EMULATOR_LATENCY_MS = String(opts.latencyMs);
  if (opts.jitterMs !== undefined) env.EMULATOR_JITTER_MS = String(opts.jitterMs);
  if (opts.tokenTtlSeconds !== undefined) env.EMULATOR_TOKEN_TTL_SECONDS = String(opts.tokenTtlSeconds);
  const script = mainScriptPath();
  if (!existsSync(script)) return Promise.reject(new Error(`gemini-emulator: ${script} not found; build the package first`));

  const child = spawn(process.execPath, [script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr = (stderr + d).slice(-8192);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(killer);
  };

  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const timer = setTimeout(() => {
      void stop();
      reject(new Error(`gemini-emulator did not start within ${opts.startTimeoutMs ?? 10_000} ms. stderr: ${stderr.trim()}`));
    }, opts.startTimeoutMs ?? 10_000);
    const onExit = (code: number | null): void => {
      clearTimeout(timer);
      reject(new Error(`gemini-emulator exited with code ${code} before listening. stderr: ${stderr.trim()}`));
    };
    child.once('exit', onExit);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    lines.on('line', (line) => {
      const m = LISTENING.exec(line.trim());
      if (!m?.[1]) return;
      clearTimeout(timer);
      child.off('exit', onExit);
      const url = m[1];
      resolve({ url, apiKey, client: new EmulatorClient(url), pid: child.pid ?? -1, stop });
    });
  });
}
