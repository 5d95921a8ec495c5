import { randomUUID } from 'node:crypto';
import type { Job, Queue } from 'bullmq';
import { loadConfig, promptJobOptions, sha256Hex, type Config, type PromptJobData, type StoredContent } from '@prompt-queue/shared';
import { waitFor } from '@prompt-queue/shared/testing';

/** A model with a price and thinking in the emulator. */
export const MODEL = 'gemini-2.5-flash';

/** A real configuration, parsed by the shared loader from environment-style values. */
export function testConfig(env: Record<string, string>): Config {
  return loadConfig({
    NODE_ENV: 'test',
    LOG_LEVEL: 'error',
    BACKOFF_BASE_MS: '20',
    BACKOFF_MAX_MS: '200',
    JOB_ATTEMPTS: '5',
    ...env,
  });
}

/** A payload valid under promptJobDataSchema. */
export function promptData(overrides: Partial<PromptJobData> & { text?: string } = {}): PromptJobData {
  const { text = 'Say something about queues.', ...rest } = overrides;
  const contents: StoredContent[] = rest.contents ?? [{ role: 'user', parts: [{ text }] }];
  return {
    v: 1,
    kind: 'generate',
    tenant: 'acme',
    model: MODEL,
    requestHash: sha256Hex(JSON.stringify(contents)),
    enqueuedAt: Date.now(),
    ...rest,
    contents,
  };
}

export async function enqueue(queue: Queue, config: Config, data: unknown): Promise<string> {
  const id = randomUUID();
  await queue.add('generate', data, promptJobOptions(config, id, 'normal'));
  return id;
}

/** Waits until the job reaches one of `states`; returns the job as BullMQ stores it then. */
export async function waitForJob(queue: Queue, id: string, states: string[], timeoutMs = 10_000): Promise<{ job: Job; state: string }> {
  const found = await waitFor(
    async () => {
      // State first, then the job: read the other way round, a job that completes in between
      // would show state `completed` with the hash fields (returnvalue…) of before.
      const state = await queue.getJobState(id);
      if (!states.includes(state)) return undefined;
      const job = await queue.getJob(id);
      return job ? { job, state } : undefined;
    },
    { timeoutMs, what: `job ${id} to be ${states.join(' or ')}` },
  );
  return found!;
}
