// Issue 10, "Done when": every way a job ends is recorded once, by one recorder
// (packages/shared/src/lifecycle/job-ends.ts): exactly one audit line, one usage record and one
// final live event per job, whichever process ends it. Real processes: Redis, the Gemini emulator,
// the producer and workers, each service with its own AUDIT_LOG file.
//
// Each case has its own tenant and its own model, so its usage counters and event stream hold only
// its job, and an emulator fault aimed at its model touches no other case. The last test stops every
// process (flushing the audit files) and checks that no late or extra record appeared.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createRedis, isFinalJobEvent, queuePrefix, QueueName, readJobEvents, UsageLedger, type StoredJobEvent } from '@prompt-queue/shared';
import { startServiceProcess, startTestRedis, uniquePrefix, waitFor, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const PRODUCER_MAIN = join(root, 'apps/producer/dist/main.js');
const WORKER_MAIN = join(root, 'apps/worker/dist/main.js');
const READY_LINE = /listening on (http:\/\/\S+)/;
/** Attempts of a retryable failure (JOB_ATTEMPTS), small so "failed after attempts" is quick. */
const ATTEMPTS = 3;
/** BullMQ job lock (LOCK_DURATION_MS): a SIGKILLed worker's job is retaken within about two of these. */
const LOCK_DURATION_MS = 2_000;
/** A job may lose its lock once and is retaken; the second loss fails it (MAX_STALLED_COUNT). */
const MAX_STALLED_COUNT = 1;

/** One tenant (API key) and one model per case: counters, streams and faults never mix. */
const CASES = {
  completed: { tenant: 'served', model: 'gemini-2.5-flash' },
  failedAtOnce: { tenant: 'refused', model: 'gemini-2.5-flash-lite' },
  failedAfterAttempts: { tenant: 'flaky', model: 'gemini-2.5-pro' },
  cancelled: { tenant: 'changed-mind', model: 'gemini-3.6-flash' },
  invalidPayload: { tenant: 'broken', model: 'gemini-3.5-flash-lite' },
  stallExhausted: { tenant: 'crashy', model: 'gemini-3.5-flash' },
} as const;
const keyOf = (tenant: string) => `${tenant}-key`;

interface AuditLine {
  tenant: string;
  jobId: string;
  outcome: 'completed' | 'failed' | 'cancelled';
  errorCode?: string;
  attempt: number;
  provider: string;
  model: string;
}

interface JobView {
  id: string;
  status: string;
  attempts: number;
  error?: { code: string };
}

describe('every end path is recorded once: one audit line, one usage record, one final event', () => {
  let redis: TestRedis;
  let emulator: EmulatorProcess;
  let probe: Redis;
  let queue: Queue;
  let ledger: UsageLedger;
  let producer: ServiceProcess;
  let api: string;
  let env: Record<string, string>;
  let prefix: string;
  let dir: string;
  /** Every service process started, to stop (or reap) at the end. */
  const processes: ServiceProcess[] = [];
  /** The worker serving cases 1–3 and 5; the stall case runs its own. */
  let worker: ServiceProcess | undefined;
  /** Every job each case created, with its tenant: the final check's denominator. */
  const jobs: { id: string; tenant: string }[] = [];
  let serviceCount = 0;

  const startService = async (main: string, name: string, extra: Record<string, string> = {}): Promise<ServiceProcess> => {
    serviceCount += 1;
    const proc = await startServiceProcess({
      args: [main],
      env: { ...env, AUDIT_LOG: join(dir, `${String(serviceCount).padStart(2, '0')}-${name}.audit.jsonl`), ...extra },
      readyLine: READY_LINE,
      timeoutMs: 20_000,
    });
    processes.push(proc);
    return proc;
  };

  beforeAll(async () => {
    [redis, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess()]);
    dir = mkdtempSync(join(tmpdir(), 'pq-job-ends-'));
    prefix = uniquePrefix('ends');
    env = {
      NODE_ENV: 'test',
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      API_KEYS: Object.values(CASES)
        .map(({ tenant }) => `${tenant}:${keyOf(tenant)}`)
        .join(','),
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      PRODUCER_PORT: '0',
      WORKER_PORT: '0',
      LOG_LEVEL: 'warn',
      JOB_ATTEMPTS: String(ATTEMPTS),
      BACKOFF_BASE_MS: '50',
      BACKOFF_MAX_MS: '200',
      LOCK_DURATION_MS: String(LOCK_DURATION_MS),
      MAX_STALLED_COUNT: String(MAX_STALLED_COUNT),
      SHUTDOWN_TIMEOUT_MS: '2000',
      // The stall case's job holds its call for a minute; the call must not time out first.
      GEMINI_TIMEOUT_MS: '120000',
      // A SIGKILLed worker's in-flight cache claim would park the retaken job in `delayed` (not
      // active, so it cannot stall) until the claim lapses: every job must reach the provider.
      RESPONSE_CACHE: 'false',
    };
    probe = createRedis(redis.url, 'worker');
    queue = new Queue(QueueName.Prompts, { connection: probe, prefix: queuePrefix(prefix) });
    ledger = new UsageLedger(probe, prefix);
    producer = await startService(PRODUCER_MAIN, 'producer');
    api = producer.ready[1]!;
    worker = await startService(WORKER_MAIN, 'worker');
  });

  afterAll(async () => {
    await Promise.all(processes.map((proc) => proc.stop('SIGKILL')));
    await queue?.close();
    probe?.disconnect();
    await emulator?.stop();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const enqueue = async (tenant: string, body: Record<string, unknown>): Promise<string> => {
    const response = await fetch(`${api}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${keyOf(tenant)}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    const answer = (await response.json()) as { id?: string };
    expect(response.status, JSON.stringify(answer)).toBe(202);
    jobs.push({ id: answer.id!, tenant });
    return answer.id!;
  };
  const view = async (tenant: string, id: string): Promise<JobView> =>
    (await (await fetch(`${api}/v1/jobs/${id}`, { headers: { authorization: `Bearer ${keyOf(tenant)}` } })).json()) as JobView;

  /** Every audit line of every service (producer and workers alike). */
  const auditLines = (): AuditLine[] =>
    readdirSync(dir)
      .filter((name) => name.endsWith('.audit.jsonl'))
      .flatMap((name) =>
        readFileSync(join(dir, name), 'utf8')
          .split('\n')
          .filter((line) => line.trim() !== '')
          .map((line) => JSON.parse(line) as AuditLine),
      );
  const eventsOf = async (tenant: string, id: string): Promise<StoredJobEvent[]> =>
    (await readJobEvents(probe, prefix, tenant, '0-0', 10_000)).filter((event) => event.jobId === id);

  /**
   * Waits until the job's end is visible in all three records, then asserts it was recorded exactly
   * once in each: one audit line (across every service's file), one final event (the stream's last
   * for the job), one usage record (the tenant's only job, so its counters read exactly 1).
   */
  const expectOneEnd = async (
    tenant: string,
    id: string,
    expected: { outcome: AuditLine['outcome']; errorCode?: string; enqueuedByProducer?: boolean },
  ): Promise<{ audit: AuditLine; events: StoredJobEvent[] }> => {
    await waitFor(
      async () =>
        auditLines().some((line) => line.jobId === id) &&
        (await eventsOf(tenant, id)).some((event) => isFinalJobEvent(event.type)) &&
        (await ledger.tenantUsage(tenant)).today.jobs > 0,
      { timeoutMs: 20_000, intervalMs: 100, what: `the ${expected.outcome} end of job ${id} in audit, events and usage` },
    );

    const audit = auditLines().filter((line) => line.jobId === id);
    expect(audit, 'audit lines of the job').toHaveLength(1);
    expect(audit[0]).toMatchObject({ tenant, outcome: expected.outcome });
    expect(audit[0]!.errorCode).toBe(expected.errorCode);

    const events = await eventsOf(tenant, id);
    const finals = events.filter((event) => isFinalJobEvent(event.type));
    expect(finals.map((event) => event.type), 'final events of the job').toEqual([expected.outcome]);
    expect(events.at(-1), 'the final event comes last').toBe(finals[0]);
    expect(finals[0]!.code).toBe(expected.errorCode);
    // A job the producer accepted starts with `queued` (one); one it never saw has no such event.
    expect(events[0]!.type).toBe(expected.enqueuedByProducer === false ? expected.outcome : 'queued');
    expect(events.filter((event) => event.type === 'queued')).toHaveLength(expected.enqueuedByProducer === false ? 0 : 1);

    const usage = (await ledger.tenantUsage(tenant)).today;
    // `failures` counts every end that is not a completion (cancelled ones included).
    expect({ jobs: usage.jobs, failures: usage.failures }, 'usage records of the tenant').toEqual({
      jobs: 1,
      failures: expected.outcome === 'completed' ? 0 : 1,
    });
    return { audit: audit[0]!, events };
  };

  it('completed: a normal job', async () => {
    const { tenant, model } = CASES.completed;
    const id = await enqueue(tenant, { prompt: 'Job ends: a normal job that completes.', model });
    const { audit, events } = await expectOneEnd(tenant, id, { outcome: 'completed' });
    expect(audit).toMatchObject({ provider: 'gemini', model, attempt: 1 });
    expect(events.map((event) => event.type)).toEqual(['queued', 'active', 'completed']);
    expect((await view(tenant, id)).status).toBe('completed');
  });

  it('failed at once: the provider answers 400, no retry', async () => {
    const { tenant, model } = CASES.failedAtOnce;
    await emulator.client.addFault({ kind: 'badRequest', model });
    const id = await enqueue(tenant, { prompt: 'Job ends: the provider refuses this request.', model });
    const { audit, events } = await expectOneEnd(tenant, id, { outcome: 'failed', errorCode: 'PROVIDER_BAD_REQUEST' });
    expect(audit.attempt).toBe(1);
    expect(events.map((event) => event.type)).toEqual(['queued', 'active', 'failed']);
    expect((await emulator.client.counters()).byModel[model]?.calls).toBe(1);
  });

  it(`failed after attempts: 503 on each of ${ATTEMPTS} attempts, one line for the job, none per attempt`, async () => {
    const { tenant, model } = CASES.failedAfterAttempts;
    await emulator.client.addFault({ kind: 'unavailable', model });
    const id = await enqueue(tenant, { prompt: 'Job ends: the provider is down for every attempt.', model });
    const { audit, events } = await expectOneEnd(tenant, id, { outcome: 'failed', errorCode: 'PROVIDER_UNAVAILABLE' });
    expect(audit.attempt).toBe(ATTEMPTS);
    // Each failed attempt but the last is a `retrying` event, not an end.
    const types = events.map((event) => event.type);
    expect(types.filter((type) => type === 'retrying')).toHaveLength(ATTEMPTS - 1);
    expect(types.filter((type) => type === 'active')).toHaveLength(ATTEMPTS);
    expect((await emulator.client.counters()).byModel[model]?.calls).toBe(ATTEMPTS);
    expect(await view(tenant, id)).toMatchObject({ status: 'failed', attempts: ATTEMPTS, error: { code: 'PROVIDER_UNAVAILABLE' } });
  });

  it('cancelled: a queued job DELETEd through the producer (the queue paused, so no worker can take it)', async () => {
    const { tenant, model } = CASES.cancelled;
    await queue.pause();
    try {
      const id = await enqueue(tenant, { prompt: 'Job ends: cancelled before any worker takes it.', model });
      expect(await queue.getJobState(id)).not.toBe('active');
      const response = await fetch(`${api}/v1/jobs/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${keyOf(tenant)}` } });
      expect(response.status).toBe(200);
      expect(((await response.json()) as JobView).status).toBe('cancelled');
      const { audit, events } = await expectOneEnd(tenant, id, { outcome: 'cancelled', errorCode: 'CANCELLED' });
      expect(audit.provider).toBe('none');
      expect(events.map((event) => event.type)).toEqual(['queued', 'cancelled']);
      // A second DELETE answers the same view and records nothing more (checked again at the end).
      const again = await fetch(`${api}/v1/jobs/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${keyOf(tenant)}` } });
      expect(again.status).toBe(200);
    } finally {
      await queue.resume();
    }
    expect((await emulator.client.counters()).byModel[model]).toBeUndefined();
  });

  it('invalid payload: a malformed job added straight into BullMQ fails INVALID_JOB', async () => {
    const { tenant, model } = CASES.invalidPayload;
    // No contents, no requestHash, no enqueuedAt: not a v1 prompt job. It names its tenant and model.
    const job = await queue.add('prompt', { v: 1, tenant, model, prompt: 'not how jobs are stored' }, { attempts: ATTEMPTS });
    const id = job.id!;
    jobs.push({ id, tenant });
    const { audit } = await expectOneEnd(tenant, id, { outcome: 'failed', errorCode: 'INVALID_JOB', enqueuedByProducer: false });
    expect(audit).toMatchObject({ provider: 'none', model, attempt: 1 });
    await waitFor(async () => (await queue.getJobState(id)) === 'failed', { timeoutMs: 5_000, what: 'the invalid job failed in BullMQ' });
    // UnrecoverableError: one attempt, however many it was given.
    expect((await queue.getJob(id))!.attemptsMade).toBe(1);
  });

  it(`stall-exhausted: the worker SIGKILLed mid-call ${MAX_STALLED_COUNT + 1} times, BullMQ fails the job, recorded once`, async () => {
    const { tenant, model } = CASES.stallExhausted;
    // Only this case's own workers may hold the job, so they are the ones SIGKILLed.
    await worker!.stop('SIGTERM');
    worker = undefined;
    // Its calls hang for a minute (until the caller disconnects): each worker holds the job until killed.
    await emulator.client.addFault({ kind: 'slow', model, delayMs: 60_000 });
    const started = Date.now();
    const id = await enqueue(tenant, { prompt: 'Job ends: my workers keep dying.', model });

    for (let crash = 1; crash <= MAX_STALLED_COUNT + 1; crash++) {
      const victim = await startService(WORKER_MAIN, `stall-worker-${crash}`);
      // This worker's provider call for the job is in flight (the job is active, its lock held).
      await waitFor(async () => ((await emulator.client.counters()).byModel[model]?.calls ?? 0) >= crash, {
        timeoutMs: 20_000,
        intervalMs: 100,
        what: `call ${crash} of the job in flight`,
      });
      expect(await queue.getJobState(id)).toBe('active');
      victim.child.kill('SIGKILL');
      await victim.exited;
    }
    // The next worker finds the job stalled once too often: BullMQ marks it with a deferred failure
    // and fails it when this worker takes it, without calling our processor; the worker's `failed`
    // listener records the end.
    await startService(WORKER_MAIN, 'stall-worker-final');
    // The code: BullMQ's reason "job stalled more than allowable limit" is read back as JOB_STALLED.
    const { audit, events } = await expectOneEnd(tenant, id, { outcome: 'failed', errorCode: 'JOB_STALLED' });
    const types = events.map((event) => event.type);
    // An `active` for each worker that took it: a retake after a crash is shown, unlike a return
    // from a wait (serve-batch's announceActive).
    expect(types).toEqual(['queued', ...Array.from({ length: MAX_STALLED_COUNT + 1 }, () => 'active'), 'failed']);
    expect(audit.provider).toBe('none');
    const final = await view(tenant, id);
    console.log(
      '[job-ends] stall-exhausted',
      JSON.stringify({ ms: Date.now() - started, events: types, audit: { errorCode: audit.errorCode, attempt: audit.attempt }, view: final }),
    );
    expect(final).toMatchObject({ status: 'failed', error: { code: 'JOB_STALLED', retryable: true } });
    // No third call: the job never reached the processor again.
    expect((await emulator.client.counters()).byModel[model]?.calls).toBe(MAX_STALLED_COUNT + 1);
  });

  it('after every service stopped (audit files flushed): audit lines = jobs, and each job still has one of each record', async () => {
    // Graceful stops flush the audit files; SIGKILLed workers ended nothing.
    await Promise.all(processes.map((proc) => proc.stop('SIGTERM')));
    const lines = auditLines();
    const byJob = new Map<string, number>();
    for (const line of lines) byJob.set(line.jobId, (byJob.get(line.jobId) ?? 0) + 1);
    expect(jobs).toHaveLength(Object.keys(CASES).length);
    expect(lines, 'no audit line for retried attempts, stalls or repeated cancels').toHaveLength(jobs.length);
    expect(Object.fromEntries(byJob)).toEqual(Object.fromEntries(jobs.map(({ id }) => [id, 1])));
    for (const { id, tenant } of jobs) {
      const finals = (await eventsOf(tenant, id)).filter((event) => isFinalJobEvent(event.type));
      expect(finals, `final events of ${tenant}'s job`).toHaveLength(1);
      expect((await ledger.tenantUsage(tenant)).today.jobs, `usage records of ${tenant}`).toBe(1);
    }
  });
});
