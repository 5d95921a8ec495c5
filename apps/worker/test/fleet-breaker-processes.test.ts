import { describe, expect, it } from 'vitest';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { useFleet } from './fleet-harness.js';
import { enqueue, promptData } from './helpers.js';

/**
 * Issue #12, "one breaker per fleet", Done-when: an outage with 8 worker processes costs the
 * provider at most 2× what it costs with 1. Both fleets run at once against one emulator process,
 * each with its own Redis prefix, its own primary model and the same job rate; the outage (every
 * call 503) hits both primaries for the same 10 s.
 *
 * Scaled from the 30 s outage with the default 10 s resetTimeout (3 trial periods) to a
 * 10 s outage with a 2 s resetTimeout (5 trial periods): more half-open periods per outage than
 * the real thing, so the bound is no easier to meet. The rolling window and thresholds are the
 * defaults (10 s, 5 calls, 50 %), and each fleet sees 10 jobs/s before and during the outage.
 * The measured part takes ~13 s; the generous timeouts are for starting 9 processes on a busy
 * machine (each one took ~8 s to start on a loaded 2-CPU box).
 */
const OUTAGE_MS = 10_000;
const WARM_MS = 2_000;
const JOBS_PER_SECOND = 10;
const FALLBACK = 'gemini-2.5-flash-lite';

describe('fleet-wide breaker, real processes', () => {
  const { fleet, cleanups } = useFleet();

  it('a 10 s outage (resetTimeout 2 s) costs the provider at most 2× as many calls with 8 workers as with 1', async () => {
    const emulator: EmulatorProcess = await startEmulatorProcess({ latencyMs: 20 });
    cleanups.push(() => emulator.stop());
    const env = { BREAKER_RESET_TIMEOUT_MS: '2000', LOG_LEVEL: 'error' };
    const fleets = {
      one: { primary: 'gemini-2.5-flash', workers: 1 },
      eight: { primary: 'gemini-3.6-flash', workers: 8 },
    };
    const started = Object.fromEntries(
      Object.entries(fleets).map(([name]) => [
        name,
        fleet(emulator.url, env, { chains: { default: [{ provider: 'gemini', model: '$job' }, { provider: 'gemini', model: FALLBACK }] } }),
      ]),
    ) as Record<keyof typeof fleets, ReturnType<typeof fleet>>;
    await Promise.all(Object.entries(fleets).map(([name, { workers }]) => started[name as keyof typeof fleets].start(workers, 150_000)));

    // The same job rate to each fleet, from before the outage to its end.
    let feeding = true;
    const feeder = (async () => {
      for (let i = 0; feeding; i++) {
        for (const [name, { primary }] of Object.entries(fleets)) {
          const { queue, config } = started[name as keyof typeof fleets];
          await enqueue(queue, config, promptData({ model: primary, text: `${name} job ${i}` }));
        }
        await new Promise((resolve) => setTimeout(resolve, 1_000 / JOBS_PER_SECOND));
      }
    })();
    try {
      await new Promise((resolve) => setTimeout(resolve, WARM_MS));
      const before = await emulator.client.counters();
      await Promise.all(Object.values(fleets).map(({ primary }) => emulator.client.addFault({ kind: 'unavailable', model: primary, durationMs: OUTAGE_MS })));
      // The outage's cost is the calls it answered with 503 (the emulator has no other 503 here):
      // calls already served before the fault, or after it, cost nothing. Sampled every second.
      const failed = (counters: typeof before, primary: string) => counters.byModel[primary]?.byStatus['503'] ?? 0;
      const timeline: Record<'one' | 'eight', number[]> = { one: [], eight: [] };
      const outageEnds = Date.now() + OUTAGE_MS + 500;
      let after = before;
      while (Date.now() < outageEnds) {
        await new Promise((resolve) => setTimeout(resolve, 1_000));
        after = await emulator.client.counters();
        timeline.one.push(failed(after, fleets.one.primary));
        timeline.eight.push(failed(after, fleets.eight.primary));
      }
      const report = {
        outageMs: OUTAGE_MS,
        resetTimeoutMs: 2_000,
        callsDuringOutage: { oneWorker: failed(after, fleets.one.primary), eightWorkers: failed(after, fleets.eight.primary) },
        cumulative503PerSecond: timeline,
        allPrimaryCalls: {
          oneWorker: (after.byModel[fleets.one.primary]?.calls ?? 0) - (before.byModel[fleets.one.primary]?.calls ?? 0),
          eightWorkers: (after.byModel[fleets.eight.primary]?.calls ?? 0) - (before.byModel[fleets.eight.primary]?.calls ?? 0),
        },
        fallbackServedDuring: (after.byModel[FALLBACK]?.successes ?? 0) - (before.byModel[FALLBACK]?.successes ?? 0),
      };
      console.log('fleet breaker outage', JSON.stringify(report));
      // Both fleets had traffic on their primary before the outage, and met the outage.
      expect(report.callsDuringOutage.oneWorker).toBeGreaterThanOrEqual(5);
      expect(report.callsDuringOutage.eightWorkers).toBeGreaterThanOrEqual(5);
      expect(report.callsDuringOutage.eightWorkers).toBeLessThanOrEqual(2 * report.callsDuringOutage.oneWorker);
      // The fallback served meanwhile: the breakers were open, not the jobs stuck.
      expect(report.fallbackServedDuring).toBeGreaterThan(OUTAGE_MS / 1_000);
    } finally {
      feeding = false;
      await feeder;
    }
  }, 240_000);
});
