import { defineConfig } from 'vitest/config';

// The whole-stack suite's main files and the worker-kill chaos test again, on a private 3-master
// Redis Cluster (PQ_TEST_REDIS=cluster makes startTestRedis() start one, packages/shared/src/testing),
// plus the failover test, which starts its own cluster with replicas. `npm run test:cluster`.
export default defineConfig({
  test: {
    include: ['test/e2e.test.ts', 'test/job-ends.test.ts', 'test/accounting.test.ts', 'chaos/worker-kill.test.ts', 'chaos/cluster-failover.test.ts'],
    env: { PQ_TEST_REDIS: 'cluster' },
    testTimeout: 240_000,
    hookTimeout: 90_000,
    fileParallelism: false,
  },
});
