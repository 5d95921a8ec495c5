// Horizontal scale: 1, 2 and 4 worker processes on one queue, provider latency 100 ms (emulator
// process, EMULATOR_LATENCY_MS=100), no quota anywhere. Each run starts on a backlog big enough for
// the whole run, skips a warm-up, then counts completions over a fixed interval. The figure is the
// 4-process throughput over the 1-process one. The machine's CPU use during the interval is
// reported beside it: with 2 cores, workers, emulator and Redis compete for the same CPUs.
import {
  cpuSeconds, enqueueJobs, finishedCount, fmt, log, machineCpuSeconds, openQueue, redisClient, row, runBench, sleep,
  startEmulatorProcess, startRedis, startWorkers, stopAll, uniquePrefix, workerEnv,
} from './lib.mjs';
import { cpus } from 'node:os';

const LATENCY_MS = 100;

await runBench('scale', async ({ smoke }) => {
  const warmMs = smoke ? 1_000 : 4_000;
  const measureMs = smoke ? 2_000 : 12_000;
  const counts = smoke ? [1, 4] : [1, 2, 4];
  const redis = await startRedis();
  const emulator = await startEmulatorProcess({ latencyMs: LATENCY_MS });
  const client = redisClient(redis.url);
  const concurrency = 64; // the worker's default (WORKER_CONCURRENCY)

  async function measure(n) {
    const prefix = uniquePrefix(`sc${n}`);
    const queue = openQueue(client, prefix);
    // The backlog must never run out: start with some, and a feeder tops it up while the run lasts.
    const low = smoke ? 1_500 : 4_000;
    const slice = smoke ? 2_000 : 5_000;
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
    const env = workerEnv({ redisUrl: redis.url, prefix, emulatorUrl: emulator.url, extra: { WORKER_CONCURRENCY: String(concurrency) } });
    const workers = await startWorkers(n, env);
    await sleep(warmMs);
    const pids = [...workers.map((w) => w.pid), emulator.pid];
    const c1 = await finishedCount(queue);
    const t1 = performance.now();
    const cpu1 = machineCpuSeconds();
    const own1 = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    ranDry = false;
    await sleep(measureMs);
    const c2 = await finishedCount(queue);
    const t2 = performance.now();
    const cpu2 = machineCpuSeconds();
    const own2 = pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0);
    feeding = false;
    await feeder;
    await stopAll(workers);
    await queue.close();
    await client.flushall();
    if (c2.failed > 0) throw new Error(`${n} workers: ${c2.failed} jobs failed`);
    if (ranDry) throw new Error(`${n} workers: the backlog ran out during the interval; the figure would be too low`);
    const seconds = (t2 - t1) / 1000;
    const rate = (c2.total - c1.total) / seconds;
    const machineCpu = (cpu2 - cpu1) / seconds;
    const stackCpu = (own2 - own1) / seconds;
    log(`scale ${n}: ${fmt.rate(rate)}, machine CPU ${Math.round(machineCpu * 100)}% of ${cpus().length * 100}%, workers+emulator ${Math.round(stackCpu * 100)}%`);
    return { rate, machineCpu, stackCpu };
  }

  const results = {};
  for (const n of counts) results[n] = await measure(n);
  await emulator.stop();
  const ideal = (concurrency * 1000) / LATENCY_MS;
  const r2 = results[2] ? results[2].rate / results[1].rate : undefined;
  const r4 = results[4].rate / results[1].rate;
  const cores = cpus().length;
  // Machine CPU is everything on the box; "stack" is these workers and the emulator. The difference
  // (minus Redis and the bench itself) is other tenants of a shared machine.
  const cpuNote = (n) => `machine CPU ${Math.round(results[n].machineCpu * 100)}% of ${cores * 100}%, workers+emulator ${Math.round(results[n].stackCpu * 100)}%`;
  return [
    ...(r2 === undefined ? [] : [row({
      bench: 'Horizontal scale',
      name: `2 worker processes vs 1, provider latency ${LATENCY_MS} ms, concurrency ${concurrency}/process`,
      figure: `${fmt.rate(results[2].rate)} (${cpuNote(2)})`,
      baseline: `${fmt.rate(results[1].rate)} (1 process, ${cpuNote(1)}; latency-bound ceiling ${fmt.rate(ideal)})`,
      ratio: fmt.x(r2),
      target: '—',
      met: null,
    })]),
    row({
      bench: 'Horizontal scale',
      name: `4 worker processes vs 1, provider latency ${LATENCY_MS} ms, concurrency ${concurrency}/process`,
      figure: `${fmt.rate(results[4].rate)} (${cpuNote(4)})`,
      baseline: `${fmt.rate(results[1].rate)} (1 process, ${cpuNote(1)})`,
      ratio: fmt.x(r4),
      target: '≥ 3.6×',
      met: r4 >= 3.6,
      note: `${cores} cores shared by the workers, the emulator and Redis; counted over ${measureMs / 1000} s after ${warmMs / 1000} s warm-up`,
    }),
  ];
});
