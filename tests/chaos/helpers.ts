// Shared plumbing of the chaos suite: the stack as real processes (Redis, the Gemini emulator, the
// producer, workers), a Redis we can take away and give back, and small HTTP helpers. Every wait
// here waits on a state (a count, a status, a ready line), never on a fixed sleep.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRedis, queuePrefix } from '@prompt-queue/shared';
import { freePort, startServiceProcess, waitFor, type ServiceProcess } from '@prompt-queue/shared/testing';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
export const PRODUCER_MAIN = join(ROOT, 'apps/producer/dist/main.js');
export const WORKER_MAIN = join(ROOT, 'apps/worker/dist/main.js');
export const API_KEY = 'chaos-key';
export const AUTH = { authorization: `Bearer ${API_KEY}` };
const READY_LINE = /listening on (http:\/\/\S+)/;

export function assertBuilt(): void {
  for (const main of [PRODUCER_MAIN, WORKER_MAIN]) {
    if (!existsSync(main)) throw new Error(`${main} is missing: build first (npx turbo run build)`);
  }
}

/** The environment every service of one test shares. */
export function baseEnv(redisUrl: string, prefix: string, emulator: { url: string; apiKey: string }, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'test',
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    API_KEYS: `chaos:${API_KEY}`,
    GEMINI_API_KEY: emulator.apiKey,
    GEMINI_BASE_URL: emulator.url,
    PRODUCER_PORT: '0',
    WORKER_PORT: '0',
    BACKOFF_BASE_MS: '50',
    BACKOFF_MAX_MS: '1000',
    LOG_LEVEL: 'warn',
    // Audit lines go to stderr by default; keep them out of the captured output.
    AUDIT_LOG: '/dev/null',
    // Every job must reach the provider: the suite counts provider calls per job.
    RESPONSE_CACHE: 'false',
    ...extra,
  };
}

export async function startProducer(env: Record<string, string>): Promise<{ proc: ServiceProcess; url: string }> {
  const proc = await startServiceProcess({ args: [PRODUCER_MAIN], env, readyLine: READY_LINE, timeoutMs: 20_000 });
  return { proc, url: proc.ready[1]! };
}

export async function startWorker(env: Record<string, string>): Promise<ServiceProcess> {
  return startServiceProcess({ args: [WORKER_MAIN], env, readyLine: READY_LINE, timeoutMs: 20_000 });
}

export function isAlive(proc: ServiceProcess): boolean {
  return proc.child.exitCode === null && proc.child.signalCode === null;
}

/**
 * A private redis-server whose death and return the test controls: `kill()` SIGKILLs it (no
 * shutdown save: only what AOF already wrote survives), `start()` starts it again on the same port
 * and data dir. startTestRedis().restart() does both at once; these tests need the gap between.
 */
export interface ControlledRedis {
  url: string;
  port: number;
  kill(): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export async function startControlledRedis(options: { appendfsync: 'always' | 'everysec' }): Promise<ControlledRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'pq-chaos-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', options.appendfsync];
  let child: ChildProcess | undefined;

  const killChild = async (signal: NodeJS.Signals) => {
    const current = child;
    child = undefined;
    if (!current || current.exitCode !== null || current.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      current.once('exit', () => resolve());
      current.kill(signal);
    });
  };
  const start = async () => {
    const spawned = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let spawnError: Error | undefined;
    spawned.on('error', (error) => (spawnError = error));
    child = spawned;
    const probe = createRedis(url, 'producer');
    probe.on('error', () => {});
    try {
      await waitFor(
        async () => {
          if (spawnError) throw new Error(`cannot start redis-server: ${spawnError.message}`);
          return (await probe.ping()) === 'PONG';
        },
        { timeoutMs: 15_000, intervalMs: 20, what: `redis-server on ${url}` },
      );
    } finally {
      probe.disconnect();
    }
  };
  await start();
  return {
    url,
    port,
    kill: () => killChild('SIGKILL'),
    start,
    async stop() {
      await killChild('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Jobs finished in BullMQ's own sets, read straight from Redis (cheap to poll, unlike 5,000 GETs). */
export async function finishedCounts(redis: ReturnType<typeof createRedis>, prefix: string): Promise<{ completed: number; failed: number }> {
  const [completed, failed] = await Promise.all([redis.zcard(`${queuePrefix(prefix)}:prompts:completed`), redis.zcard(`${queuePrefix(prefix)}:prompts:failed`)]);
  return { completed, failed };
}

/** POST /v1/jobs/bulk in chunks of at most 1,000; returns the accepted ids in order. */
export async function submitBulk(api: string, jobs: Record<string, unknown>[]): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < jobs.length; i += 1_000) {
    const res = await fetch(`${api}/v1/jobs/bulk`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ jobs: jobs.slice(i, i + 1_000) }),
    });
    const body = (await res.json()) as { jobs?: { id: string }[] };
    if (res.status !== 202 || !body.jobs) throw new Error(`bulk enqueue answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}`);
    ids.push(...body.jobs.map((job) => job.id));
  }
  return ids;
}

export interface JobView {
  id: string;
  status: string;
  attempts: number;
  finishedAt?: string | null;
  result?: { provider: string; model: string; text: string };
  error?: { code: string; message: string; retryable: boolean };
}

export async function getJob(api: string, id: string): Promise<{ status: number; view: JobView }> {
  const res = await fetch(`${api}/v1/jobs/${encodeURIComponent(id)}`, { headers: AUTH });
  return { status: res.status, view: (await res.json()) as JobView };
}

/** Runs `fn` over `items` with at most `limit` at once; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const index = next++;
        results[index] = await fn(items[index]!, index);
      }
    }),
  );
  return results;
}

/** Reads every job through the producer API; returns the views and a histogram of statuses. */
export async function readAllJobs(api: string, ids: readonly string[]): Promise<{ views: JobView[]; byStatus: Record<string, number>; httpErrors: string[] }> {
  const httpErrors: string[] = [];
  const views = await mapLimit(ids, 16, async (id) => {
    const { status, view } = await getJob(api, id);
    if (status !== 200) httpErrors.push(`${id}: HTTP ${status}`);
    return view;
  });
  const byStatus: Record<string, number> = {};
  for (const view of views) byStatus[view.status ?? 'missing'] = (byStatus[view.status ?? 'missing'] ?? 0) + 1;
  return { views, byStatus, httpErrors };
}

export function histogram(values: Iterable<string | number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const value of values) out[String(value)] = (out[String(value)] ?? 0) + 1;
  return out;
}

/** One line of measured figures, easy to grep out of the vitest output. */
export function report(test: string, figures: Record<string, unknown>): void {
  console.log(`[chaos] ${test}: ${JSON.stringify(figures)}`);
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));
