// A dashboard per test on a private Redis and a fresh key prefix, closed (keys removed) afterwards.
import { configSchema, createLogger, createRedis, ownPrefix, queuePrefix, QueueName, type Config, type ConfigInput } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, type TestRedis } from '@prompt-queue/shared/testing';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { createApp, type Dashboard } from '../src/app.js';

export const USER = 'admin';
export const PASSWORD = 'pa:ss w0rd';
const logger = createLogger({ service: 'dashboard-test', level: 'error' });

export interface TestDashboard {
  dashboard: Dashboard;
  config: Config;
  prefix: string;
  /** A connection for the test's own reads and writes (the dashboard has its own `reader`). */
  connection: Redis;
  /** The prompts queue on the same prefix, for adding and finishing jobs. */
  queue: Queue;
}

/** Registers the hooks; call once at the top of a test file. */
export function useDashboards(): { create(overrides?: Partial<ConfigInput>): TestDashboard; redis(): TestRedis } {
  let redis: TestRedis | undefined;
  const cleanups: Array<() => Promise<unknown>> = [];
  beforeAll(async () => {
    redis = await startTestRedis();
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await redis?.stop();
  });
  return {
    redis: () => redis!,
    create(overrides = {}) {
      // Tagged as the config reads it, so the test's BullMQ queues and the app's are the same.
      const prefix = queuePrefix(uniquePrefix('dash'));
      const config = configSchema.parse({
        env: 'test',
        redis: { url: redis!.url, prefix },
        dashboard: { user: USER, password: PASSWORD, ...(overrides.dashboard ?? {}) },
        ...Object.fromEntries(Object.entries(overrides).filter(([key]) => key !== 'dashboard')),
      });
      const connection = createRedis(redis!.url, 'worker');
      // The dashboard's own, as main.ts makes it: fail-fast, every read bounded.
      const reader = createRedis(redis!.url, 'reader');
      const dashboard = createApp({ config, connection: reader, logger });
      const queue = new Queue(QueueName.Prompts, { connection, prefix });
      cleanups.push(async () => {
        await queue.close();
        await dashboard.close();
        const keys = [...(await connection.keys(`${prefix}:*`)), ...(await connection.keys(`${ownPrefix(prefix)}:*`))];
        if (keys.length > 0) await connection.del(...keys);
        await connection.quit();
        await reader.quit();
      });
      return { dashboard, config, prefix, connection, queue };
    },
  };
}
