// Jobs finished by a real BullMQ Worker, so the sets, hashes and metrics are what a worker writes.
import { createRedis, QueueName, type PromptJobResult } from '@prompt-queue/shared';
import { waitFor } from '@prompt-queue/shared/testing';
import { MetricsTime, Worker, type Queue } from 'bullmq';

export interface FakeJob {
  tenant: string;
  model: string;
  /** A failure as the worker reports it, `[CODE] message`; otherwise the job completes. */
  fail?: string;
  costUsd?: number;
  tokens?: number;
}

export function resultOf(job: FakeJob): PromptJobResult {
  const tokens = job.tokens ?? 79;
  const costUsd = job.costUsd ?? 0.00052;
  return {
    text: 'ok',
    finishReason: 'STOP',
    provider: 'gemini',
    model: job.model,
    cached: false,
    usage: { inputTokens: tokens - 9, outputTokens: 9, thoughtsTokens: 0, cachedTokens: 0, totalTokens: tokens },
    costUsd,
    costNanoUsd: Math.round(costUsd * 1e9),
    latencyMs: 12,
  };
}

/**
 * Adds the jobs (one attempt each) and runs a worker until all of them are finished. With
 * `metrics` the worker records BullMQ's per-minute metrics, like a worker with metrics enabled.
 */
export async function finishJobs(
  queue: Queue,
  redisUrl: string,
  prefix: string,
  jobs: FakeJob[],
  options: { metrics?: boolean; name?: string } = {},
): Promise<string[]> {
  const before = await queue.getJobCounts('completed', 'failed');
  const added = await queue.addBulk(
    jobs.map((job) => ({ name: 'generate', data: { v: 1, tenant: job.tenant, model: job.model, fake: job }, opts: { attempts: 1 } })),
  );
  const connection = createRedis(redisUrl, 'worker');
  const worker = new Worker(
    QueueName.Prompts,
    async (job) => {
      const fake = (job.data as { fake: FakeJob }).fake;
      if (fake.fail) throw new Error(fake.fail);
      return resultOf(fake);
    },
    {
      connection,
      prefix,
      name: options.name ?? 'test-host:1',
      concurrency: 4,
      ...(options.metrics ? { metrics: { maxDataPoints: MetricsTime.ONE_HOUR } } : {}),
    },
  );
  try {
    await waitFor(
      async () => {
        const now = await queue.getJobCounts('completed', 'failed');
        return (now.completed ?? 0) + (now.failed ?? 0) - (before.completed ?? 0) - (before.failed ?? 0) === jobs.length;
      },
      { timeoutMs: 10_000, what: 'jobs finished' },
    );
  } finally {
    await worker.close();
    await connection.quit();
  }
  return added.map((job) => job.id!);
}
