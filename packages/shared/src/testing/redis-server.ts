import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';

export interface TestRedis {
  url: string;
  port: number;
  /** Stops the server (and deletes its data dir); a no-op for TEST_REDIS_URL. */
  stop(): Promise<void>;
  /** Kills the server abruptly and starts it again on the same port and data dir. */
  restart?(): Promise<void>;
  /**
   * Freezes the server (SIGSTOP): connections stay open but nothing answers, like a Redis that is
   * swapping or stuck. `resume()` (SIGCONT) lets it go on.
   */
  pause?(): void;
  resume?(): void;
}

/** An unused TCP port on 127.0.0.1, picked by the OS. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/**
 * Starts a private `redis-server` on a free port with its own temp dir, so tests never touch a
 * developer's data. With TEST_REDIS_URL set, that server is used instead (tests isolate themselves
 * by key prefix). `appendOnly` turns on AOF (everysec) for restart tests.
 */
export async function startTestRedis(options: { appendOnly?: boolean } = {}): Promise<TestRedis> {
  // The whole-stack suite's Cluster run (`npm run test:cluster -w tests`): same tests, a private
  // 3-master Redis Cluster (no restart or pause: the tests that need those stay single-node).
  if (process.env.PQ_TEST_REDIS === 'cluster') {
    const { startTestRedisCluster } = await import('./redis-cluster.js');
    return startTestRedisCluster({ appendOnly: options.appendOnly ?? false });
  }
  if (process.env.TEST_REDIS_URL) {
    const url = process.env.TEST_REDIS_URL;
    return { url, port: Number(new URL(url).port || 6379), stop: async () => {} };
  }
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pq-redis-'));
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const args = [
    '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '',
    '--appendonly', options.appendOnly ? 'yes' : 'no', '--appendfsync', 'everysec',
  ];
  let child = spawnRedis(bin, args);
  const url = `redis://127.0.0.1:${port}`;
  await waitForPing(url, child);

  return {
    url,
    port,
    async stop() {
      // A paused server would never handle SIGTERM.
      child.kill('SIGCONT');
      await killAndWait(child, 'SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
    async restart() {
      await killAndWait(child, 'SIGKILL');
      child = spawnRedis(bin, args);
      await waitForPing(url, child);
    },
    pause() {
      child.kill('SIGSTOP');
    },
    resume() {
      child.kill('SIGCONT');
    },
  };
}

function spawnRedis(bin: string, args: string[]) {
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  child.on('error', () => {}); // reported by waitForPing
  return child;
}

async function waitForPing(url: string, child: ReturnType<typeof spawn>): Promise<void> {
  let spawnError: Error | undefined;
  child.once('error', (error) => (spawnError = error));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (spawnError) {
      throw new Error(`Cannot start redis-server (${spawnError.message}). Install it (apt-get install redis-server) or set TEST_REDIS_URL.`);
    }
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => {});
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') return;
    } catch {
      // not up yet
    } finally {
      client.disconnect();
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`redis-server did not answer at ${url} within 10 s`);
}

async function killAndWait(child: ReturnType<typeof spawn>, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.kill(signal);
  });
}
