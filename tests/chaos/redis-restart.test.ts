// Chaos: Redis SIGKILLed mid-run and started again from its AOF. The producer must answer 503
// REDIS_UNAVAILABLE while it is gone and never crash; no accepted job may be lost; the workers must
// resume within 5 s of Redis returning.
//
// Honest about persistence: with `appendfsync everysec` (the setting, and startTestRedis's)
// Redis may lose up to ~1 s of acknowledged writes when it is killed, so that test only promises
// the jobs accepted more than 1.5 s before the kill. The `appendfsync always` test promises every
// job that got a 202, up to the instant of the kill.
import { afterEach, beforeAll, afterAll, describe, expect, it } from 'vitest';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createRedis, queuePrefix, waitForRedis } from '@prompt-queue/shared';
import { uniquePrefix, waitFor, type ServiceProcess } from '@prompt-queue/shared/testing';
import {
  AUTH,
  assertBuilt,
  baseEnv,
  finishedCounts,
  getJob,
  histogram,
  isAlive,
  mapLimit,
  report,
  startControlledRedis,
  startProducer,
  startWorker,
  submitBulk,
  type ControlledRedis,
  type JobView,
} from './helpers.js';

const OUTAGE_MS = 3_000;
const RESUME_BOUND_MS = 5_000;
const FINISHED = new Set(['completed', 'failed', 'cancelled']);

