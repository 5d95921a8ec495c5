// Google's per-day quotas reset at midnight America/Los_Angeles. The offset is read from
// Intl for each instant, so the PST/PDT switch needs no table. Takes any clock value, so tests
// can inject PST and PDT dates.

const ZONE = 'America/Los_Angeles';

const wallFormat = new Intl.DateTimeFormat('en-US', {
  timeZone: ZONE,
  hourCycle: 'h23',
  year: 'numeric',
  month: '2-digit',
  day: '2-digit',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
});

interface Wall { year: number; month: number; day: number; hour: number; minute: number; second: number }

function wallClock(t: number): Wall {
  const parts: Record<string, number> = {};
  for (const p of wallFormat.formatToParts(new Date(t))) if (p.type !== 'literal') parts[p.type] = Number(p.value);
  return {
    year: parts.year ?? 1970, month: parts.month ?? 1, day: parts.day ?? 1,
    hour: parts.hour ?? 0, minute: parts.minute ?? 0, second: parts.second ?? 0,
  };
}

/** Pacific wall time minus UTC at instant `t`, ms (-8 h in PST, -7 h in PDT). */
export function pacificOffsetMs(t: number): number {
  const w = wallClock(t);
  const wholeSecond = t - (((t % 1000) + 1000) % 1000);
  return Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second) - wholeSecond;
}

/** The Pacific calendar date at `t`, as YYYY-MM-DD. */
export function pacificDate(t: number): string {
  const w = wallClock(t);
  return `${String(w.year).padStart(4, '0')}-${String(w.month).padStart(2, '0')}-${String(w.day).padStart(2, '0')}`;
}

/** Epoch ms of the first Pacific midnight strictly after `t`. */
export function nextPacificMidnight(t: number): number {
  const w = wallClock(t);
  // Next local midnight written as if it were UTC; Date.UTC rolls month and year ends over.
  const local = Date.UTC(w.year, w.month - 1, w.day + 1);
  // Two passes: the first guess may sit on the other side of a DST switch. Midnight itself is
  // never skipped or repeated in Los Angeles (the switch happens at 02:00).
  const guess = local - pacificOffsetMs(local);
  return local - pacificOffsetMs(guess);
}
