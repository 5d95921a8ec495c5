// A Redis Cluster master dies (SIGKILL) while jobs are being enqueued and processed: once its
// replica has taken over, every job the producer accepted (202) completes. Nothing accepted is lost
// because the producer answers 202 only after a replica confirmed the enqueue (REDIS_WAIT_REPLICAS=1,
// Redis WAIT): with asynchronous replication alone, the jobs added in the last milliseconds before
// the kill could be missing on the promoted replica. Workers' own writes lost with the master (a
// completion, a lock) only make a job run again after its lock expires (at least once).
import type { Cluster } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createRedis, keySlot, queuePrefix } from '@prompt-queue/shared';
import { startTestRedisCluster, uniquePrefix, waitFor, type ServiceProcess, type TestRedisCluster } from '@prompt-queue/shared/testing';
import { assertBuilt, AUTH, baseEnv, startProducer, startWorker } from './helpers.js';

describe('chaos: a Redis Cluster master fails over during a run', () => {
  let cluster: TestRedisCluster | undefined;
  let emulator: EmulatorProcess | undefined;
  const processes: ServiceProcess[] = [];

  afterAll(async () => {
    await Promise.all(processes.map((proc) => proc.stop('SIGKILL')));
    await emulator?.stop();
    await cluster?.stop();
  });

  it('loses no accepted job when the queue\'s master is killed and its replica takes over', async () => {
    assertBuilt();
    [cluster, emulator] = await Promise.all([startTestRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: 1_000 }), startEmulatorProcess({ latencyMs: 20 })]);
    const prefix = uniquePrefix('chaosfail');
    const env = baseEnv(cluster.url, prefix, emulator, {
      WORKER_CONCURRENCY: '16',
      LOCK_DURATION_MS: '3000',
      JOB_ATTEMPTS: '10',
      REDIS_WAIT_REPLICAS: '1',
      REDIS_WAIT_TIMEOUT_MS: '1000',
    });
    const producer = await startProducer(env);
    processes.push(producer.proc);
    processes.push(...(await Promise.all([startWorker(env), startWorker(env)])));

    // The master serving BullMQ's slot: the one whose loss matters most (the queue itself).
    const probe = createRedis(cluster.url, 'worker') as unknown as Cluster;
    await waitFor(() => probe.status === 'ready', { what: 'cluster probe' });
    const slot = keySlot(`${queuePrefix(prefix)}:prompts:id`);
    const owner = (await probe.cluster('SLOTS')) as [number, number, [string, number]][];
    const queuePort = owner.find(([from, to]) => slot >= from && slot <= to)![2][1];
    const victim = cluster.nodes.find((node) => node.port === queuePort)!;
    probe.disconnect();

    const accepted: string[] = [];
    let refused = 0;
    let stop = false;
    const enqueue = async (n: number) => {
      try {
        const res = await fetch(`${producer.url}/v1/jobs`, {
          method: 'POST',
          headers: { ...AUTH, 'content-type': 'application/json' },
          body: JSON.stringify({ prompt: `failover job ${n}`, idempotencyKey: `failover-${n}` }),
        });
        if (res.status === 202) accepted.push(((await res.json()) as { id: string }).id);
        else refused += 1;
      } catch {
        refused += 1;
      }
    };
    // Four clients enqueue without pause until told to stop.
    let next = 0;
    const clients = Array.from({ length: 4 }, async () => {
      while (!stop) await enqueue(next++);
    });

    const started = Date.now();
    await waitFor(() => accepted.length >= 150, { timeoutMs: 60_000, what: '150 accepted jobs before the kill' });
    const acceptedBeforeKill = accepted.length;
    await victim.kill();
    const killedAt = Date.now();
    await waitFor(async () => (await victim.role().catch(() => 'gone')) === 'gone', { what: 'master down' });
    await cluster.waitUntilHealthy(60_000);
    const failoverMs = Date.now() - killedAt;
    // Keep enqueuing on the promoted replica for a moment, then stop.
    const afterFailover = accepted.length;
    await waitFor(() => accepted.length >= afterFailover + 50, { timeoutMs: 60_000, what: '50 more accepted jobs after the failover' });
    stop = true;
    await Promise.all(clients);

    const status = async (id: string) => {
      const res = await fetch(`${producer.url}/v1/jobs/${id}`, { headers: AUTH });
      return res.status === 200 ? ((await res.json()) as { status: string }).status : `http-${res.status}`;
    };
    let pending: string[] = [...accepted];
    await waitFor(
      async () => {
        const states = await Promise.all(pending.map(async (id) => [id, await status(id).catch(() => 'error')] as const));
        pending = states.filter(([, state]) => state !== 'completed').map(([id]) => id);
        return pending.length === 0;
      },
      { timeoutMs: 120_000, intervalMs: 500, what: `every accepted job completed (${pending.length} not yet: ${pending.slice(0, 5).join(', ')})` },
    );
    console.log(
      `failover: ${accepted.length} accepted (${acceptedBeforeKill} before the kill), ${refused} refused during the failover, ` +
        `replica promoted and slots served again after ${failoverMs} ms, all completed after ${Date.now() - started} ms`,
    );
    expect(new Set(accepted).size).toBe(accepted.length);
  });
});
