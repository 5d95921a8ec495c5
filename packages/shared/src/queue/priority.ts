import type { PriorityLevel } from './payloads.js';

/**
 * Static BullMQ priorities per level: 1 is served first; jobs of equal priority keep FIFO order.
 * Every job gets one (BullMQ serves unprioritized jobs before all prioritized ones, which would
 * defeat the levels). The producer no longer uses these: it interleaves tenants with
 * `assignFairPriorities` (queue/fairness.ts). They remain for jobs added outside that path.
 */
export const BULLMQ_PRIORITY: Record<PriorityLevel, number> = { high: 1, normal: 2, low: 3 };

export function bullmqPriority(level: PriorityLevel | undefined): number {
  return BULLMQ_PRIORITY[level ?? 'normal'];
}