/** Polls the producer API for every id until all are finished; 404s (lost jobs) are kept as such. */
async function waitAllFinished(api: string, ids: readonly string[], timeoutMs: number): Promise<Map<string, { http: number; view: JobView }>> {
  const latest = new Map<string, { http: number; view: JobView }>();
  let pending = [...ids];
  const deadline = Date.now() + timeoutMs;
  while (pending.length > 0 && Date.now() < deadline) {
    const answers = await mapLimit(pending, 16, async (id) => ({ id, ...(await getJob(api, id)) }));
    for (const { id, status, view } of answers) latest.set(id, { http: status, view });
    // A 404 is final (the job is gone); anything unfinished or a transient answer is asked again.
    pending = answers.filter(({ status, view }) => status !== 404 && !(status === 200 && FINISHED.has(view.status))).map(({ id }) => id);
    if (pending.length > 0) await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return latest;
}

/** Everything the producer answers while Redis is gone: POST, GET, /readyz must be 503; /healthz 200. */
async function probeOutage(api: string, knownId: string, minMs: number): Promise<{ statuses: Record<string, number>; bad: string[]; probes: number; maxPostMs: number }> {
  const started = Date.now();
  const seen: string[] = [];
  const bad: string[] = [];
  let probes = 0;
  let maxPostMs = 0;
  while (Date.now() - started < minMs || probes < 10) {
    const t0 = Date.now();
    const post = await fetch(`${api}/v1/jobs`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: 'sent while Redis is down' }),
    });
    maxPostMs = Math.max(maxPostMs, Date.now() - t0);
    const postBody = (await post.json()) as { error?: { code?: string } };
    const get = await fetch(`${api}/v1/jobs/${knownId}`, { headers: AUTH });
    const getBody = (await get.json()) as { error?: { code?: string } };
    const healthz = await fetch(`${api}/healthz`);
    const readyz = await fetch(`${api}/readyz`);
    await Promise.all([healthz.arrayBuffer(), readyz.arrayBuffer()]);
    probes += 1;
    seen.push(`POST ${post.status} ${postBody.error?.code ?? ''}`, `GET ${get.status} ${getBody.error?.code ?? ''}`, `healthz ${healthz.status}`, `readyz ${readyz.status}`);
    if (post.status !== 503 || postBody.error?.code !== 'REDIS_UNAVAILABLE') bad.push(`POST /v1/jobs → ${post.status} ${JSON.stringify(postBody)}`);
    if (get.status !== 503 || getBody.error?.code !== 'REDIS_UNAVAILABLE') bad.push(`GET /v1/jobs/:id → ${get.status} ${JSON.stringify(getBody)}`);
    if (healthz.status !== 200) bad.push(`/healthz → ${healthz.status}`);
    if (readyz.status !== 503) bad.push(`/readyz → ${readyz.status}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { statuses: histogram(seen.map((s) => s.trim())), bad, probes, maxPostMs };
}

/** Time from `since` until BullMQ's completed set grows past `baseline` (a worker finished a job). */
async function firstCompletionAfter(probe: ReturnType<typeof createRedis>, prefix: string, baseline: number, since: number): Promise<number> {
  await waitFor(async () => (await probe.zcard(`${queuePrefix(prefix)}:prompts:completed`)) > baseline, {
    timeoutMs: 30_000,
    intervalMs: 20,
    what: 'the first completion after Redis returned',
  });
  return Date.now() - since;
}

async function waitForProducerBack(api: string, since: number): Promise<{ ms: number; id: string }> {
  const id = await waitFor(
    async () => {
      const res = await fetch(`${api}/v1/jobs`, {
        method: 'POST',
        headers: { ...AUTH, 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'sent after Redis returned' }),
      });
      const body = (await res.json()) as { id?: string };
      return res.status === 202 ? body.id : undefined;
    },
    { timeoutMs: 15_000, intervalMs: 50, what: 'the producer to accept jobs again' },
  );
  return { ms: Date.now() - since, id };
}

describe('chaos: Redis killed and restarted mid-run (AOF)', () => {
  let emulator: EmulatorProcess;
  let redis: ControlledRedis | undefined;
  let probe: ReturnType<typeof createRedis> | undefined;
  const processes: ServiceProcess[] = [];

  beforeAll(async () => {
    assertBuilt();
    // 100 ms per call keeps a backlog in the queue when Redis goes away.
    emulator = await startEmulatorProcess({ latencyMs: 100 });
  });
  afterEach(async () => {
    probe?.disconnect();
    await Promise.all(processes.splice(0).map((proc) => proc.stop('SIGKILL')));
    await redis?.stop();
    redis = undefined;
  });
  afterAll(async () => {
    await emulator?.stop();
  });

  /** The current connection for reading BullMQ's sets (replaced after each restart). */
  const db = () => probe!;

  /** A fresh connection to the restarted server (the old one is still backing off). */
  async function reconnect(url: string): Promise<void> {
    probe?.disconnect();
    probe = createRedis(url, 'producer');
    probe.on('error', () => {});
    await waitForRedis(probe, 5_000);
  }

  async function stack(appendfsync: 'always' | 'everysec', label: string) {
    await emulator.client.reset();
    redis = await startControlledRedis({ appendfsync });
    const prefix = uniquePrefix(label);
    const env = baseEnv(redis.url, prefix, emulator, { WORKER_CONCURRENCY: '8', LOCK_DURATION_MS: '3000', JOB_ATTEMPTS: '10' });
    const producer = await startProducer(env);
    const workers = await Promise.all([startWorker(env), startWorker(env)]);
    processes.push(producer.proc, ...workers);
    probe = createRedis(redis.url, 'producer');
    probe.on('error', () => {});
    return { prefix, producer, workers, redis };
  }

  it('everysec: keeps every job accepted ≥ 1.5 s before the kill; 503 while down; workers resume ≤ 5 s', async () => {
    const { prefix, producer, workers, redis } = await stack('everysec', 'chaosaofsec');
    const JOBS = 1_200;
    const ids = await submitBulk(producer.url, Array.from({ length: JOBS }, (_, i) => ({ prompt: `aof everysec job ${i}` })));
    const lastAccepted = Date.now();

    // Mid-run: some jobs done, most still queued, and the last 202 older than everysec's window.
    await waitFor(async () => (await finishedCounts(db(), prefix)).completed >= 50 && Date.now() - lastAccepted >= 1_500, {
      timeoutMs: 20_000,
      what: 'the run to be under way and the last 202 to be 1.5 s old',
    });
    const beforeKill = await finishedCounts(db(), prefix);
    expect(beforeKill.completed, 'the backlog ran out before the kill: nothing was tested').toBeLessThan(JOBS - 200);

    await redis.kill();
    const outage = await probeOutage(producer.url, ids[0]!, OUTAGE_MS);
    expect(isAlive(producer.proc)).toBe(true);

    await redis.start();
    const back = Date.now();
    await reconnect(redis.url);
    const baseline = await db().zcard(`${queuePrefix(prefix)}:prompts:completed`);
    const [resumeMs, producerBack] = await Promise.all([firstCompletionAfter(db(), prefix, baseline, back), waitForProducerBack(producer.url, back)]);

    const all = [...ids, producerBack.id];
    const views = await waitAllFinished(producer.url, all, 60_000);
    const lost = all.filter((id) => views.get(id)?.http === 404);
    const byStatus = histogram(all.map((id) => views.get(id)?.view.status ?? `http ${views.get(id)?.http}`));
    const counters = await emulator.client.counters();
    report('redis-restart everysec', {
      jobs: all.length,
      completedBeforeKill: beforeKill.completed,
      completedInAofAfterRestart: baseline,
      outageMs: OUTAGE_MS,
      outageProbes: outage.probes,
      outageAnswers: outage.statuses,
      slowestPostWhileDownMs: outage.maxPostMs,
      workerResumeMs: resumeMs,
      producerAcceptsAgainMs: producerBack.ms,
      lost: lost.length,
      byStatus,
      providerCalls: counters.totalCalls,
      extraCalls: counters.totalCalls - all.length,
    });

    expect(outage.bad.slice(0, 5)).toEqual([]);
    expect(lost).toEqual([]);
    expect(byStatus).toEqual({ completed: all.length });
    expect(resumeMs).toBeLessThanOrEqual(RESUME_BOUND_MS);
    expect(isAlive(producer.proc)).toBe(true);
    expect(workers.every(isAlive)).toBe(true);
    expect((await fetch(`${producer.url}/healthz`)).status).toBe(200);
  });

  it('always: keeps every job that got a 202, even in the last instant before the kill', async () => {
    const { prefix, producer, workers, redis } = await stack('always', 'chaosaofall');
    // Four clients submit single jobs without pause, before, during and after the outage.
    const accepted: string[] = [];
    const answers: string[] = [];
    let lastAcceptedBeforeKill = 0;
    let killed = false;
    let stop = false;
    const clients = Array.from({ length: 4 }, async (_, client) => {
      for (let n = 0; !stop; n++) {
        try {
          const res = await fetch(`${producer.url}/v1/jobs`, {
            method: 'POST',
            headers: { ...AUTH, 'content-type': 'application/json' },
            body: JSON.stringify({ prompt: `aof always client ${client} job ${n}` }),
          });
          const body = (await res.json()) as { id?: string; error?: { code?: string } };
          answers.push(`${res.status} ${body.error?.code ?? ''}`.trim());
          if (res.status === 202 && body.id) {
            accepted.push(body.id);
            if (!killed) lastAcceptedBeforeKill = Date.now();
          } else if (res.status === 503) {
            await new Promise((resolve) => setTimeout(resolve, 50));
          }
        } catch (error) {
          answers.push(`network error ${String(error)}`);
        }
      }
    });

    await waitFor(async () => accepted.length >= 300 && (await finishedCounts(db(), prefix)).completed >= 20, {
      timeoutMs: 20_000,
      what: 'jobs flowing',
    });
    const acceptedBeforeKill = accepted.length;
    await redis.kill();
    const killedAt = Date.now();
    killed = true;
    await waitFor(() => Date.now() - killedAt >= 2_000 && answers.filter((a) => a === '503 REDIS_UNAVAILABLE').length >= 20, {
      timeoutMs: 10_000,
      what: '503s while Redis is down',
    });
    const downMs = Date.now() - killedAt;
    expect(isAlive(producer.proc)).toBe(true);
    expect((await fetch(`${producer.url}/healthz`)).status).toBe(200);

    await redis.start();
    const back = Date.now();
    await reconnect(redis.url);
    const baseline = await db().zcard(`${queuePrefix(prefix)}:prompts:completed`);
    const resumeMs = await firstCompletionAfter(db(), prefix, baseline, back);
    await waitFor(() => accepted.length >= acceptedBeforeKill + 50, { timeoutMs: 15_000, what: 'the producer to accept jobs again' });
    stop = true;
    await Promise.all(clients);

    const views = await waitAllFinished(producer.url, accepted, 90_000);
    const lost = accepted.filter((id) => views.get(id)?.http === 404);
    const byStatus = histogram(accepted.map((id) => views.get(id)?.view.status ?? `http ${views.get(id)?.http}`));
    const counters = await emulator.client.counters();
    report('redis-restart always', {
      accepted: accepted.length,
      acceptedBeforeKill,
      lastAcceptedMsBeforeKill: killedAt - lastAcceptedBeforeKill,
      outageMs: downMs,
      answers: histogram(answers),
      workerResumeMs: resumeMs,
      lost: lost.length,
      byStatus,
      providerCalls: counters.totalCalls,
    });

    expect(answers.filter((a) => !/^(202|503 REDIS_UNAVAILABLE)$/.test(a))).toEqual([]);
    expect(lost).toEqual([]);
    expect(byStatus).toEqual({ completed: accepted.length });
    expect(resumeMs).toBeLessThanOrEqual(RESUME_BOUND_MS);
    expect(isAlive(producer.proc)).toBe(true);
    expect(workers.every(isAlive)).toBe(true);
  });
});
