// In-flight capacity: how many slow calls ONE worker process keeps in flight. Provider latency
// 2 s ± 1 s (emulator process: EMULATOR_LATENCY_MS=1000 plus a uniform jitter in [0, 2000) ms, mean
// 2 s), no quota anywhere (no limits configured, none in the emulator), one worker process at
// concurrency 256, 1,024 and 4,096 (batch size stays at its default 16). Each level starts on a
// backlog that a feeder keeps topped up, skips a warm-up (the worker fetching its first jobs and
// their first calls coming back), then counts completions over a fixed interval.
//   figure    jobs/s against the ideal concurrency ÷ mean latency; CPU seconds of the worker
//             process per job (utime + stime from /proc/<pid>/stat over the interval); peak VmRSS of
//             the worker process (/proc/<pid>/status, sampled every 250 ms from start to end)
//   baseline  the same measures, same run, same emulator, for a raw BullMQ Worker process
//             (bench/raw-worker.mjs, RAW_MODE=provider) at the same concurrency making the same
//             @google/generative-ai call on Node's default fetch dispatcher: no batching, limiter,
//             budgets, cache, audit or job-end recording
// The emulator's in-flight gauge (GET /__admin/counters → inFlight.peak) shows how many calls were
// held at once over the interval.
// Both processes run with the heap cap the Helm chart gives a worker (worker.maxHeapMiB: 256 MiB,
// NODE_OPTIONS=--max-old-space-size), raised to concurrency ÷ 4 MiB above 1,024 as
// docs/running-at-scale.md sizes it: without a cap, Node sizes the heap from this machine's 24 GiB
// and lets garbage reach hundreds of MiB before a full GC (`--heap=default` shows it).
import { cpus, loadavg } from 'node:os';
import {
  cpuSeconds, enqueueJobs, finishedCount, fmt, log, machineCpuSeconds, openQueue, redisClient, row, rssBytes, runBench, sleep,
  startEmulatorProcess, startRawWorkers, startRedis, startWorkers, stopAll, uniquePrefix, workerEnv,
} from './lib.mjs';

/** The worker's heap cap at a concurrency, MiB: the chart's default, more above 1,024 in flight. */
const heapCapMiB = (concurrency) => Math.max(256, Math.ceil(concurrency / 4));

