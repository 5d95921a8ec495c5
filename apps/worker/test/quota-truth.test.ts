import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { createEmulator, type Emulator, type TokenizerConfig } from '@prompt-queue/gemini-emulator';
import { FleetLimiter, type Config } from '@prompt-queue/shared';
import { useFleet } from './fleet-harness.js';
import { enqueue, promptData, waitForJob } from './helpers.js';

const PRIMARY = 'gemini-2.5-flash';
const FALLBACK = 'gemini-3.5-flash-lite';
const ALONE = 'gemini-2.5-flash-lite';

/**
 * The quota promise under conditions we did not choose: a provider whose tokenizer is not our
 * estimator's prior (source code at 3 characters a token, Japanese at 1.2 tokens a character),
 * calls of 1-3 s, a mix that switches from code to Japanese mid-run, limits configured or not,
 * and a per-day quota. Real worker processes, a real Redis, the emulator over HTTP. Time is scaled:
 * both sides use a 10 s window.
 */
describe('quota truth (real processes, a tokenizer unlike the estimator, slow calls)', () => {
  const { fleet, results, cleanups } = useFleet();
  const windowMs = 10_000;
  const quota = { rpm: 80, tpm: 6_000 };
  const tokenizer: TokenizerConfig = { asciiCharsPerToken: 3, nonAsciiTokensPerChar: 1.2 };

  /** The emulator behind a server that logs each answer's status and time (to tell 429s apart in time). */
  async function provider(options: { quotas: Record<string, { rpm?: number; tpm?: number; rpd?: number }>; latencyMs: number; jitterMs: number }) {
    const emulator: Emulator = createEmulator({ windowMs, tokenizer, ...options });
    const answers: { at: number; status: number; model: string }[] = [];
    const server: Server = createServer((req, res) => {
      const at = Date.now();
      res.once('finish', () => answers.push({ at, status: res.statusCode, model: /models\/([^:]+):/.exec(req.url ?? '')?.[1] ?? '' }));
      emulator.handle(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(async () => {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
      await emulator.close();
    });
    return { emulator, answers, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  }

  /** Code-like ASCII (≈ 3 characters a token here, 4 by the old rule), then Japanese (1.2 tokens a character, 0.75 by bytes/4). */
  function prompt(i: number, total: number): string {
    if (i < total / 2) return `function f${i}(x) { return x.map((v) => v * ${i}).filter(Boolean); }\n`.repeat(2 + (i % 4));
    return `ジョブ${i}の要約を書いてください。キューは順番に処理されます。`.repeat(2 + (i % 3));
  }

  async function enqueueMix(queue: Parameters<typeof enqueue>[0], config: Config, total: number, model = PRIMARY): Promise<string[]> {
    const ids: string[] = [];
    for (let i = 0; i < total; i++) ids.push(await enqueue(queue, config, promptData({ model, text: prompt(i, total) })));
    return ids;
  }

  it('limits configured: code then Japanese, 1-3 s calls, 3 workers: ≤ 1% of calls answered 429 and no window over quota', async () => {
    const { emulator, answers, url } = await provider({ quotas: { [PRIMARY]: quota }, latencyMs: 1_000, jitterMs: 2_000 });
    const { config, queue, start } = fleet(url, { LIMITER_WINDOW_MS: String(windowMs) }, { limits: { [PRIMARY]: quota } });
    await start(3);
    const ids = await enqueueMix(queue, config, 150);
    const done = await results(queue, ids, 80_000);

    expect(done.filter((d) => d.state !== 'completed').map((d) => d.failedReason)).toEqual([]);
    expect(done.every((d) => d.attemptsMade === 1)).toBe(true);
    const calls = answers.filter((a) => a.model === PRIMARY);
    const rateLimited = calls.filter((a) => a.status === 429).length;
    const windows = emulator.windowStats(windowMs)[PRIMARY]!;
    console.log('quota truth, configured', JSON.stringify({ calls: calls.length, rateLimited, ...windows }));
    expect(rateLimited).toBeLessThanOrEqual(Math.floor(calls.length * 0.01));
    expect(windows.maxInputTokensInWindow).toBeLessThanOrEqual(quota.tpm);
  }, 100_000);

  it('limits unknown: a slow start finds the quota with the calls in flight, learns it from the 429, and then holds it', async () => {
    const { answers, url } = await provider({ quotas: { [PRIMARY]: quota }, latencyMs: 1_000, jitterMs: 2_000 });
    const { config, queue, start, connection } = fleet(url, { LIMITER_WINDOW_MS: String(windowMs) });
    await start(3);
    const ids = await enqueueMix(queue, config, 150);
    const done = await results(queue, ids, 80_000);

    expect(done.filter((d) => d.state !== 'completed').map((d) => d.failedReason)).toEqual([]);
    expect(done.every((d) => d.attemptsMade === 1)).toBe(true);
    const calls = answers.filter((a) => a.model === PRIMARY);
    // After the first window of traffic: anchored on the first call, not on the enqueue, so a
    // fleet slow to start (a loaded machine) does not push its first crossing past the mark.
    const firstCallAt = Math.min(...calls.map((a) => a.at));
    const later = calls.filter((a) => a.at >= firstCallAt + windowMs);
    const rateLimited = calls.filter((a) => a.status === 429).length;
    const rateLimitedLater = later.filter((a) => a.status === 429).length;
    console.log('quota truth, unknown', JSON.stringify({ calls: calls.length, rateLimited, after: later.length, rateLimitedLater }));
    // The overshoot is bounded by the calls in flight when the quota is crossed (they all arrive
    // before the first 429's answer, which takes as long as a call), where a fleet without a slow
    // start sends its whole backlog at once: 150 − 60 fit = 90 429s. Seen: 34-44 on an idle
    // machine, 62 on a loaded one (the 429 answers come later, so more calls are under way).
    expect(rateLimited).toBeLessThan(ids.length / 2);
    expect(rateLimitedLater).toBeLessThanOrEqual(Math.floor(later.length * 0.01));
    // What the 429's QuotaFailure reported is the fleet's limit now.
    const limiter = new FleetLimiter(connection, config.redis.prefix, { windowMs });
    expect((await limiter.state({ provider: 'gemini', model: PRIMARY }, { rpm: 0, tpm: 0 })).tpmLimit).toBe(quota.tpm);
  }, 100_000);

  it('a spent daily quota pauses the model until the reported reset; the next link serves and no job fails', async () => {
    const { emulator, answers, url } = await provider({ quotas: { [PRIMARY]: { rpd: 4 }, [ALONE]: { rpd: 1 } }, latencyMs: 20, jitterMs: 20 });
    const chains = { [PRIMARY]: [{ provider: 'gemini', model: '$job' }, { provider: 'gemini', model: FALLBACK }] };
    const { config, queue, start, connection } = fleet(url, {}, { chains });
    await start(2);
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) ids.push(await enqueue(queue, config, promptData({ model: PRIMARY, text: `daily ${i}` })));
    const done = await results(queue, ids, 20_000);

    expect(done.filter((d) => d.state !== 'completed').map((d) => d.failedReason)).toEqual([]);
    expect(done.every((d) => d.attemptsMade === 1)).toBe(true);
    expect(done.filter((d) => d.result.model === PRIMARY)).toHaveLength(4);
    expect(done.filter((d) => d.result.model === FALLBACK)).toHaveLength(8);
    // Once paused, the fleet stops asking: the 429s are the calls already under way, not one per job.
    expect(answers.filter((a) => a.model === PRIMARY && a.status === 429).length).toBeLessThan(8);

    const limiter = new FleetLimiter(connection, config.redis.prefix);
    const state = await limiter.state({ provider: 'gemini', model: PRIMARY }, { rpm: 0, tpm: 0 });
    const reset = emulator.quotaUsage()[PRIMARY]!.day.resetsAt;
    expect(state.pauseReason).toBe('daily-quota');
    expect(Math.abs(state.pausedUntil! - reset)).toBeLessThan(2_000);

    // A model with no other link waits for the reset in `delayed`, says why, and spends no attempt.
    const first = await enqueue(queue, config, promptData({ model: ALONE, text: 'the only one today' }));
    expect((await waitForJob(queue, first, ['completed'])).state).toBe('completed');
    const second = await enqueue(queue, config, promptData({ model: ALONE, text: 'one too many' }));
    const { job } = await waitForJob(queue, second, ['delayed']);
    expect(job.attemptsMade).toBe(0);
    const waiting = (job.progress as { waiting?: { reason: string; until: string } }).waiting;
    expect(waiting?.reason).toBe('daily-quota');
    expect(Math.abs(Date.parse(waiting!.until) - emulator.quotaUsage()[ALONE]!.day.resetsAt)).toBeLessThan(2_000);
  }, 60_000);
});
