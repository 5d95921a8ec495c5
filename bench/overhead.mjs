// Overhead: the full worker pipeline (micro-batcher, fleet limiter reservation + settle in Redis,
// breaker, cost, response-cache miss, result write) against a zero-latency provider, versus a raw
// BullMQ Worker whose processor returns at once. Same Redis, same jobs, same count, same
// concurrency, one process each. Rounds alternate the order; the figure is the median round.
//
// A second, informational baseline: the same raw BullMQ Worker calling the same emulator through the
// SDK (no limiter, breaker, cache, cost or batching): what the provider call alone costs.
//
// The "provider" is the Gemini emulator in a separate process over loopback HTTP through the real
// SDK (EMULATOR_LATENCY_MS=0): stricter than an in-process zero-latency provider, since each call
// still costs an HTTP request/response and JSON on both sides.
import {
  cpuSeconds, enqueueJobs, redisPid, fmt, log, median, openQueue, redisClient, row, runBench, startEmulatorProcess, startRawWorkers, startRedis,
  startWorkers, stopAll, uniquePrefix, watchFinished, workerEnv,
} from './lib.mjs';

await runBench('overhead', async ({ smoke }) => {
  const jobs = smoke ? 800 : 5_000;
  const rounds = smoke ? 1 : 3;
  const redis = await startRedis();
  const emulator = await startEmulatorProcess({ latencyMs: 0 });
  const client = redisClient(redis.url);
  const redisProcess = await redisPid(client);

  async function measure(variant) {
    const prefix = uniquePrefix(`ov${variant}`);
    const queue = openQueue(client, prefix);
    await enqueueJobs(queue, client, prefix, jobs);
    const env = workerEnv({
      redisUrl: redis.url,
      prefix,
      emulatorUrl: emulator.url,
      // Limits far above what the run can use: the limiter reserves and settles every batch in Redis.
      extra: { GEMINI_RPM: '100000000', GEMINI_TPM: '1000000000', RAW_MODE: variant === 'rawsdk' ? 'provider' : 'noop' },
    });
    const procs = variant === 'pipeline' ? await startWorkers(1, env) : await startRawWorkers(1, env);
    const cpu0 = { worker: cpuSeconds(procs[0].pid), emulator: cpuSeconds(emulator.pid), redis: cpuSeconds(redisProcess), t: performance.now() };
    const result = await watchFinished(queue, { warm: Math.round(jobs * 0.1), total: jobs, timeoutMs: smoke ? 30_000 : 60_000 });
    const elapsed = (performance.now() - cpu0.t) / 1000;
    const cpu = { worker: (cpuSeconds(procs[0].pid) - cpu0.worker) / elapsed, emulator: (cpuSeconds(emulator.pid) - cpu0.emulator) / elapsed, redis: (cpuSeconds(redisProcess) - cpu0.redis) / elapsed };
    await stopAll(procs);
    await queue.close();
    await client.flushall();
    if (result.failed > 0) throw new Error(`${variant}: ${result.failed} jobs failed`);
    log(`overhead ${variant}: ${fmt.rate(result.rate)}; CPU: worker ${Math.round(cpu.worker * 100)}%, emulator ${Math.round(cpu.emulator * 100)}%, Redis ${Math.round(cpu.redis * 100)}%`);
    return result.rate;
  }

  const rates = { raw: [], pipeline: [], rawsdk: [] };
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? ['raw', 'pipeline', 'rawsdk'] : ['rawsdk', 'pipeline', 'raw'];
    for (const variant of order) rates[variant].push(await measure(variant));
  }
  await emulator.stop();
  const { raw, pipeline, rawsdk } = rates;
  const ratios = raw.map((r, i) => pipeline[i] / r);
  const ratio = median(ratios);
  const sdkRatio = median(rawsdk.map((r, i) => pipeline[i] / r));
  return [
    row({
      bench: 'Overhead',
      name: `Worker pipeline throughput, 1 process, zero-latency provider (${jobs.toLocaleString('en-US')} jobs, median of ${rounds})`,
      figure: fmt.rate(median(pipeline)),
      baseline: `${fmt.rate(median(raw))} (raw BullMQ, no-op processor)`,
      ratio: fmt.x(ratio),
      target: '≥ 0.50×',
      met: ratio >= 0.5,
      note: `rounds: ${ratios.map((r) => r.toFixed(2)).join(', ')}`,
    }),
    row({
      bench: 'Overhead',
      name: 'Same, against a raw BullMQ worker that makes the same SDK call (informational)',
      figure: fmt.rate(median(pipeline)),
      baseline: `${fmt.rate(median(rawsdk))} (raw BullMQ + SDK call to the same emulator, no limiter/cache/cost)`,
      ratio: fmt.x(sdkRatio),
      target: '—',
      met: null,
      note: 'what the pipeline costs beyond the provider call itself',
    }),
  ];
});
