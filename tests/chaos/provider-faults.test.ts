// Chaos at the provider: a 10 s outage, a 429 storm with a long retry delay, and a provider slower
// than GEMINI_TIMEOUT_MS. The worker runs a fallback chain (CONFIG_FILE `chains.default`): the
// job's own model on Gemini, then gemini-2.5-flash-lite under the link name `fallback`. Faults hit
// only the primary model, so the fallback is a healthy link: nothing may fail. A 429 is a quota
// answer, not a failure: the model pauses fleet-wide (no spill to the fallback by design) and the
// emulator must see next to no calls until the retry delay is over.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startEmulatorProcess, type CountersSnapshot, type EmulatorProcess, type ModelCounters } from '@prompt-queue/gemini-emulator';
import { startTestRedis, uniquePrefix, waitFor, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';
import {
  AUTH,
  assertBuilt,
  baseEnv,
  histogram,
  isAlive,
  mapLimit,
  report,
  sleep,
  startProducer,
  startWorker,
  submitBulk,
  type JobView,
} from './helpers.js';

const PRIMARY = 'gemini-3.6-flash';
const FALLBACK = 'gemini-2.5-flash-lite';
const WORKERS = 2;
const CONCURRENCY = 16;
const TIMEOUT_MS = 1_000;

function model(counters: CountersSnapshot, name: string): ModelCounters {
  return counters.byModel[name] ?? ({ calls: 0, successes: 0, rateLimited: 0, injected429: 0, errors5xx: 0, aborted: 0 } as ModelCounters);
}

/** Waits (long-polling the producer) until every job is finished; returns the final views. */
async function finishAll(api: string, ids: readonly string[], timeoutMs: number): Promise<JobView[]> {
  const deadline = Date.now() + timeoutMs;
  return mapLimit(ids, 16, async (id) => {
    for (;;) {
      const res = await fetch(`${api}/v1/jobs/${id}?wait=5`, { headers: AUTH });
      const view = (await res.json()) as JobView;
      if (res.status === 200 && ['completed', 'failed', 'cancelled'].includes(view.status)) return view;
      if (res.status === 404) return view;
      if (Date.now() > deadline) throw new Error(`job ${id} still ${view.status} after ${timeoutMs} ms`);
    }
  });
}

/** Submits `perTick` jobs every `tickMs` for `durationMs`; returns all accepted ids. */
async function trickle(api: string, label: string, durationMs: number, tickMs: number, perTick: number): Promise<string[]> {
  const ids: string[] = [];
  const started = Date.now();
  for (let tick = 0; Date.now() - started < durationMs; tick++) {
    const tickStarted = Date.now();
    ids.push(...(await submitBulk(api, Array.from({ length: perTick }, (_, i) => ({ prompt: `${label} ${tick}.${i}` })))));
    await sleep(Math.max(0, tickMs - (Date.now() - tickStarted)));
  }
  return ids;
}

function servedBy(views: readonly JobView[]): Record<string, number> {
  return histogram(views.map((v) => (v.status === 'completed' ? `${v.result?.provider}/${v.result?.model}` : `${v.status}:${v.error?.code}`)));
}

describe('chaos: provider outage, 429 storm, slow provider (with a fallback chain)', () => {
  let redis: TestRedis;
  let emulator: EmulatorProcess;
  let producer: Awaited<ReturnType<typeof startProducer>>;
  let env: Record<string, string>;
  let configDir: string;
  let workers: ServiceProcess[] = [];

  beforeAll(async () => {
    assertBuilt();
    [redis, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess({ latencyMs: 20 })]);
    configDir = mkdtempSync(join(tmpdir(), 'pq-chaos-config-'));
    const configFile = join(configDir, 'config.json');
    writeFileSync(
      configFile,
      JSON.stringify({ chains: { default: [{ provider: 'gemini', model: '$job' }, { provider: 'gemini', model: FALLBACK, name: 'fallback' }] } }),
    );
    env = baseEnv(redis.url, uniquePrefix('chaosfault'), emulator, {
      CONFIG_FILE: configFile,
      GEMINI_MODEL: PRIMARY,
      GEMINI_TIMEOUT_MS: String(TIMEOUT_MS),
      WORKER_CONCURRENCY: String(CONCURRENCY),
      // JOB_ATTEMPTS stays at its default (5): the fallback, not a big retry budget, must save the jobs.
      BREAKER_RESET_TIMEOUT_MS: '2000',
    });
    producer = await startProducer(env);
  });
  afterEach(async () => {
    // Fresh workers per scenario: breakers are per process, so each starts closed.
    await Promise.all(workers.splice(0).map((worker) => worker.stop('SIGTERM', 10_000)));
    await emulator.client.clearFaults();
  });
  afterAll(async () => {
    await producer?.proc.stop('SIGKILL');
    await emulator?.stop();
    await redis?.stop();
    rmSync(configDir, { recursive: true, force: true });
  });

  async function startFleet(): Promise<void> {
    await emulator.client.reset();
    workers = await Promise.all(Array.from({ length: WORKERS }, () => startWorker(env)));
  }

  /** Submits one job at a time until the primary serves one again (its breakers closed). */
  async function waitPrimaryServes(): Promise<{ ms: number; ids: string[] }> {
    const started = Date.now();
    const ids: string[] = [];
    await waitFor(
      async () => {
        const [id] = await submitBulk(producer.url, [{ prompt: `recovery probe ${started}.${ids.length}` }]);
        ids.push(id!);
        const view = (await (await fetch(`${producer.url}/v1/jobs/${id}?wait=10`, { headers: AUTH })).json()) as JobView;
        return view.status === 'completed' && view.result?.provider === 'gemini';
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'the primary link to serve again' },
    );
    return { ms: Date.now() - started, ids };
  }

  it('outage (503 for 10 s): the fallback serves, nothing fails, the primary serves again after', async () => {
    await startFleet();
    await emulator.client.addFault({ kind: 'unavailable', model: PRIMARY });
    const outageStarted = Date.now();
    const during = await trickle(producer.url, 'outage', 10_000, 250, 10);
    // The outage lasts until the fallback has demonstrably taken over (a state, not a timer).
    await waitFor(async () => model(await emulator.client.counters(), FALLBACK).successes >= 20, { timeoutMs: 30_000, what: 'the fallback serving' });
    await emulator.client.clearFaults();
    const outageMs = Date.now() - outageStarted;
    const duringOutage = await emulator.client.counters();
    const recovery = await waitPrimaryServes();
    const views = await finishAll(producer.url, [...during, ...recovery.ids], 60_000);
    const counters = await emulator.client.counters();
    const byStatus = histogram(views.map((v) => v.status));
    report('provider outage', {
      jobs: views.length,
      byStatus,
      servedBy: servedBy(views),
      attempts: histogram(views.map((v) => v.attempts)),
      primaryCallsDuringOutage: model(duringOutage, PRIMARY).calls,
      primary503s: model(counters, PRIMARY).errors5xx,
      fallbackSuccesses: model(counters, FALLBACK).successes,
      outageMs,
      primaryBackAfterOutageMs: recovery.ms,
      recoveryProbes: recovery.ids.length,
    });

    expect(byStatus).toEqual({ completed: views.length });
    expect(model(counters, FALLBACK).successes).toBeGreaterThan(0);
    // The breakers keep the failing primary from seeing every job: far fewer calls than jobs.
    expect(model(duringOutage, PRIMARY).calls).toBeLessThan(during.length / 2);
    expect(workers.every(isAlive)).toBe(true);
  });

  it('429 storm (retryDelay 8 s): the fleet pauses the model, calls stop, jobs complete after the pause without spending attempts', async () => {
    await startFleet();
    const RETRY_DELAY_S = 8;
    await emulator.client.addFault({ kind: 'rateLimit', model: PRIMARY, share: 1, retryDelaySeconds: RETRY_DELAY_S, durationMs: 3_000 });
    const ids = await submitBulk(
      producer.url,
      Array.from({ length: 200 }, (_, i) => ({ prompt: `storm ${i}` })),
    );
    const firstAt = await waitFor(async () => ((await emulator.client.counters()).byModel[PRIMARY]?.injected429 ?? 0) > 0 && Date.now(), {
      what: 'the first 429',
    });
    // The pause window, measured from 1 s after the first 429 (calls already under way may land)
    // to 1 s before the retry delay ends.
    await sleep(Math.max(0, firstAt + 1_000 - Date.now()));
    const pauseStart = await emulator.client.counters();
    await sleep(Math.max(0, firstAt + (RETRY_DELAY_S - 1) * 1_000 - Date.now()));
    const pauseEnd = await emulator.client.counters();
    const views = await finishAll(producer.url, ids, 60_000);
    const counters = await emulator.client.counters();
    const callsDuringPause = pauseEnd.totalCalls - pauseStart.totalCalls;
    const firstCompletion = Math.min(...views.filter((v) => v.status === 'completed').map((v) => Date.parse(v.finishedAt ?? '')));
    const byStatus = histogram(views.map((v) => v.status));
    report('provider 429 storm', {
      jobs: ids.length,
      byStatus,
      servedBy: servedBy(views),
      attempts: histogram(views.map((v) => v.attempts)),
      primary429s: model(counters, PRIMARY).injected429,
      callsBeforePause: pauseStart.totalCalls,
      callsDuringPauseWindow: callsDuringPause,
      pauseWindowMs: (RETRY_DELAY_S - 2) * 1_000,
      firstCompletionAfterFirst429Ms: firstCompletion - firstAt,
      totalCalls: counters.totalCalls,
    });

    expect(byStatus).toEqual({ completed: ids.length });
    // Next to no calls while paused: at most one straggler per worker process.
    expect(callsDuringPause).toBeLessThanOrEqual(WORKERS);
    // The 429s cost no attempt: every job completed on its first.
    expect(views.every((v) => v.attempts <= 1)).toBe(true);
    expect(workers.every(isAlive)).toBe(true);
  });

  it(`slow provider (answers after 10 s, GEMINI_TIMEOUT_MS ${TIMEOUT_MS}): timeouts retry, the fallback serves, nothing fails`, async () => {
    await startFleet();
    await emulator.client.addFault({ kind: 'slow', model: PRIMARY, delayMs: 10_000 });
    const slowStarted = Date.now();
    const during = await trickle(producer.url, 'slow', 8_000, 250, 10);
    await waitFor(async () => model(await emulator.client.counters(), FALLBACK).successes >= 20, { timeoutMs: 30_000, what: 'the fallback serving' });
    await emulator.client.clearFaults();
    const slowMs = Date.now() - slowStarted;
    const recovery = await waitPrimaryServes();
    const views = await finishAll(producer.url, [...during, ...recovery.ids], 60_000);
    const counters = await emulator.client.counters();
    const byStatus = histogram(views.map((v) => v.status));
    report('provider slow', {
      jobs: views.length,
      byStatus,
      servedBy: servedBy(views),
      attempts: histogram(views.map((v) => v.attempts)),
      primaryCalls: model(counters, PRIMARY).calls,
      primaryTimedOut: model(counters, PRIMARY).aborted,
      fallbackSuccesses: model(counters, FALLBACK).successes,
      slowMs,
      primaryBackAfterSlowMs: recovery.ms,
    });

    expect(byStatus).toEqual({ completed: views.length });
    expect(model(counters, FALLBACK).successes).toBeGreaterThan(0);
    expect(workers.every(isAlive)).toBe(true);
  });
});
