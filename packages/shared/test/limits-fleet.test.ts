import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServiceProcess, startTestRedis, uniquePrefix, type ServiceProcess, type TestRedis } from '../src/testing/index.js';

/**
 * Several real worker processes share one quota through Redis. The fixture loads the built package
 * (packages/shared/dist), which turbo builds before tests; run `npx tsc -p packages/shared/tsconfig.json`
 * first when running vitest by hand.
 */
const FIXTURE = fileURLToPath(new URL('./fixtures/limiter-hammer.mjs', import.meta.url));

interface Grant {
  at: number;
  estimate: number;
  actual: number;
}

describe('FleetLimiter across processes (real Redis, 4 Node processes)', () => {
  let server: TestRedis;
  beforeAll(async () => {
    server = await startTestRedis();
  });
  afterAll(async () => {
    await server.stop();
  });

  it('never lets the fleet exceed rpm or tpm in any rolling window, and uses at least 90% of it', async () => {
    const windowMs = 2000;
    const rpm = 50;
    const tpm = 5000;
    const durationMs = 4000;
    const env = {
      REDIS_URL: server.url,
      PREFIX: uniquePrefix('fleet'),
      START_AT: String(Date.now() + 2000), // every process starts together, once all are up
      DURATION_MS: String(durationMs),
      WINDOW_MS: String(windowMs),
      RPM: String(rpm),
      TPM: String(tpm),
    };
    const workers: ServiceProcess[] = await Promise.all(
      Array.from({ length: 4 }, () => startServiceProcess({ args: [FIXTURE], env, readyLine: /^ready$/m })),
    );
    const exits = await Promise.all(workers.map((worker) => worker.exited));
    const results = workers.map((worker, i) => {
      expect(exits[i], worker.output()).toEqual({ code: 0, signal: null });
      const line = worker.output().match(/^result (.*)$/m);
      expect(line, worker.output()).toBeTruthy();
      return JSON.parse(line![1]!) as { grants: Grant[]; lastNow: number };
    });
    const grants = results.flatMap((result) => result.grants).sort((a, b) => a.at - b.at);
    expect(results.every((result) => result.grants.length > 0)).toBe(true); // every process got a share

    // Safety, exactly: every rolling window (t - W, t] is at its fullest at a grant time t.
    let worstRequests = 0;
    let worstTokens = 0;
    let start = 0;
    let tokens = 0;
    for (let end = 0; end < grants.length; end++) {
      tokens += grants[end]!.actual;
      while (grants[start]!.at <= grants[end]!.at - windowMs) tokens -= grants[start++]!.actual;
      // Grants at the same ms as `end` but later in the list belong to this window too.
      let last = end;
      let sameMsTokens = tokens;
      while (last + 1 < grants.length && grants[last + 1]!.at === grants[end]!.at) sameMsTokens += grants[++last]!.actual;
      worstRequests = Math.max(worstRequests, last - start + 1);
      worstTokens = Math.max(worstTokens, sameMsTokens);
    }
    expect(worstRequests).toBeLessThanOrEqual(rpm);
    expect(worstTokens).toBeLessThanOrEqual(tpm);

    // Utilization in steady state: from one window after the first grant until the first process
    // stopped, the binding dimension of each rolling window stays near its limit.
    const from = grants[0]!.at + windowMs;
    const to = Math.min(...results.map((result) => result.lastNow));
    expect(to - from).toBeGreaterThanOrEqual(windowMs / 2);
    const samples: number[] = [];
    for (let t = from; t <= to; t += 20) {
      const inWindow = grants.filter((grant) => grant.at > t - windowMs && grant.at <= t);
      const used = inWindow.reduce((sum, grant) => sum + grant.actual, 0);
      samples.push(Math.max(inWindow.length / rpm, used / tpm));
    }
    const mean = samples.reduce((sum, value) => sum + value, 0) / samples.length;
    console.log(
      `fleet: ${grants.length} grants, worst window ${worstRequests}/${rpm} requests, ${worstTokens}/${tpm} tokens; ` +
        `steady-state utilization mean ${(mean * 100).toFixed(1)}%, min ${(Math.min(...samples) * 100).toFixed(1)}%`,
    );
    expect(mean).toBeGreaterThanOrEqual(0.9);
  }, 30_000);
});
