// Memory: RSS (VmRSS from /proc/<pid>/status) of one worker process after a warm-up of WARMUP jobs,
// then after JOBS more jobs, zero-latency provider (emulator process). Each sample is taken once the
// queue is drained and the worker idle for a moment (median of 5 samples 200 ms apart). Growth =
// after / before − 1. Peak RSS during the run is reported beside it. The run is capped in time;
// the row says how many jobs actually went through.
import {
  enqueueJobs, finishedCount, fmt, log, median, openQueue, redisClient, row, rssBytes, runBench, sleep, startEmulatorProcess,
  startRedis, startWorkers, uniquePrefix, watchFinished, workerEnv,
} from './lib.mjs';

await runBench('memory', async ({ smoke }) => {
  const warmup = smoke ? 500 : 5_000;
  const jobs = smoke ? 2_000 : 100_000;
  const capMs = smoke ? 30_000 : 200_000;
  const redis = await startRedis();
  const emulator = await startEmulatorProcess({ latencyMs: 0 });
  const client = redisClient(redis.url);
  const prefix = uniquePrefix('mem');
  const queue = openQueue(client, prefix);
  const env = workerEnv({ redisUrl: redis.url, prefix, emulatorUrl: emulator.url, extra: { GEMINI_RPM: '100000000', GEMINI_TPM: '1000000000' } });
  const [worker] = await startWorkers(1, env);

  const settledRss = async () => {
    await sleep(1_000);
    const samples = [];
    for (let i = 0; i < 5; i++) {
      samples.push(rssBytes(worker.pid));
      await sleep(200);
    }
    return median(samples);
  };

  await enqueueJobs(queue, client, prefix, warmup);
  await watchFinished(queue, { warm: 0, total: warmup, timeoutMs: 120_000 });
  const before = await settledRss();
  log(`memory: RSS after ${warmup} warm-up jobs ${fmt.mib(before)}`);

  // Enqueue in slices while the worker runs, so the backlog (Redis) stays moderate.
  const started = performance.now();
  let peak = before;
  let enqueued = 0;
  let done = 0;
  while (done < jobs && performance.now() - started < capMs) {
    const { total } = await finishedCount(queue);
    done = total - warmup;
    if (enqueued - done < 5_000 && enqueued < jobs) {
      const n = Math.min(5_000, jobs - enqueued);
      await enqueueJobs(queue, client, prefix, n, { start: warmup + enqueued });
      enqueued += n;
    }
    peak = Math.max(peak, rssBytes(worker.pid));
    await sleep(250);
  }
  const capped = done < jobs;
  if (capped) {
    // Time is up: stop feeding, let what is queued drain, count what went through.
    await queue.pause();
    await queue.drain();
    await sleep(2_000);
  }
  const final = await finishedCount(queue);
  const processed = final.total - warmup;
  const seconds = (performance.now() - started) / 1000;
  const after = await settledRss();
  await worker.stop();
  await emulator.stop();
  if (final.failed > 0) throw new Error(`${final.failed} jobs failed`);
  const growth = after / before - 1;
  log(`memory: RSS after ${processed} more jobs ${fmt.mib(after)} (${fmt.pct(growth)}), peak ${fmt.mib(peak)}, ${fmt.rate(processed / seconds)}`);
  return [
    row({
      bench: 'Memory',
      name: `Worker RSS growth over ${processed.toLocaleString('en-US')} jobs${capped ? ` (time cap ${capMs / 1000} s; target size ${jobs.toLocaleString('en-US')})` : ''}, zero-latency provider`,
      figure: `${fmt.pct(growth, 2)} (${fmt.mib(before)} → ${fmt.mib(after)})`,
      baseline: `${fmt.mib(before)} after ${warmup.toLocaleString('en-US')} warm-up jobs`,
      ratio: `${(after / before).toFixed(3)}×`,
      target: '≤ 10%',
      met: growth <= 0.1,
      note: `peak ${fmt.mib(peak)} during the run; ${fmt.rate(processed / seconds)}`,
    }),
  ];
});
