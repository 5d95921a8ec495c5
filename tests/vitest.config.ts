import { defineConfig } from 'vitest/config';

// Whole-stack tests start real processes: give them room, and run files one after another so
// they do not compete for the two cores of a CI machine. Only test/**: the chaos suite (chaos/**)
// has its own config and command (`npm run test:chaos`).
export default defineConfig({
  test: { include: ['test/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 60_000, fileParallelism: false },
});
