/**
 * Recent latencies (send to answer) of one link's served calls in this process: how long a call
 * normally takes, so that a call that took far longer can be told apart as one that waited before
 * it reached the provider (a burst of new connections, a busy event loop on either side).
 *
 * Only normal calls are kept: a waited one would raise the median until waited calls looked
 * normal. Samples age out, and while fewer than `MIN_SAMPLES` are known every call is kept, so a
 * provider that truly slows down is learned again within a minute.
 */
export class CallLatencies {
  private samples: { at: number; ms: number }[] = [];

  constructor(private readonly now: () => number = Date.now) {}

  /** Median and minimum of the recent normal calls, ms; undefined while too few are known. */
  typical(): { medianMs: number; floorMs: number } | undefined {
    this.expire();
    if (this.samples.length < MIN_SAMPLES) return undefined;
    const sorted = this.samples.map((sample) => sample.ms).sort((a, b) => a - b);
    return { medianMs: sorted[Math.floor(sorted.length / 2)]!, floorMs: sorted[0]! };
  }

  /** Records a served call's latency, unless it was a waited one (see {@link waited}). */
  record(ms: number): void {
    if (this.waited(ms)) return;
    this.samples.push({ at: this.now(), ms });
    if (this.samples.length > MAX_SAMPLES) this.samples.shift();
  }

  /** Whether a call this slow waited before the provider saw it: over WAITED_FACTOR × the median, and over a second. */
  waited(ms: number): boolean {
    const typical = this.typical();
    return typical !== undefined && ms > Math.max(WAITED_MIN_MS, WAITED_FACTOR * typical.medianMs);
  }

  private expire(): void {
    const oldest = this.now() - SAMPLE_TTL_MS;
    while (this.samples.length > 0 && this.samples[0]!.at < oldest) this.samples.shift();
  }
}

/** Samples kept (the latest). */
const MAX_SAMPLES = 64;
/** Below this many samples nothing is typical yet. */
const MIN_SAMPLES = 8;
/** A sample counts this long. */
const SAMPLE_TTL_MS = 60_000;
/** A call slower than this many times the median (and than WAITED_MIN_MS) waited before it arrived. */
const WAITED_FACTOR = 2;
const WAITED_MIN_MS = 1_000;
