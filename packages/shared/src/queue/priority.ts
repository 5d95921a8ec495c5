import type { PriorityLevel } from './payloads.js';

/**
 * BullMQ priorities: 1 is served first; jobs of equal priority keep FIFO order. Every job gets one
 * (BullMQ serves unprioritized jobs before all prioritized ones, which would defeat the levels).
 */
export const BULLMQ_PRIORITY: Record<PriorityLevel, number> = { high: 1, normal: 2, low: 3 };

export function bullmqPriority(level: PriorityLevel | undefined): number {
  return BULLMQ_PRIORITY[level ?? 'normal'];
}
