import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { PromptQueueError } from '../errors.js';
import { blobKey } from '../redis/keys.js';
import { slotPipeline, getManyBuffers } from '../redis/cluster.js';

export interface StoredBlob {
  mimeType: string;
  sha256: string;
  bytes: number;
}

export function sha256Hex(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * Stores binary data under a content-addressed key with a TTL and returns its reference. Storing
 * the same bytes again only refreshes the TTL.
 */
export async function putBlobs(
  redis: Redis,
  prefix: string,
  blobs: { mimeType: string; data: Buffer }[],
  ttlSeconds: number,
): Promise<StoredBlob[]> {
  if (blobs.length === 0) return [];
  const refs = blobs.map((blob) => ({ mimeType: blob.mimeType, sha256: sha256Hex(blob.data), bytes: blob.data.length }));
  const pipeline = slotPipeline(redis);
  blobs.forEach((blob, i) => pipeline.set(blobKey(prefix, refs[i]!.sha256), blob.data, 'EX', ttlSeconds));
  const results = await pipeline.exec();
  for (const [error] of results ?? []) if (error) throw error;
  return refs;
}

/** Reads blobs back as base64, in order; a missing one (expired) is a non-retryable failure. */
export async function getBlobsBase64(redis: Redis, prefix: string, shas: string[]): Promise<string[]> {
  if (shas.length === 0) return [];
  const values = await getManyBuffers(redis, shas.map((sha) => blobKey(prefix, sha)));
  return values.map((value, i) => {
    if (!value) throw new PromptQueueError('IMAGE_EXPIRED', `Image ${shas[i]!.slice(0, 12)} is no longer stored`);
    return value.toString('base64');
  });
}
