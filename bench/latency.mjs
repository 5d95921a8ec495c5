// Latency at light load: jobs sent one at a time (the next one after the previous finished and a
// short idle gap). Per job: finishedOn − timestamp − provider time, where timestamp is BullMQ's
// enqueue time (set by the adding client), finishedOn is set by the worker when the job completes,
// and provider time is result.latencyMs (the SDK call as the worker timed it; 0 for the no-op
// baseline). Same machine clock, ms resolution. The first jobs are a warm-up and not counted.
// Baseline: a raw BullMQ Worker whose processor returns at once, same Redis, same job options.
import { Job, QueueEvents } from 'bullmq';
import {
  addJob, fmt, log, openQueue, percentile, promptText, redisClient, row, runBench, sleep, startEmulatorProcess, startRawWorkers,
  startRedis, startWorkers, stopAll, uniquePrefix, workerEnv, QueueName,
} from './lib.mjs';

await runBench('latency', async ({ smoke }) => {
  const warmup = smoke ? 10 : 50;
  const samples = smoke ? 60 : 1_000;
  const redis = await startRedis();
  const emulator = await startEmulatorProcess({ latencyMs: 0 });
  const client = redisClient(redis.url);

  async function measure(variant) {
    const prefix = uniquePrefix(`lat${variant}`);
    const queue = openQueue(client, prefix);
    const events = new QueueEvents(QueueName.Prompts, { connection: { url: redis.url }, prefix });
    await events.waitUntilReady();
    const env = workerEnv({
      redisUrl: redis.url,
      prefix,
      emulatorUrl: emulator.url,
      extra: { GEMINI_RPM: '100000000', GEMINI_TPM: '1000000000', RAW_MODE: 'noop' },
    });
    const procs = variant === 'raw' ? await startRawWorkers(1, env) : await startWorkers(1, env);
    await sleep(500);
    const overheads = [];
    const providerTimes = [];
    for (let i = 0; i < warmup + samples; i++) {
      // One job, as the producer adds it; wait for it to finish.
      const added = await addJob(queue, client, prefix, promptText(`${prefix}-${i}`));
      await added.waitUntilFinished(events, 10_000);
      const job = await Job.fromId(queue, added.id);
      const provider = variant === 'raw' ? 0 : Number(job.returnvalue?.latencyMs ?? NaN);
      if (i >= warmup) {
        overheads.push(job.finishedOn - job.timestamp - provider);
        providerTimes.push(provider);
      }
      await sleep(5 + (i % 4) * 5); // idle between jobs: light load
    }
    await stopAll(procs);
    await events.close();
    await queue.close();
    await client.flushall();
    overheads.sort((a, b) => a - b);
    providerTimes.sort((a, b) => a - b);
    const result = { p50: percentile(overheads, 50), p99: percentile(overheads, 99), max: overheads.at(-1), providerP50: percentile(providerTimes, 50) };
    log(`latency ${variant}: p50 ${result.p50} ms, p99 ${result.p99} ms, max ${result.max} ms, provider p50 ${result.providerP50.toFixed(1)} ms`);
    return result;
  }

  const raw = await measure('raw');
  const pipeline = await measure('pipeline');
  await emulator.stop();
  const note = `${samples} jobs one at a time after ${warmup} warm-up; provider (emulator over loopback, 0 ms latency) median ${pipeline.providerP50.toFixed(1)} ms subtracted; max ${pipeline.max} ms (raw ${raw.max} ms)`;
  return [
    row({
      bench: 'Latency',
      name: 'p50 of completed − enqueued − provider time, light load',
      figure: fmt.ms(pipeline.p50),
      baseline: `${fmt.ms(raw.p50)} (raw BullMQ, no-op)`,
      ratio: `+${fmt.ms(pipeline.p50 - raw.p50)}`,
      target: '≤ 5 ms',
      met: pipeline.p50 <= 5,
      note,
    }),
    row({
      bench: 'Latency',
      name: 'p99 of completed − enqueued − provider time, light load',
      figure: fmt.ms(pipeline.p99),
      baseline: `${fmt.ms(raw.p99)} (raw BullMQ, no-op)`,
      ratio: `+${fmt.ms(pipeline.p99 - raw.p99)}`,
      target: '≤ 20 ms',
      met: pipeline.p99 <= 20,
    }),
  ];
});
