/**
 * UTC calendar periods used as Redis key parts. Budgets and usage reset at UTC midnight (not
 * Google's Pacific-time quota day): one clock for every tenant, whatever region a worker runs in.
 */

/** `YYYY-MM-DD` (UTC). */
export function utcDay(now: Date): string {
  return now.toISOString().slice(0, 10);
}

/** `YYYY-MM` (UTC). */
export function utcMonth(now: Date): string {
  return now.toISOString().slice(0, 7);
}

/** `YYYY-MM-DDTHH` (UTC), the hourly bucket. */
export function utcHour(now: Date): string {
  return now.toISOString().slice(0, 13);
}

/** Epoch ms of the next UTC midnight. */
export function nextUtcDayStartMs(now: Date): number {
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate() + 1);
}

/** Epoch ms of the first instant of the next UTC month. */
export function nextUtcMonthStartMs(now: Date): number {
  return Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
}

/** The `count` UTC days ending with `now`'s day, oldest first. */
export function lastUtcDays(now: Date, count: number): string[] {
  const start = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
  return Array.from({ length: count }, (_, i) => utcDay(new Date(start - (count - 1 - i) * 86_400_000)));
}

/** The `count` UTC hours ending with `now`'s hour, oldest first, with their start (epoch ms). */
export function lastUtcHours(now: Date, count: number): { hour: string; startMs: number }[] {
  const start = Math.floor(now.getTime() / 3_600_000) * 3_600_000;
  return Array.from({ length: count }, (_, i) => {
    const startMs = start - (count - 1 - i) * 3_600_000;
    return { hour: utcHour(new Date(startMs)), startMs };
  });
}
