import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';

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

/**
 * A connection for `role`. `url` is one Redis (`redis://`, `rediss://`) or a Redis Cluster by its
 * seed nodes (`redis+cluster://[user:pass@]host:port,host:port`, `rediss+cluster://` for TLS;
 * `redis.clusterNodes` is turned into such a URL by the config): then an ioredis `Cluster`.
 *
 * The Cluster is returned typed as `Redis`: it has the same command surface for everything we use
 * (commands, pipelines, MULTI, `defineCommand`, events, `status`, `quit`), and BullMQ takes either.
 * Code that must know (multi-key commands, pipelines over several slots, XREAD over several
 * streams) asks {@link isCluster} and goes through redis/cluster.ts.
 */
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
  const cluster = parseClusterUrl(url);
  if (!cluster) return new Redis(url, options);
  // BullMQ reads `maxRetriesPerRequest: null` (required for its workers) from the node options.
  const { enableOfflineQueue, ...nodeOptions } = options;
  const clusterOptions: ClusterOptions = {
    redisOptions: {
      ...nodeOptions,
      ...(cluster.username !== undefined ? { username: cluster.username } : {}),
      ...(cluster.password !== undefined ? { password: cluster.password } : {}),
      ...(cluster.tls ? { tls: {} } : {}),
    },
    // Through a failover a command is redirected (MOVED), or waits for the new master's slots.
    clusterRetryStrategy: (times) => Math.min(times * 100, 2_000),
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 200,
    retryDelayOnTryAgain: 200,
    slotsRefreshTimeout: 2_000,
    // The offline queue holds commands until the slots are known: a `producer` still fails fast
    // afterwards, because each node connection keeps `maxRetriesPerRequest: 1`.
    enableOfflineQueue: role === 'worker' ? true : enableOfflineQueue !== false,
    enableReadyCheck: true,
  };
  return new Cluster(cluster.nodes, clusterOptions) as unknown as Redis;
}

/** The seed nodes and credentials of a `redis+cluster://` / `rediss+cluster://` URL; undefined for any other URL. */
export function parseClusterUrl(url: string): { nodes: { host: string; port: number }[]; username?: string; password?: string; tls: boolean } | undefined {
  const match = /^(rediss?)\+cluster:\/\/(?:([^@/]*)@)?([^/?#]+)/.exec(url);
  if (!match) return undefined;
  const [, scheme, auth, hosts] = match;
  const nodes = hosts!.split(',').filter(Boolean).map((node) => {
    const colon = node.lastIndexOf(':');
    return colon > 0 ? { host: node.slice(0, colon), port: Number(node.slice(colon + 1)) } : { host: node, port: 6379 };
  });
  const out: { nodes: { host: string; port: number }[]; username?: string; password?: string; tls: boolean } = { nodes, tls: scheme === 'rediss' };
  if (auth !== undefined) {
    const colon = auth.indexOf(':');
    const user = decodeURIComponent(colon >= 0 ? auth.slice(0, colon) : '');
    const password = decodeURIComponent(colon >= 0 ? auth.slice(colon + 1) : auth);
    if (user) out.username = user;
    if (password) out.password = password;
  }
  return out;
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
  // Redis Cluster: no node reachable, slots not (yet) served, a failover in progress.
  'CLUSTERDOWN',
  "Cluster isn't ready",
  'None of startup nodes is available',
  'Failed to refresh slots cache',
  'TRYAGAIN',
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
