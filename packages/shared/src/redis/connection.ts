import { Redis, type RedisOptions } from 'ioredis';

/**
 * - `worker`: blocking commands (BullMQ Worker, QueueEvents) need `maxRetriesPerRequest: null`, and
 *   commands wait through a reconnect instead of failing the job.
 * - `producer`: fail fast while Redis is down, so the HTTP API answers 503 at once instead of
 *   holding requests; the connection keeps reconnecting in the background.
 * - `reader`: reads that answer a person (the dashboard): fails fast like `producer`, and every
 *   command also gives up after {@link READ_TIMEOUT_MS}, so a Redis that holds the connection but
 *   does not answer (paused, swapping, overloaded) cannot hold a page either. No blocking commands.
 */
export type RedisRole = 'worker' | 'producer' | 'reader';

/** How long a read that answers a person (dashboard, the worker's /status and /metrics) waits for Redis, ms. */
export const READ_TIMEOUT_MS = 1_500;

export function createRedis(url: string, role: RedisRole, connectionName?: string): Redis {
  const common: RedisOptions = {
    connectionName,
    // Back off up to 2 s between reconnects, forever: Redis restarts are survivable.
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  };
  const failFast: RedisOptions = { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000 };
  const options: RedisOptions =
    role === 'worker'
      ? { ...common, maxRetriesPerRequest: null, enableReadyCheck: true }
      : role === 'producer'
        ? { ...common, ...failFast }
        : { ...common, ...failFast, commandTimeout: READ_TIMEOUT_MS };
  return new Redis(url, options);
}

/** The error of a read that {@link within} gave up on. */
export class RedisReadTimeoutError extends Error {
  override readonly name = 'RedisReadTimeoutError';
}

/**
 * `read`, or a {@link RedisReadTimeoutError} once `ms` pass: for reads on a connection that waits
 * through outages (`worker`) behind an answer a person waits for. The read itself is not
 * cancelled; its late result is dropped.
 */
export async function within<T>(read: Promise<T>, ms = READ_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      read,
      new Promise<never>((_resolve, reject) => {
        timer = setTimeout(() => reject(new RedisReadTimeoutError(`Redis did not answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
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

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH']);
const CONNECTION_MESSAGES = [
  'enableOfflineQueue', // "Stream isn't writeable and enableOfflineQueue options is false"
  'Connection is closed',
  'Reached the max retries per request limit',
  'Command timed out', // commandTimeout (`reader`)
  'Redis is loading the dataset',
  'LOADING',
];

/**
 * Whether a failed command says Redis is unreachable or not answering (as opposed to an error
 * about the data, like WRONGTYPE): the errors ioredis raises on a fail-fast connection, its
 * command timeout, and {@link within}'s.
 */
export function isRedisConnectionError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (error instanceof RedisReadTimeoutError) return true;
  if (error.name === 'MaxRetriesPerRequestError' || error.name === 'ConnectionClosedError') return true;
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && CONNECTION_CODES.has(code)) return true;
  return CONNECTION_MESSAGES.some((text) => error.message.includes(text));
}
