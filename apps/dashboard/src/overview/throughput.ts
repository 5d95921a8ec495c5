import type { Metrics } from 'bullmq';

export const MINUTE_MS = 60_000;

/**
 * BullMQ's per-minute metrics as a series aligned to the current minute, oldest first.
 *
 * BullMQ keeps, per queue and type, `meta.count` (all jobs ever), `meta.prevCount` and `meta.prevTS`
 * (count and time at the last minute boundary it saw), and `data`, newest first: `data[i]` is the
 * count of minute `minute(prevTS) − 1 − i`. Jobs since `prevTS` (count − prevCount) are the
 * minute of `prevTS`; minutes after it, up to now, had no jobs (or the list would have moved).
 */
export function metricsSeries(metrics: Metrics, nowMs: number, minutes: number): number[] {
  const series = new Array<number>(minutes).fill(0);
  const { count, prevTS, prevCount } = metrics.meta;
  if (!prevTS) return series;
  const nowMinute = Math.floor(nowMs / MINUTE_MS);
  const place = (minute: number, value: number) => {
    const index = minutes - 1 - (nowMinute - minute);
    if (index >= 0 && index < minutes) series[index] = (series[index] ?? 0) + value;
  };
  const prevMinute = Math.floor(prevTS / MINUTE_MS);
  place(prevMinute, Math.max(0, count - prevCount));
  metrics.data.forEach((value, i) => place(prevMinute - 1 - i, value));
  return series;
}

/** Minute boundaries `[start, end)` of the last `minutes` minutes, oldest first; the last is the current minute. */
export function minuteBuckets(nowMs: number, minutes: number): { startMs: number; endMs: number }[] {
  const current = Math.floor(nowMs / MINUTE_MS) * MINUTE_MS;
  return Array.from({ length: minutes }, (_, i) => {
    const startMs = current - (minutes - 1 - i) * MINUTE_MS;
    return { startMs, endMs: startMs + MINUTE_MS };
  });
}
