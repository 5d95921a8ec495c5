// The whole system as separate processes, as the client meets it in production: a private Redis,
// the Gemini emulator, the producer and workers (the same way tests/test/e2e.test.ts starts them).
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmulatorProcess, type CountersSnapshot, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { startServiceProcess, startTestRedis, uniquePrefix, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';

export const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
/** The built CLI, run as users run it. */
export const cliPath = join(root, 'packages/client/dist/cli/main.js');
export const KEY = 'client-test-key';
export const OTHER_KEY = 'client-other-key';

export interface Stack {
  url: string;
  redis: TestRedis;
  emulator: EmulatorProcess;
  producer: ServiceProcess;
  workers: ServiceProcess[];
  env: Record<string, string>;
  /** Starts one more producer on the same Redis (for a second port, e.g. a proxy target). */
  stop(): Promise<void>;
  /** generateContent calls the emulator served since its last reset, all models. */
  generateCalls(): Promise<number>;
}

export interface StackOptions {
  workers?: number;
  /** Emulator latency per call, ms. @defaultValue 5 */
  latencyMs?: number;
  env?: Record<string, string>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const [redis, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess({ latencyMs: options.latencyMs ?? 5 })]);
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    REDIS_URL: redis.url,
    REDIS_PREFIX: uniquePrefix('client'),
    API_KEYS: `acme:${KEY},globex:${OTHER_KEY}`,
    GEMINI_API_KEY: emulator.apiKey,
    GEMINI_BASE_URL: emulator.url,
    PRODUCER_PORT: '0',
    WORKER_PORT: '0',
    BACKOFF_BASE_MS: '20',
    LOG_LEVEL: 'warn',
    ...options.env,
  };
  const service = (app: string) =>
    startServiceProcess({ args: [join(root, `apps/${app}/dist/main.js`)], env, readyLine: /listening on (http:\/\/\S+)/, timeoutMs: 30_000 });
  const producer = await service('producer');
  const workers = await Promise.all(Array.from({ length: options.workers ?? 1 }, () => service('worker')));
  return {
    url: producer.ready[1]!,
    redis,
    emulator,
    producer,
    workers,
    env,
    async stop() {
      await Promise.all(workers.map((worker) => worker.stop()));
      await producer.stop();
      await emulator.stop();
      await redis.stop();
    },
    async generateCalls() {
      const counters = (await emulator.client.counters()) as CountersSnapshot;
      return Object.values(counters.byModel).reduce((sum, model) => sum + (model.byMethod.generateContent ?? 0), 0);
    },
  };
}
