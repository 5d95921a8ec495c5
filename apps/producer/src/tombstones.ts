import type { Redis } from 'ioredis';
import { z } from 'zod';
import { cancelledJobKey, type JobView } from '@prompt-queue/shared';

/**
 * Cancelling removes the job from BullMQ, so a small marker keeps `GET /v1/jobs/:id` answering
 * `cancelled` (and idempotent retries from re-creating the job) for the result TTL.
 */
export const tombstoneSchema = z.object({
  id: z.string(),
  tenant: z.string(),
  model: z.string(),
  createdAt: z.string(),
  cancelledAt: z.string(),
  /** The cancelled request's hash: a retry with the same idempotency key must still match it. */
  requestHash: z.string().optional(),
  metadata: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
});
export type Tombstone = z.infer<typeof tombstoneSchema>;

export async function writeTombstone(redis: Redis, prefix: string, tombstone: Tombstone, ttlSeconds: number): Promise<void> {
  await redis.set(cancelledJobKey(prefix, tombstone.id), JSON.stringify(tombstone), 'EX', ttlSeconds);
}

export async function deleteTombstone(redis: Redis, prefix: string, id: string): Promise<void> {
  await redis.del(cancelledJobKey(prefix, id));
}

export async function readTombstone(redis: Redis, prefix: string, id: string): Promise<Tombstone | undefined> {
  const raw = await redis.get(cancelledJobKey(prefix, id));
  if (raw === null) return undefined;
  try {
    const parsed = tombstoneSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export function tombstoneView(tombstone: Tombstone): JobView {
  return {
    id: tombstone.id,
    status: 'cancelled',
    model: tombstone.model,
    attempts: 0,
    createdAt: tombstone.createdAt,
    finishedAt: tombstone.cancelledAt,
    ...(tombstone.metadata ? { metadata: tombstone.metadata } : {}),
  };
}
