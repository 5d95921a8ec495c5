import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { Queue } from 'bullmq';
import { createRedis, QueueName, type Config, type PromptJobResult } from '@prompt-queue/shared';
import { startServiceProcess, startTestRedis, uniquePrefix, waitFor, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';
import { testConfig, waitForJob } from './helpers.js';

const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
const READY_LINE = /worker listening on (http:\/\/\S+)/;

export interface FinishedJob {
  state: string;
  result: PromptJobResult;
  attemptsMade: number;
  failedReason: string;
}

/**
 * Real worker processes (`node dist/main.js`, the fleet as deployed) on a private Redis, for one
 * test file: registers its hooks, kills the processes and closes queues after each test.
 */
export function useFleet() {
  let redisServer: TestRedis;
  const processes: ServiceProcess[] = [];
  const cleanups: (() => Promise<unknown> | unknown)[] = [];

  beforeAll(async () => {
    if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: build first (npx turbo run build --filter=@prompt-queue/worker)`);
    redisServer = await startTestRedis();
  });
  afterAll(async () => {
    await redisServer?.stop();
  });
  afterEach(async () => {
    await Promise.all(processes.splice(0).map((p) => p.stop('SIGKILL')));
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  /** A queue and a way to start workers sharing one CONFIG_FILE and environment. */
  function fleet(emulatorUrl: string, env: Record<string, string>, file: Record<string, unknown> = {}) {
    const dir = mkdtempSync(join(tmpdir(), 'pq-fleet-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const configFile = join(dir, 'config.json');
    writeFileSync(configFile, JSON.stringify(file));
    const processEnv = {
      REDIS_URL: redisServer.url,
      REDIS_PREFIX: uniquePrefix('f'),
      GEMINI_API_KEY: 'emulator-key',
      GEMINI_BASE_URL: emulatorUrl,
      WORKER_PORT: '0',
      LOG_LEVEL: 'warn',
      CONFIG_FILE: configFile,
      BACKOFF_BASE_MS: '100',
      BACKOFF_MAX_MS: '1000',
      ...env,
    };
    const config: Config = testConfig(processEnv);
    const connection = createRedis(config.redis.url, 'worker');
    const queue = new Queue(QueueName.Prompts, { connection, prefix: config.redis.prefix });
    cleanups.push(async () => {
      await queue.close();
      connection.disconnect();
    });
    /** Starts `count` workers; `timeoutMs` bounds each one's start (startServiceProcess's default otherwise). */
    const start = async (count = 1, timeoutMs?: number) => {
      const started = await Promise.all(
        Array.from({ length: count }, () => startServiceProcess({ args: [MAIN], env: processEnv, readyLine: READY_LINE, ...(timeoutMs ? { timeoutMs } : {}) })),
      );
      processes.push(...started);
      return started;
    };
    return { config, queue, start, connection };
  }

  /**
   * Waits until every job has finished, then reads them. One poll of the unfinished jobs' states
   * every 200 ms (not one poller per job): the emulator may share this process, and a busy event
   * loop here would delay when it counts calls.
   */
  async function results(queue: Queue, ids: string[], timeoutMs: number): Promise<FinishedJob[]> {
    let pending = [...ids];
    await waitFor(
      async () => {
        const states = await Promise.all(pending.map((id) => queue.getJobState(id)));
        pending = pending.filter((_, i) => states[i] !== 'completed' && states[i] !== 'failed');
        return pending.length === 0;
      },
      { timeoutMs, intervalMs: 200, what: `${ids.length} jobs to finish` },
    );
    return Promise.all(
      ids.map(async (id) => {
        const { job, state } = await waitForJob(queue, id, ['completed', 'failed'], timeoutMs);
        return { state, result: job.returnvalue as PromptJobResult, attemptsMade: job.attemptsMade, failedReason: job.failedReason };
      }),
    );
  }

  return { fleet, results, cleanups };
}
