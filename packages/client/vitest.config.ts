import { defineConfig } from 'vitest/config';

// The *.stack.test.ts files start Redis, the emulator, the producer and workers as real processes:
// give them room, and run files one after another so they do not compete for the CPU.
export default defineConfig({ test: { include: ['test/**/*.test.ts'], testTimeout: 60_000, hookTimeout: 60_000, fileParallelism: false } });
