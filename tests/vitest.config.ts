import { defineConfig } from 'vitest/config';

// Whole-stack tests start real processes: give them room, and run files one after another so
// they do not compete for the two cores of a CI machine.
export default defineConfig({ test: { testTimeout: 60_000, hookTimeout: 60_000, fileParallelism: false } });
