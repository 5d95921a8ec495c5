import type { ChainableCommander, Redis } from 'ioredis';

/**
 * Redis Cluster support (docs/decisions/redis-cluster.md). On a Cluster, a pipeline or MULTI may
 * only hold keys of one slot (ioredis checks it: "All keys in the pipeline should belong to the same
 * slots allocation group"), and a multi-key command or script only keys of one slot (Redis answers
 * CROSSSLOT). Our keys are tagged per scope (tenant, limiter scope, cache digest), so a batch that
 * touches several tenants touches several slots: {@link slotPipeline} splits such a pipeline into
 * one pipeline per slot, sent at the same time, so a batch still costs one round trip in time (one
 * per slot touched, in parallel). On a single Redis it is exactly `redis.pipeline()` / `multi()`.
 */

/** Whether the connection is an ioredis `Cluster` (see `createRedis`). */
export function isCluster(redis: unknown): boolean {
  return (redis as { isCluster?: unknown } | null)?.isCluster === true;
}

/** CRC16/XMODEM, the checksum Redis Cluster hashes keys with. */
function crc16(data: Buffer): number {
  let crc = 0;
  for (const byte of data) {
    crc ^= byte << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/**
 * The Cluster slot of a key (0..16383), as `CLUSTER KEYSLOT` computes it: only the part inside the
 * first non-empty `{…}` is hashed when there is one.
 */
export function keySlot(key: string | Buffer): number {
  const bytes = typeof key === 'string' ? Buffer.from(key) : key;
  const open = bytes.indexOf(0x7b); // {
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1); // }
    if (close > open + 1) return crc16(bytes.subarray(open + 1, close)) & 16383;
  }
  return crc16(bytes) & 16383;
}

/** Scripting commands: `name script numkeys key…`; their first key is the third argument. */
const SCRIPT_COMMANDS = new Set(['eval', 'evalsha', 'eval_ro', 'evalsha_ro', 'fcall', 'fcall_ro']);

/**
 * The first key of a command as queued on a pipeline (`name`, its arguments), or undefined for a
 * command without keys. Every command we queue names its key first, except the scripting ones;
 * scripts registered with `defineCommand` take their keys first too.
 */
function firstKey(name: string, args: unknown[]): string | Buffer | undefined {
  const flat = args.length === 1 && Array.isArray(args[0]) ? (args[0] as unknown[]) : args;
  const at = SCRIPT_COMMANDS.has(name.toLowerCase()) ? (Number(flat[1]) > 0 ? 2 : -1) : 0;
  const key = at >= 0 ? flat[at] : undefined;
  return typeof key === 'string' || Buffer.isBuffer(key) ? key : key === undefined ? undefined : String(key);
}

type PipelineResults = [Error | null, unknown][] | null;

/**
 * A pipeline (or, with `transaction`, a MULTI per slot) that may hold keys of several slots.
 * Single Redis: `redis.pipeline()` / `redis.multi()` itself. Cluster: commands are recorded, then
 * `exec()` sends one pipeline per slot touched, all at once, and answers in the order they were
 * queued, like ioredis. With `transaction`, each slot's commands are one MULTI: atomic per slot
 * (per tenant, per scope), not across slots. Custom commands (`defineCommand`) work as on a
 * pipeline: they must be defined on the connection.
 */
export function slotPipeline(redis: Redis, options: { transaction?: boolean } = {}): ChainableCommander {
  if (!isCluster(redis)) return options.transaction ? redis.multi() : redis.pipeline();
  const calls: { name: string; args: unknown[] }[] = [];
  const target = {
    get length() {
      return calls.length;
    },
    async exec(): Promise<PipelineResults> {
      const groups = new Map<number, { pipeline: ChainableCommander; at: number[] }>();
      calls.forEach(({ name, args }, index) => {
        const key = firstKey(name, args);
        // Keyless commands (none today) ride with the first group.
        const slot = key === undefined ? (groups.keys().next().value ?? 0) : keySlot(key);
        let group = groups.get(slot);
        if (!group) groups.set(slot, (group = { pipeline: options.transaction ? redis.multi() : redis.pipeline(), at: [] }));
        (group.pipeline as unknown as Record<string, (...a: unknown[]) => unknown>)[name]!(...args);
        group.at.push(index);
      });
      const out: [Error | null, unknown][] = new Array(calls.length);
      let aborted = false;
      await Promise.all(
        [...groups.values()].map(async ({ pipeline, at }) => {
          let results: PipelineResults;
          try {
            results = await pipeline.exec();
          } catch (error) {
            const failure = error instanceof Error ? error : new Error(String(error));
            for (const index of at) out[index] = [failure, null];
            return;
          }
          if (!results) aborted = true;
          at.forEach((index, i) => (out[index] = results?.[i] ?? [new Error('transaction aborted'), null]));
        }),
      );
      return aborted && options.transaction ? null : out;
    },
  };
  const proxy: ChainableCommander = new Proxy(target, {
    get(object, property, receiver) {
      if (property in object) return Reflect.get(object, property, receiver);
      if (typeof property !== 'string' || property === 'then') return undefined;
      return (...args: unknown[]) => {
        calls.push({ name: property, args });
        return proxy;
      };
    },
  }) as unknown as ChainableCommander;
  return proxy;
}

/**
 * GET of several keys in order, like MGET. Single Redis: one MGET. Cluster: one GET per key,
 * grouped per slot by {@link slotPipeline} (one round trip in time).
 */
export async function getMany(redis: Redis, keys: readonly string[]): Promise<(string | null)[]> {
  if (keys.length === 0) return [];
  if (!isCluster(redis)) return redis.mget(...keys);
  const pipeline = slotPipeline(redis);
  for (const key of keys) pipeline.get(key);
  return valuesOf(await pipeline.exec()) as (string | null)[];
}

/** {@link getMany} for binary values. */
export async function getManyBuffers(redis: Redis, keys: readonly string[]): Promise<(Buffer | null)[]> {
  if (keys.length === 0) return [];
  if (!isCluster(redis)) return redis.mgetBuffer(...keys);
  const pipeline = slotPipeline(redis);
  for (const key of keys) pipeline.getBuffer(key);
  return valuesOf(await pipeline.exec()) as (Buffer | null)[];
}

/** The values of a pipeline's results; throws the first error. */
export function valuesOf(results: PipelineResults): unknown[] {
  if (!results) throw new Error('Redis transaction was aborted');
  return results.map(([error, value]) => {
    if (error) throw error;
    return value;
  });
}

/**
 * Redis `WAIT replicas timeoutMs` on the connection that wrote `key`: how many replicas confirmed
 * every write made so far on that connection (0 or more; WAIT never fails for too few). On a
 * Cluster the WAIT rides in one pipeline with a read of `key`, so it reaches that key's master over
 * the same connection the writes took.
 */
export async function waitForReplicas(redis: Redis, key: string, replicas: number, timeoutMs: number): Promise<number> {
  if (!isCluster(redis)) return redis.wait(replicas, timeoutMs);
  const [, acked] = valuesOf(await slotPipeline(redis).pttl(key).wait(replicas, timeoutMs).exec());
  return Number(acked);
}
