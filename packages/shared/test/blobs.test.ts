import { describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { blobKey, getBlobsBase64, isPromptQueueError, putBlobs, sha256Hex } from '../src/index.js';
import { uniquePrefix } from '../src/testing/index.js';
import { usePrivateRedis } from './private-redis.js';

describe('blob store (real Redis)', () => {
  let redis: Redis;
  usePrivateRedis((started) => ({ redis } = started));

  it('stores bytes under a content-addressed key with a TTL and reads them back', async () => {
    const prefix = uniquePrefix();
    const data = Buffer.from([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]);
    const [ref] = await putBlobs(redis, prefix, [{ mimeType: 'image/png', data }], 60);
    expect(ref).toEqual({ mimeType: 'image/png', sha256: sha256Hex(data), bytes: 7 });
    const ttl = await redis.ttl(blobKey(prefix, ref!.sha256));
    expect(ttl).toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(60);
    expect(await getBlobsBase64(redis, prefix, [ref!.sha256])).toEqual([data.toString('base64')]);
  });

  it('reports an expired blob as IMAGE_EXPIRED', async () => {
    const error = await getBlobsBase64(redis, uniquePrefix(), ['0'.repeat(64)]).catch((e: unknown) => e);
    expect(isPromptQueueError(error) && error.code).toBe('IMAGE_EXPIRED');
  });
});
