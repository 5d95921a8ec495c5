import { defineConfig } from 'vitest/config';

// The chaos suite (`npm run test:chaos`): kills, outages and fuzzing against the stack as real
// processes. Files run one after another (two cores), each test bounded by its own timeouts.
export default defineConfig({
  test: {
    include: ['chaos/**/*.test.ts'],
    testTimeout: 240_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
});
