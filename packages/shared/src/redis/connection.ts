import { Redis, type RedisOptions } from 'ioredis';

/**
 * - `worker`: blocking commands (BullMQ Worker, QueueEvents) need `maxRetriesPerRequest: null`, and
 *   commands wait through a reconnect instead of failing the job.
 * - `producer`: fail fast while Redis is down, so the HTTP API answers 503 at once instead of
 *   holding requests; the connection keeps reconnecting in the background.
 */
export type RedisRole = 'worker' | 'producer';

export function createRedis(url: string, role: RedisRole, connectionName?: string): Redis {
  const common: RedisOptions = {
    connectionName,
    // Back off up to 2 s between reconnects, forever: Redis restarts are survivable.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  };
  const options: RedisOptions =
    role === 'worker'
      ? { ...common, maxRetriesPerRequest: null, enableReadyCheck: true }
      : { ...common, maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000 };
  return new Redis(url, options);
}

/** Resolves once the connection is ready, or rejects after `timeoutMs`. */
export async function waitForRedis(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`Redis did not become ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      cleanup();
      resolve();
    };
    const cleanup = () => {
      clearTimeout(timer);
      redis.off('ready', onReady);
    };
    redis.on('ready', onReady);
  });
}
