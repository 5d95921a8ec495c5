import { describe, expect, it } from 'vitest';
import { createEmulator, EmulatorClient, startEmulatorProcess, type Emulator, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { waitFor } from '@prompt-queue/shared/testing';
import { readBreakerStates } from '../src/providers/breaker.js';
import { useFleet } from './fleet-harness.js';
import { enqueue, promptData } from './helpers.js';

const PRIMARY = 'gemini-2.5-flash';
const FALLBACK = 'gemini-3.5-flash-lite';
const OTHER = 'gemini-2.5-flash-lite';

/** Several real worker processes (`node dist/main.js`) against one emulator: the fleet as deployed. */
describe('worker fleet (real processes, real Redis, emulator over HTTP)', () => {
  const { fleet, results, cleanups } = useFleet();

  it('3 workers share a quota (120 RPM, 20,000 TPM per 60 s, time scaled to 15 s windows): all complete, ≤ 1% 429s, no window over quota', async () => {
    // Both sides agree on a 15 s window (emulator in-process, LIMITER_WINDOW_MS): 30 requests and
    // 5,000 input tokens per window is 120 RPM / 20,000 TPM scaled in time only.
    const windowMs = 15_000;
    const quota = { rpm: 30, tpm: 5_000 };
    const emulator: Emulator = createEmulator({ windowMs, quotas: { [PRIMARY]: quota }, latencyMs: 40, jitterMs: 40 });
    const url = await emulator.listen(0);
    cleanups.push(() => emulator.close());
    const client = new EmulatorClient(url);
    const { config, queue, start } = fleet(url, { LIMITER_WINDOW_MS: String(windowMs) }, { limits: { [PRIMARY]: quota } });
    await start(3);

    // 75 jobs (300 scaled by the window): prompts of 100-220 tokens, so both limits bind.
    const started = Date.now();
    const ids: string[] = [];
    for (let i = 0; i < 75; i++) {
      const words = 100 + ((i * 37) % 120);
      ids.push(await enqueue(queue, config, promptData({ model: PRIMARY, text: `job ${i} ${'abc '.repeat(words)}` })));
    }
    const done = await results(queue, ids, 55_000);
    const elapsedMs = Date.now() - started;

    expect(done.filter((d) => d.state !== 'completed')).toEqual([]);
    // Waiting for quota spends no attempt.
    expect(done.every((d) => d.attemptsMade === 1)).toBe(true);
    const counters = await client.counters();
    const model = counters.byModel[PRIMARY]!;
    const windows = (await client.windows(windowMs))[PRIMARY]!;
    const report = {
      calls: model.calls,
      successes: model.successes,
      rateLimited: model.rateLimited,
      share429: model.rateLimited / model.calls,
      maxCallsInWindow: windows.maxCallsInWindow,
      maxInputTokensInWindow: windows.maxInputTokensInWindow,
      quota,
      elapsedMs,
      jobsPerScaledMinute: Math.round((75 / elapsedMs) * windowMs * 10) / 10,
    };
    console.log('quota test', JSON.stringify(report));
    expect(model.successes).toBe(75);
    expect(model.rateLimited).toBeLessThanOrEqual(Math.floor(model.calls * 0.01));
    expect(windows.maxCallsInWindow).toBeLessThanOrEqual(quota.rpm);
    expect(windows.maxInputTokensInWindow).toBeLessThanOrEqual(quota.tpm);
  }, 60_000);

  it('a 429 with retryDelay 5 s pauses that model fleet-wide: ≤ 1 call per worker during the pause; another model keeps completing', async () => {
    const emulator: EmulatorProcess = await startEmulatorProcess({ latencyMs: 30 });
    cleanups.push(() => emulator.stop());
    const { config, queue, start } = fleet(emulator.url, {});
    await start(3);

    // A steady stream of both models for ~7 s; the 429 hits the first model early.
    await emulator.client.addFault({ kind: 'rateLimit', model: PRIMARY, count: 1, retryDelaySeconds: 5 });
    const ids: string[] = [];
    const other: string[] = [];
    let feeding = true;
    const feeder = (async () => {
      for (let i = 0; feeding; i++) {
        ids.push(await enqueue(queue, config, promptData({ model: PRIMARY, text: `paused model ${i}` })));
        other.push(await enqueue(queue, config, promptData({ model: OTHER, text: `other model ${i}` })));
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    try {
      const at429 = await waitFor(
        async () => {
          const c = await emulator.client.counters();
          return (c.byModel[PRIMARY]?.rateLimited ?? 0) >= 1 ? c : undefined;
        },
        { intervalMs: 10, what: 'the 429' },
      );
      await new Promise((resolve) => setTimeout(resolve, 4_500));
      const later = await emulator.client.counters();
      const callsDuringPause = later.byModel[PRIMARY]!.calls - at429.byModel[PRIMARY]!.calls;
      const otherServedDuringPause = later.byModel[OTHER]!.successes - (at429.byModel[OTHER]?.successes ?? 0);
      console.log('pause test', JSON.stringify({ callsDuringPause, otherServedDuringPause }));
      expect(callsDuringPause).toBeLessThanOrEqual(3);
      expect(otherServedDuringPause).toBeGreaterThanOrEqual(30);
    } finally {
      feeding = false;
      await feeder;
    }
    const done = await results(queue, [...ids, ...other], 20_000);
    expect(done.filter((d) => d.state !== 'completed')).toEqual([]);
    expect(done.every((d) => d.attemptsMade === 1)).toBe(true);
    expect((await emulator.client.counters()).byModel[PRIMARY]!.rateLimited).toBe(1);
  }, 60_000);

  it('a 503 outage on the primary model: breakers open, the fallback model serves, no job fails, the breaker closes afterwards', async () => {
    const emulator: EmulatorProcess = await startEmulatorProcess({ latencyMs: 20 });
    cleanups.push(() => emulator.stop());
    const chain = [{ provider: 'gemini', model: '$job' }, { provider: 'gemini', model: FALLBACK }];
    const { config, queue, start, connection } = fleet(
      emulator.url,
      { BREAKER_RESET_TIMEOUT_MS: '1500', BREAKER_VOLUME_THRESHOLD: '3', BREAKER_ROLLING_COUNT_TIMEOUT_MS: '5000' },
      { chains: { default: chain } },
    );
    await start(2);
    const outageMs = 6_000;
    await emulator.client.addFault({ kind: 'unavailable', model: PRIMARY, durationMs: outageMs });
    const outageEnds = Date.now() + outageMs;

    const ids: string[] = [];
    while (Date.now() < outageEnds + 3_000) {
      for (let i = 0; i < 3; i++) ids.push(await enqueue(queue, config, promptData({ model: PRIMARY, text: `job ${ids.length}` })));
      await new Promise((resolve) => setTimeout(resolve, 150));
    }
    const done = await results(queue, ids, 20_000);
    expect(done.filter((d) => d.state !== 'completed').map((d) => d.failedReason)).toEqual([]);
    const servedBy = (model: string) => done.filter((d) => d.result.model === model).length;
    expect(servedBy(FALLBACK)).toBeGreaterThan(10);
    expect(done.every((d) => d.result.provider === 'gemini')).toBe(true);

    // After the outage the breakers close again (a trial call succeeds) and the primary serves.
    const link = `gemini:${PRIMARY}:default`;
    await waitFor(async () => (await readBreakerStates(connection, config.redis.prefix))[link]?.state === 'closed', { what: 'the breaker to close' });
    const after = await results(queue, [await enqueue(queue, config, promptData({ model: PRIMARY, text: 'after the outage' }))], 10_000);
    expect(after[0]!.result.model).toBe(PRIMARY);
    const counters = await emulator.client.counters();
    console.log('outage test', JSON.stringify({ jobs: ids.length, primary: servedBy(PRIMARY), fallback: servedBy(FALLBACK), primary503: counters.byModel[PRIMARY]!.byStatus['503'] }));
  }, 60_000);

  it('SIGKILL mid-batch: every job of the killed worker still completes on another one', async () => {
    const emulator: EmulatorProcess = await startEmulatorProcess({ latencyMs: 2_000 });
    cleanups.push(() => emulator.stop());
    const { config, queue, start } = fleet(emulator.url, { LOCK_DURATION_MS: '1000' });
    const [first] = await start(1);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await enqueue(queue, config, promptData({ text: `batch job ${i}` })));
    await waitFor(async () => (await emulator.client.counters()).totalCalls >= 12, { what: 'the batch in flight' });
    expect(await first!.stop('SIGKILL')).toEqual({ code: null, signal: 'SIGKILL' });

    await emulator.client.setLatency(50);
    await start(1);
    const done = await results(queue, ids, 20_000);
    expect(done.filter((d) => d.state !== 'completed')).toEqual([]);
  }, 60_000);
});
