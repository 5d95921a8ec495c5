// Chaos: worker processes SIGKILLed again and again while 5,000 jobs run. Nothing may be lost, every
// job must end completed (as the producer API shows it), and the provider may see extra calls only
// for work that was in flight in a killed process.
import { afterAll, describe, expect, it } from 'vitest';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createRedis } from '@prompt-queue/shared';
import { startTestRedis, uniquePrefix, waitFor, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';
import {
  assertBuilt,
  baseEnv,
  finishedCounts,
  histogram,
  isAlive,
  getJob,
  readAllJobs,
  report,
  sleep,
  startProducer,
  startWorker,
  submitBulk,
} from './helpers.js';

const JOBS = Number(process.env.CHAOS_KILL_JOBS ?? 5_000);
const WORKERS = 3;
const CONCURRENCY = 16;
const LOCK_DURATION_MS = 3_000;
const SEED = Number(process.env.CHAOS_SEED ?? 20_240_601);

/** mulberry32: a tiny seeded PRNG, so a failing kill schedule can be replayed with CHAOS_SEED. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

describe('chaos: SIGKILL workers during a run', () => {
  let redis: TestRedis | undefined;
  let emulator: EmulatorProcess | undefined;
  const processes: ServiceProcess[] = [];

  afterAll(async () => {
    await Promise.all(processes.map((proc) => proc.stop('SIGKILL')));
    await emulator?.stop();
    await redis?.stop();
  });

  it(`loses none of ${JOBS} jobs; extra provider calls ≤ kills × WORKER_CONCURRENCY`, async () => {
    assertBuilt();
    const random = seeded(SEED);
    [redis, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess({ latencyMs: 20 })]);
    const prefix = uniquePrefix('chaoskill');
    const env = baseEnv(redis.url, prefix, emulator, {
      WORKER_CONCURRENCY: String(CONCURRENCY),
      LOCK_DURATION_MS: String(LOCK_DURATION_MS),
      SHUTDOWN_TIMEOUT_MS: '2000',
    });
    const producer = await startProducer(env);
    processes.push(producer.proc);
    const workers = await Promise.all(Array.from({ length: WORKERS }, () => startWorker(env)));
    processes.push(...workers);
    const probe = createRedis(redis.url, 'worker');

    try {
      const started = Date.now();
      const ids = await submitBulk(
        producer.url,
        Array.from({ length: JOBS }, (_, i) => ({ prompt: `chaos kill job ${i}`, metadata: { n: i } })),
      );
      expect(new Set(ids).size).toBe(JOBS);

      // Every 1–2 s: SIGKILL one running worker at random and start its replacement at once (in
      // the background: the next kill does not wait for it to be ready). Kills stop once every job
      // has finished.
      const fleet: (ServiceProcess | undefined)[] = [...workers];
      let done = false;
      let kills = 0;
      const replacements: Promise<void>[] = [];
      const killer = (async () => {
        while (!done) {
          await sleep(1_000 + Math.floor(random() * 1_000));
          if (done) break;
          const running = fleet.flatMap((proc, index) => (proc && isAlive(proc) ? [index] : []));
          if (running.length === 0) continue;
          const index = running[Math.floor(random() * running.length)]!;
          const victim = fleet[index]!;
          fleet[index] = undefined;
          victim.child.kill('SIGKILL');
          await victim.exited;
          kills += 1;
          replacements.push(
            startWorker(env).then((replacement) => {
              processes.push(replacement);
              fleet[index] = replacement;
            }),
          );
        }
        await Promise.all(replacements);
      })();

      let finished = { completed: 0, failed: 0 };
      try {
        await waitFor(
          async () => {
            finished = await finishedCounts(probe, prefix);
            return finished.completed + finished.failed >= JOBS;
          },
          { timeoutMs: 180_000, intervalMs: 200, what: `all ${JOBS} jobs finished (seed ${SEED})` },
        );
      } finally {
        done = true;
        await killer;
      }
      const runMs = Date.now() - started;

      // The producer's view of every job.
      const { views, byStatus, httpErrors } = await readAllJobs(producer.url, ids);
      const counters = await emulator.client.counters();
      const calls = counters.totalCalls;
      const extraCalls = calls - JOBS;
      const bound = kills * CONCURRENCY;
      const failures = histogram(views.filter((v) => v.status === 'failed').map((v) => v.error?.code ?? '?'));
      const failedMessages = [...new Set(views.filter((v) => v.status === 'failed').map((v) => v.error?.message))];
      report('worker-kill', {
        seed: SEED,
        jobs: JOBS,
        workers: WORKERS,
        concurrency: CONCURRENCY,
        lockDurationMs: LOCK_DURATION_MS,
        kills,
        runMs,
        byStatus,
        failedCodes: failures,
        failedMessages,
        providerCalls: calls,
        extraCalls,
        extraCallsBound: bound,
        providerStatuses: counters.byStatus,
        attempts: histogram(views.map((v) => v.attempts)),
      });

      expect(httpErrors).toEqual([]);
      expect(isAlive(producer.proc)).toBe(true);
      expect(kills, 'the run ended before any worker was killed: nothing was tested').toBeGreaterThanOrEqual(3);
      // A job whose worker dies twice while holding it fails with BullMQ's "job stalled more than
      // allowable limit" (maxStalledCount, default 1): a lost job. See docs/reliability.md.
      expect.soft(finished.failed, `failed jobs (seed ${SEED}): ${JSON.stringify(failures)} ${JSON.stringify(failedMessages)}`).toBe(0);
      expect.soft(byStatus).toEqual({ completed: JOBS });
      expect(views.filter((v) => v.status === 'completed').every((v) => typeof v.result?.text === 'string' && v.result.text.length > 0)).toBe(true);
      expect(calls).toBeGreaterThanOrEqual(JOBS);
      expect(extraCalls, `extra provider calls ${extraCalls} > kills ${kills} × concurrency ${CONCURRENCY}`).toBeLessThanOrEqual(bound);
    } finally {
      probe.disconnect();
    }
  });
});

// The deterministic form of what the run above hits by chance: one job whose worker is SIGKILLed
// twice while it holds it. BullMQ's default maxStalledCount (1) then fails the job with "job stalled
// more than allowable limit" instead of handing it to the next worker.
describe('chaos: the same job survives two worker crashes', () => {
  let redis: TestRedis | undefined;
  let emulator: EmulatorProcess | undefined;
  const processes: ServiceProcess[] = [];

  afterAll(async () => {
    await Promise.all(processes.map((proc) => proc.stop('SIGKILL')));
    await emulator?.stop();
    await redis?.stop();
  });

  it('a job held by two workers in turn, both SIGKILLed mid-call, is completed by a third', async () => {
    assertBuilt();
    // Calls take 60 s until the end: a worker holds the job for as long as we need.
    [redis, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess({ latencyMs: 60_000 })]);
    const env = baseEnv(redis.url, uniquePrefix('chaosstall'), emulator, { LOCK_DURATION_MS: '2000', GEMINI_TIMEOUT_MS: '120000' });
    const producer = await startProducer(env);
    processes.push(producer.proc);
    const [id] = await submitBulk(producer.url, [{ prompt: 'crash me twice' }]);

    for (let crash = 1; crash <= 2; crash++) {
      const worker = await startWorker(env);
      processes.push(worker);
      // The job's provider call from this worker is in flight.
      await waitFor(async () => (await emulator!.client.counters()).totalCalls >= crash, { timeoutMs: 20_000, what: `call ${crash} in flight` });
      worker.child.kill('SIGKILL');
      await worker.exited;
    }
    await emulator.client.setLatency(0);
    processes.push(await startWorker(env));

    const view = await waitFor(
      async () => {
        const { view } = await getJob(producer.url, id!);
        return view.status === 'completed' || view.status === 'failed' ? view : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: 'the job to finish' },
    );
    report('worker-kill twice', { status: view.status, error: view.error, providerCalls: (await emulator.client.counters()).totalCalls });
    expect(view.error?.message ?? '').not.toMatch(/stalled/);
    expect(view.status).toBe('completed');
  });
});
