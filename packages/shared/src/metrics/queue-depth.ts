/**
 * Queue depth for Prometheus, shared by every service that exposes `/metrics` so the series are
 * named and labelled the same everywhere. No prom-client import here: pass the metric definition
 * to your own `Gauge` and call `collectQueueDepth` from its `collect()`, which prom-client runs on
 * each scrape:
 *
 * ```ts
 * new Gauge({ ...QUEUE_DEPTH_METRIC, registers: [registry], async collect() { await collectQueueDepth(this, [queue]); } });
 * ```
 */

/** BullMQ job states reported, as `getJobCounts` names them. */
export const QUEUE_DEPTH_STATES = [
  'waiting',
  'prioritized',
  'delayed',
  'active',
  'paused',
  'waiting-children',
  'completed',
  'failed',
] as const;

/** The gauge: jobs in each queue and state, read from BullMQ on every scrape (ZCARD/LLEN only). */
export const QUEUE_DEPTH_METRIC = {
  name: 'prompt_queue_queue_jobs',
  help: 'Jobs in the queue by BullMQ state, read on scrape (completed and failed: kept for the result TTL).',
  labelNames: ['queue', 'state'],
} as const;

/** The part of a prom-client Gauge this needs (prom-client's `Gauge` fits). */
export interface QueueDepthGauge {
  set(labels: Partial<Record<'queue' | 'state', string>>, value: number): void;
  reset(): void;
}

/** The part of a BullMQ Queue this needs. */
export interface CountableQueue {
  readonly name: string;
  getJobCounts(...types: string[]): Promise<Record<string, number>>;
}

/**
 * Sets the gauge from each queue's counts. A scrape must not hang or fail because Redis does: after
 * `timeoutMs` (or on an error) the gauge is left empty, the scrape still answers, and the missing
 * series tell the story. Resolves to whether every queue answered.
 */
export async function collectQueueDepth(gauge: QueueDepthGauge, queues: readonly CountableQueue[], timeoutMs = 1_000): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const counts = await Promise.race([
      Promise.all(queues.map(async (queue) => ({ queue: queue.name, counts: await queue.getJobCounts(...QUEUE_DEPTH_STATES) }))),
      new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), timeoutMs))),
    ]);
    gauge.reset();
    if (!counts) return false;
    for (const { queue, counts: byState } of counts) {
      for (const state of QUEUE_DEPTH_STATES) gauge.set({ queue, state }, byState[state] ?? 0);
    }
    return true;
  } catch {
    gauge.reset();
    return false;
  } finally {
    clearTimeout(timer);
  }
}