await runBench('capacity', async ({ smoke, levels: levelsArg, 'warm-s': warmArg, 'measure-s': measureArg, baseline: baselineArg, heap: heapArg }) => {
  // Smoke: one small level at a tenth of the latency, so CI exercises every step in seconds.
  const baseMs = smoke ? 100 : 1_000;
  const jitterMs = smoke ? 200 : 2_000;
  const meanS = (baseMs + jitterMs / 2) / 1000;
  const levels = typeof levelsArg === 'string' ? levelsArg.split(',').map(Number) : smoke ? [64] : [256, 1_024, 4_096];
  // --levels=256,1024  --warm-s=8  --measure-s=30  --baseline=no: for exploring; run.mjs passes none.
  const warmMs = warmArg ? Number(warmArg) * 1000 : smoke ? 1_500 : 8_000;
  const measureMs = measureArg ? Number(measureArg) * 1000 : smoke ? 3_000 : 30_000;
  const withBaseline = baselineArg !== 'no';
  const nodeOptions = (concurrency) => (heapArg === 'default' ? {} : { NODE_OPTIONS: `--max-old-space-size=${heapCapMiB(concurrency)}` });
  const redis = await startRedis();
  const emulator = await startEmulatorProcess({ latencyMs: baseMs, jitterMs });
  const client = redisClient(redis.url);

  /** One process (ours or the raw baseline) at `concurrency` on a fresh queue. */
  async function measure(kind, concurrency) {
    const prefix = uniquePrefix(`cap${kind[0]}${concurrency}`);
    const queue = openQueue(client, prefix);
    // Never run dry: at least two concurrencies' worth queued, topped up in slices.
    const low = Math.max(500, 2 * concurrency);
    const slice = Math.max(500, concurrency);
    let added = 0;
    const add = async (count) => {
      await enqueueJobs(queue, client, prefix, count, { start: added });
      added += count;
    };
    await add(low + slice);
    let feeding = true;
    let ranDry = false;
    const feeder = (async () => {
      while (feeding) {
        const waiting = await queue.count();
        if (waiting === 0) ranDry = true;
        if (waiting < low) await add(slice);
        await sleep(100);
      }
    })();
    // Limits configured far above the run, as in production (the limiter reserves and settles every
    // batch in Redis, but never binds); with none the limiter would slow-start an unknown quota.
    const env = workerEnv({ redisUrl: redis.url, prefix, emulatorUrl: emulator.url, extra: { GEMINI_RPM: '100000000', GEMINI_TPM: '1000000000', ...(process.env.CAPACITY_WORKER_ENV ? JSON.parse(process.env.CAPACITY_WORKER_ENV) : {}) } });
    const [proc] =
      kind === 'ours'
        ? await startWorkers(1, { ...env, ...nodeOptions(concurrency), WORKER_CONCURRENCY: String(concurrency) })
        : await startRawWorkers(1, { ...env, ...nodeOptions(concurrency), RAW_MODE: 'provider', RAW_CONCURRENCY: String(concurrency) });
    let peakRss = 0;
    const sampler = setInterval(() => {
      try {
        peakRss = Math.max(peakRss, rssBytes(proc.pid));
      } catch {
        // exiting
      }
    }, 250);
    await sleep(warmMs);
    await emulator.client.reset();
    const c1 = await finishedCount(queue);
    const t1 = performance.now();
    const cpu1 = cpuSeconds(proc.pid);
    const emu1 = cpuSeconds(emulator.pid);
    const machine1 = machineCpuSeconds();
    ranDry = false;
    await sleep(measureMs);
    const c2 = await finishedCount(queue);
    const t2 = performance.now();
    const cpu2 = cpuSeconds(proc.pid);
    const emu2 = cpuSeconds(emulator.pid);
    const machine2 = machineCpuSeconds();
    const counters = await emulator.client.counters();
    clearInterval(sampler);
    feeding = false;
    await feeder;
    await stopAll([proc]);
    await queue.close();
    await client.flushall();
    if (c2.failed > c1.failed) throw new Error(`${kind} at ${concurrency}: ${c2.failed - c1.failed} jobs failed`);
    if (ranDry) throw new Error(`${kind} at ${concurrency}: the backlog ran out during the interval; the figure would be too low`);
    const seconds = (t2 - t1) / 1000;
    const jobs = c2.total - c1.total;
    const result = {
      rate: jobs / seconds,
      ideal: concurrency / meanS,
      cpuPerJobMs: ((cpu2 - cpu1) * 1000) / Math.max(1, jobs),
      processCpu: (cpu2 - cpu1) / seconds,
      emulatorCpu: (emu2 - emu1) / seconds,
      machineCpu: (machine2 - machine1) / seconds,
      peakRss,
      peakInFlight: counters.inFlight?.peak ?? NaN,
      errors: counters.totals.errors4xx + counters.totals.errors5xx,
    };
    log(
      `capacity ${kind} @${concurrency}: ${fmt.rate(result.rate)} = ${fmt.pct(result.rate / result.ideal)} of ${fmt.rate(result.ideal)}, ` +
        `${result.cpuPerJobMs.toFixed(2)} ms CPU/job (process ${Math.round(result.processCpu * 100)}%, emulator ${Math.round(result.emulatorCpu * 100)}%, ` +
        `machine ${Math.round(result.machineCpu * 100)}% of ${cpus().length * 100}%), peak RSS ${fmt.mib(peakRss)}, emulator in flight ≤ ${result.peakInFlight}, load ${loadavg()[0].toFixed(1)}`,
    );
    return result;
  }

  const describe = (r) => `${fmt.rate(r.rate)} = ${fmt.pct(r.rate / r.ideal)} of ideal; ${r.cpuPerJobMs.toFixed(2)} ms CPU/job; peak RSS ${fmt.mib(r.peakRss)}`;
  const rows = [];
  const loadStart = loadavg()[0];
  for (const concurrency of levels) {
    const ours = await measure('ours', concurrency);
    const raw = withBaseline ? await measure('raw', concurrency) : { rate: NaN, ideal: NaN, cpuPerJobMs: NaN, peakRss: NaN, processCpu: NaN, peakInFlight: NaN };
    const target = concurrency === 1_024 && !smoke;
    const met = target ? ours.rate >= 0.9 * ours.ideal && ours.peakRss < 400 * 1024 * 1024 : null;
    rows.push(
      row({
        bench: 'Capacity',
        name: `One worker process at concurrency ${concurrency.toLocaleString('en-US')}, provider latency ${fmt.ms(baseMs + jitterMs / 2)} ± ${fmt.ms(jitterMs / 2)}, no quota: jobs/s vs ideal ${fmt.rate(ours.ideal)} (concurrency ÷ mean latency)`,
        figure: describe(ours),
        baseline: `raw BullMQ worker + SDK call: ${describe(raw)}`,
        ratio: `${fmt.pct(ours.rate / ours.ideal)} of ideal (raw ${fmt.pct(raw.rate / raw.ideal)})`,
        target: target ? `≥ 90% of ${fmt.rate(ours.ideal)}, RSS < 400 MiB` : '—',
        met,
        note:
          `emulator held up to ${ours.peakInFlight} calls at once (raw: ${raw.peakInFlight}); worker process CPU ${Math.round(ours.processCpu * 100)}% ` +
          `(raw ${Math.round(raw.processCpu * 100)}%), emulator ${Math.round(ours.emulatorCpu * 100)}%, machine ${Math.round(ours.machineCpu * 100)}% of ${cpus().length * 100}%; ` +
          `heap cap ${heapArg === 'default' ? "Node's default" : `${heapCapMiB(concurrency)} MiB`} for both; ` +
          `counted over ${measureMs / 1000} s after ${warmMs / 1000} s warm-up; load average ${loadStart.toFixed(1)} at start`,
      }),
    );
  }
  await emulator.stop();
  return rows;
});
