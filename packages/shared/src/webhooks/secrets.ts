import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { webhookSecretKey } from '../redis/keys.js';
import { slotPipeline } from '../redis/cluster.js';

/**
 * A job's own webhook secret. The job's payload carries only `secretRef`, a random reference; the
 * secret sits under its own key (`webhookSecretKey`) for the result TTL, so it never shows where job
 * data does (GET /v1/jobs/:id, bull-board, logs). Deliveries read it and keep it alive for their
 * retries. A tenant's secrets come from its configuration instead (config/load.ts).
 */
export interface JobWebhookSecret {
  ref: string;
  secret: string;
}

export function newWebhookSecretRef(): string {
  return randomBytes(16).toString('hex');
}

/** Stores the secrets of one request in one round trip. */
export async function putWebhookSecrets(redis: Redis, prefix: string, secrets: readonly JobWebhookSecret[], ttlSeconds: number): Promise<void> {
  if (secrets.length === 0) return;
  const pipeline = slotPipeline(redis);
  for (const { ref, secret } of secrets) pipeline.set(webhookSecretKey(prefix, ref), secret, 'EX', ttlSeconds);
  const results = (await pipeline.exec()) ?? [];
  const failed = results.find(([error]) => error);
  if (failed) throw failed[0];
}

/**
 * KEYS[1] the secret's key; ARGV[1] seconds it must still live (the delivery's remaining retries).
 * Returns the secret (nil when gone) and extends its TTL to ARGV[1] if it is shorter, never shortens.
 */
const READ_SECRET_SCRIPT = `
local secret = redis.call('GET', KEYS[1])
if secret and redis.call('TTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return secret`;

/** The secret, extended to live at least `keepSeconds` more, or undefined once it expired. */
export async function readWebhookSecret(redis: Redis, prefix: string, ref: string, keepSeconds: number): Promise<string | undefined> {
  const secret = (await redis.eval(READ_SECRET_SCRIPT, 1, webhookSecretKey(prefix, ref), Math.max(1, Math.ceil(keepSeconds)))) as string | null;
  return secret ?? undefined;
}
