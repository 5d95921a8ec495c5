import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, type TestRedis } from './redis-server.js';

const run = promisify(execFile);

/** One redis-server of a {@link TestRedisCluster}. */
export interface TestClusterNode {
  port: number;
  /** Whether it is a master now (a replica becomes one when its master fails). */
  role(): Promise<'master' | 'replica'>;
  /** SIGKILL: no shutdown, no save; the cluster sees it fail after `cluster-node-timeout`. */
  kill(): Promise<void>;
}

export interface TestRedisCluster extends TestRedis {
  /** `redis+cluster://127.0.0.1:<p1>,…`: what `createRedis` and REDIS_URL take. */
  url: string;
  nodes: TestClusterNode[];
  /** Resolves once every slot is served again and CLUSTER INFO says `cluster_state:ok` everywhere alive. */
  waitUntilHealthy(timeoutMs?: number): Promise<void>;
}

export interface TestRedisClusterOptions {
  /** Masters; the 16,384 slots are split between them. @defaultValue 3 */
  masters?: number;
  /** Replicas per master (a failover needs 1). @defaultValue 0 */
  replicas?: number;
  /**
   * `cluster-node-timeout`, ms: how long a node may not answer before it counts as failed and its
   * replica takes over. Short, so a failover test does not wait Redis' default 15 s. @defaultValue 1000
   */
  nodeTimeoutMs?: number;
  /** AOF with `appendfsync always` on every node (what "no acknowledged write lost" on one node needs). */
  appendOnly?: boolean;
}

/**
 * A private Redis Cluster: `redis-server --cluster-enabled yes` on free ports, each with its own
 * data dir, joined with `redis-cli --cluster create` (3 masters by default, no replicas), ready
 * once every node says `cluster_state:ok`. No mock: the tests see MOVED, CROSSSLOT and failovers
 * as in production. `stop()` ends every server and deletes the dirs.
 */
export async function startTestRedisCluster(options: TestRedisClusterOptions = {}): Promise<TestRedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicas ?? 0;
  const count = masters * (1 + replicas);
  const ports: number[] = [];
  while (ports.length < count) {
    const port = await freePort();
    // The cluster bus listens on port + 10000: both must be free, and distinct from the others.
    if (port + 10_000 <= 65_535 && !ports.includes(port) && !ports.includes(port + 10_000) && !ports.some((p) => p + 10_000 === port)) ports.push(port);
  }
  const dir = mkdtempSync(join(tmpdir(), 'pq-redis-cluster-'));
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const cli = process.env.REDIS_CLI_BIN ?? 'redis-cli';
  const children = new Map<number, ChildProcess>();
  const stopAll = async () => {
    await Promise.all([...children.values()].map((child) => killAndWait(child, 'SIGKILL')));
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) {
      const nodeDir = join(dir, String(port));
      mkdirSync(nodeDir);
      const args = [
        '--port', String(port), '--bind', '127.0.0.1', '--dir', nodeDir, '--save', '',
        '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`,
        '--cluster-node-timeout', String(options.nodeTimeoutMs ?? 1_000),
        '--appendonly', options.appendOnly ? 'yes' : 'no', '--appendfsync', 'always',
      ];
      const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
      child.on('error', () => {});
      children.set(port, child);
    }
    await Promise.all(ports.map((port) => waitForPing(port, children.get(port)!)));
    await run(cli, ['--cluster', 'create', ...ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], {
      timeout: 30_000,
    });
  } catch (error) {
    await stopAll();
    throw error;
  }

  const alive = () => ports.filter((port) => { const child = children.get(port)!; return child.exitCode === null && child.signalCode === null; });
  const waitUntilHealthy = async (timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      const infos = await Promise.all(alive().map((port) => command(port, ['cluster', 'info']).catch((error: unknown) => String(error))));
      const ok = infos.every((info) => /cluster_state:ok/.test(info) && /cluster_slots_ok:16384/.test(info));
      const known = await Promise.all(alive().map((port) => command(port, ['cluster', 'nodes']).catch(() => '')));
      // Every live node agrees on who serves the slots: no node still lists a failed master as one.
      const agreed = known.every((nodes) => servingMasters(nodes) === masters);
      if (ok && agreed) return;
      last = infos.join(' | ').replace(/\s+/g, ' ').slice(0, 300);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    throw new Error(`Redis Cluster not healthy within ${timeoutMs} ms: ${last}`);
  };
  try {
    await waitUntilHealthy();
  } catch (error) {
    await stopAll();
    throw error;
  }

  return {
    url: `redis+cluster://${ports.map((port) => `127.0.0.1:${port}`).join(',')}`,
    port: ports[0]!,
    nodes: ports.map((port) => ({
      port,
      async role() {
        const info = await command(port, ['info', 'replication']);
        return /role:master/.test(info) ? 'master' : 'replica';
      },
      kill: () => killAndWait(children.get(port)!, 'SIGKILL'),
    })),
    waitUntilHealthy,
    stop: stopAll,
  };
}

/** Masters that serve slots and are not flagged as failing, in one node's CLUSTER NODES. */
function servingMasters(nodes: string): number {
  return nodes
    .split('\n')
    .map((line) => line.trim().split(' '))
    .filter((parts) => parts.length > 8 && parts[2]!.includes('master') && !parts[2]!.includes('fail')).length;
}

/** One command to one node, on a connection of its own (not a Cluster client: no redirects). */
async function command(port: number, args: string[]): Promise<string> {
  const client = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 });
  client.on('error', () => {});
  try {
    await client.connect();
    return String(await client.call(args[0]!, ...args.slice(1)));
  } finally {
    client.disconnect();
  }
}

async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  let spawnError: Error | undefined;
  child.once('error', (error) => (spawnError = error));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (spawnError) throw new Error(`Cannot start redis-server (${spawnError.message}). Install it (apt-get install redis-server).`);
    if ((await command(port, ['ping']).catch(() => '')) === 'PONG') return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`redis-server did not answer on port ${port} within 10 s`);
}

async function killAndWait(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}
