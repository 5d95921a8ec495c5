// Every multi-key operation of packages/shared on a real 3-master Redis Cluster (no mock): each
// must succeed (no CROSSSLOT, no "same slots allocation group" error), and the keys it wrote must
// spread over several slots and nodes, not sit in one slot behind a tagged prefix.
import { Queue } from 'bullmq';
import { Cluster, type Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  appendJobEvents,
  assignFairPriorities,
  BudgetGuard,
  configSchema,
  createRedis,
  FleetLimiter,
  getBlobsBase64,
  getMany,
  isCluster,
  keySlot,
  loadConfig,
  putBlobs,
  queuePrefix,
  readBacklog,
  readJobEventsOfTenants,
  releaseBacklog,
  responseCacheKey,
  slotPipeline,
  UsageLedger,
} from '../src/index.js';
import { startTestRedisCluster, uniquePrefix, type TestRedisCluster } from '../src/testing/index.js';

const TENANTS = ['acme', 'globex', 'initech', 'umbrella', 'hooli'];

describe('Redis Cluster: key layout and multi-key operations (3 masters)', () => {
  let cluster: TestRedisCluster;
  let redis: Redis;
  const prefix = queuePrefix(uniquePrefix('cl'));

  beforeAll(async () => {
    cluster = await startTestRedisCluster({ masters: 3 });
    redis = createRedis(cluster.url, 'worker', 'pq-cluster-test');
  });
  afterAll(async () => {
    await redis?.quit().catch(() => undefined);
    await cluster?.stop();
  });

  /** Every key under our prefix or BullMQ's, with its slot as the cluster computes it. */
  async function keysWithSlots(): Promise<{ key: string; slot: number; node: string }[]> {
    const own = prefix.slice(1, -1);
    const out: { key: string; slot: number; node: string }[] = [];
    for (const node of (redis as unknown as Cluster).nodes('master')) {
      const keys = [...(await node.keys(`${own}:*`)), ...(await node.keys(`{${own}}:*`))];
      for (const key of keys) out.push({ key, slot: Number(await node.cluster('KEYSLOT', key)), node: `${node.options.port}` });
    }
    return out;
  }

  it('connects with ioredis Cluster from a redis+cluster:// URL and from REDIS_CLUSTER_NODES', () => {
    expect(isCluster(redis)).toBe(true);
    const nodes = cluster.url.replace('redis+cluster://', '');
    expect(loadConfig({ REDIS_CLUSTER_NODES: nodes }).redis.url).toBe(cluster.url);
    expect(loadConfig({ REDIS_PREFIX: 'pq' }).redis.prefix).toBe('{pq}');
    expect(loadConfig({ REDIS_PREFIX: '{pq}' }).redis.prefix).toBe('{pq}');
  });

  it('refuses a prefix whose hash tag would cross or merge slots, naming REDIS_PREFIX', () => {
    for (const bad of ['a{b}', '{a}b', 'x{', '{}', 'a}']) {
      expect(() => loadConfig({ REDIS_PREFIX: bad }), bad).toThrow(/REDIS_PREFIX/);
    }
    expect(configSchema.safeParse({ redis: { prefix: 'p{q}' } }).success).toBe(false);
  });

  it('computes slots as the cluster does', async () => {
    for (const key of ['pq:fair:{acme}:high', '{pq}:prompts:wait', 'pq:blob:abc', 'a{}b', '{}{x}', 'x{y}{z}']) {
      expect(keySlot(key), key).toBe(Number(await redis.cluster('KEYSLOT', key)));
    }
  });

  it('runs the limiter, budgets, usage, fairness, cache reads, blobs, events and BullMQ, spread over the slots', async () => {
    // Limiter: two scopes, one reserve each, settle of both in one call (a pipeline per scope slot).
    const limiter = new FleetLimiter(redis, prefix);
    const scopes = [{ provider: 'gemini', model: 'gemini-3.6-flash' }, { provider: 'gemini', model: 'gemini-3.6-pro', project: 'p2' }];
    const reserved = await Promise.all(scopes.map((key) => limiter.reserve(key, { rpm: 100, tpm: 100_000 }, [10, 20])));
    expect(reserved.every((result) => result.granted.length === 2)).toBe(true);
    await limiter.settle(reserved.flatMap((result) => result.granted.map((reservation) => ({ reservation, actualTokens: 5 }))));

    // Budgets: one reserve and one settle over five tenants (one script call per tenant, together).
    const budgets = new BudgetGuard(redis, prefix, Object.fromEntries(TENANTS.map((tenant) => [tenant, { dailyUsd: 1 }])));
    const decisions = await budgets.reserve(TENANTS.map((tenant) => ({ tenant, amountNanoUsd: 1_000 })));
    expect(decisions.every((decision) => decision.ok)).toBe(true);
    await budgets.renew(decisions.flatMap((decision) => (decision.ok ? [decision.reservation] : [])));
    await budgets.settle(decisions.flatMap((decision) => (decision.ok ? [{ reservation: decision.reservation, actualNanoUsd: 700 }] : [])));
    const remaining = await budgets.remaining('globex');
    expect(remaining.daily?.spentNanoUsd).toBe(700);
    expect(remaining.daily?.reservedNanoUsd).toBe(0);

    // Usage: one record over five tenants (a MULTI per tenant slot plus the fleet keys), then read back.
    const ledger = new UsageLedger(redis, prefix);
    await ledger.record(TENANTS.map((tenant) => ({ tenant, model: 'gemini-3.6-flash', provider: 'gemini', outcome: 'completed', costNanoUsd: 700, cached: false })));
    const overview = await ledger.overview();
    expect(overview.today.totals.jobs).toBe(TENANTS.length);
    expect((await ledger.tenantUsage('hooli')).today.costNanoUsd).toBe(700);

    // Fairness: places per tenant (one script per tenant), released in one call over all tenants.
    for (const tenant of TENANTS) await assignFairPriorities(redis, prefix, tenant, ['high', 'normal', 'low']);
    await releaseBacklog(redis, prefix, TENANTS.map((tenant) => ({ tenant, level: 'normal' as const })));
    expect(await readBacklog(redis, prefix, 'acme')).toEqual({ high: 1, normal: 0, low: 1 });

    // Response cache entries: one per digest, read back in one call.
    const digests = ['a', 'b', 'c', 'd', 'e', 'f'].map((c) => c.repeat(64));
    const write = slotPipeline(redis);
    digests.forEach((digest, i) => write.set(responseCacheKey(prefix, digest), `answer-${i}`, 'EX', 60));
    expect((await write.exec())?.every(([error]) => error === null)).toBe(true);
    expect(await getMany(redis, [...digests.map((digest) => responseCacheKey(prefix, digest)), responseCacheKey(prefix, '0'.repeat(64))])).toEqual([
      ...digests.map((_, i) => `answer-${i}`),
      null,
    ]);

    // Blobs: several images of one job, put and read in one call each.
    const blobs = ['one', 'two', 'three', 'four'].map((text) => ({ mimeType: 'image/png', data: Buffer.from(text) }));
    const refs = await putBlobs(redis, prefix, blobs, 60);
    expect(await getBlobsBase64(redis, prefix, refs.map((ref) => ref.sha256))).toEqual(blobs.map((blob) => blob.data.toString('base64')));

    // Job events: one pipeline over five tenants' streams, one read over all of them (per slot).
    const events = slotPipeline(redis);
    appendJobEvents(events, prefix, TENANTS.map((tenant) => ({ type: 'queued' as const, jobId: `${tenant}-1`, tenant, at: new Date().toISOString() })), 100);
    await events.exec();
    const read = await readJobEventsOfTenants(redis, prefix, new Map(TENANTS.map((tenant) => [tenant, '0-0'])), { count: 10, blockMs: 100 });
    expect([...read.keys()].sort()).toEqual([...TENANTS].sort());

    // BullMQ: a queue under the tagged prefix runs its scripts in its one slot.
    const queue = new Queue('prompts', { connection: redis, prefix });
    await queue.addBulk(TENANTS.map((tenant) => ({ name: 'generate', data: { tenant } })));
    expect(await queue.getJobCountByTypes('wait')).toBe(TENANTS.length);
    await queue.close();

    const keys = await keysWithSlots();
    const bullSlots = new Set(keys.filter(({ key }) => key.startsWith(prefix)).map(({ slot }) => slot));
    expect(bullSlots.size, 'every BullMQ key in one slot').toBe(1);
    const ownSlots = new Set(keys.filter(({ key }) => !key.startsWith(prefix)).map(({ slot }) => slot));
    const ownNodes = new Set(keys.filter(({ key }) => !key.startsWith(prefix)).map(({ node }) => node));
    expect(ownSlots.size, 'our keys spread over the slots').toBeGreaterThanOrEqual(10);
    expect(ownNodes.size, 'our keys on every master').toBe(3);
    for (const { key, slot } of keys) expect(keySlot(key), key).toBe(slot);
    // Keys that one script or MULTI touches together share their scope's slot.
    const slotOf = (fragment: string) => new Set(keys.filter(({ key }) => key.includes(fragment)).map(({ slot }) => slot));
    for (const tenant of TENANTS) {
      expect(slotOf(`:budget:{${tenant}}:`).size, `budget keys of ${tenant}`).toBe(1);
      expect(slotOf(`:fair:{${tenant}}:`).size, `fairness keys of ${tenant}`).toBe(1);
    }
    expect(slotOf(':limits:{gemini:gemini-3.6-flash:default}:').size).toBe(1);
    console.log(`cluster keys: ${keys.length}, our slots: ${ownSlots.size}, nodes: ${ownNodes.size}, BullMQ slot: ${[...bullSlots].join()}`);
  });
});
