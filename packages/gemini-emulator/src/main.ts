#!/usr/bin/env node
// CLI: configure from the environment, print one "listening" line (tests parse it), stop
// cleanly on SIGTERM/SIGINT. Never logs prompts or keys.

import { readConfig } from './config.js';
import { createEmulator } from './server.js';

async function main(): Promise<void> {
  let config;
  try {
    config = readConfig(process.env);
  } catch (e) {
    console.error(`gemini-emulator: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
  const emulator = createEmulator({
    apiKeys: config.apiKeys,
    latencyMs: config.latencyMs,
    jitterMs: config.jitterMs,
    quotas: config.quotas,
    tokenizer: config.tokenizer,
    tokenTtlSeconds: config.tokenTtlSeconds,
  });
  try {
    await emulator.listen(config.port, config.host);
  } catch (e) {
    console.error(`gemini-emulator: cannot listen on ${config.host}:${config.port}: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
  process.stdout.write(`gemini-emulator listening on ${emulator.url}\n`);

  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    emulator.close().then(
      () => process.exit(0),
      (e: unknown) => {
        console.error(`gemini-emulator: error while closing: ${e instanceof Error ? e.message : String(e)}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

void main();
