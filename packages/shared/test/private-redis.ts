import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { startTestRedis, type TestRedis } from '../src/testing/index.js';

/**
 * A private redis-server for the enclosing describe block, and one connection to it: started
 * before its tests, stopped after. `onStarted` hands both to the test's own variables.
 */
export function usePrivateRedis(onStarted: (started: { server: TestRedis; redis: Redis }) => void): void {
  let started: { server: TestRedis; redis: Redis } | undefined;
  beforeAll(async () => {
    const server = await startTestRedis();
    started = { server, redis: new Redis(server.url) };
    onStarted(started);
  });
  afterAll(async () => {
    started?.redis.disconnect();
    await started?.server.stop();
  });
}
