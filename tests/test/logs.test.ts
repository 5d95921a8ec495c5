// Every log stream of a whole-stack run, grepped for secrets: no prompt text, no Gemini key, no
// producer API key, in any process's stdout or stderr, nor in the audit stream.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmulatorProcess, type EmulatorProcess } from '@prompt-queue/gemini-emulator';
import { startServiceProcess, startTestRedis, uniquePrefix, waitFor, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
/** Distinctive enough that any leak is found by a plain substring search. */
const SECRET_PROMPT = 'Confidential-launch-codename-ZEBRA-7781 and its board memo';
const GEMINI_KEY = 'AIzaSyLogTestSecretGeminiKey0000000000';
const PRODUCER_KEY = 'pk-log-test-secret-producer-key-123456';

interface JobView {
  status: string;
  result?: { cached: boolean };
  error?: { code: string };
}

describe('logs: no prompt text and no key in any stream', () => {
  let redis: TestRedis;
  let emulator: EmulatorProcess;
  let producer: ServiceProcess;
  let worker: ServiceProcess;
  let api: string;
  let auditFile: string;

  beforeAll(async () => {
    [redis, emulator] = await Promise.all([startTestRedis(), startEmulatorProcess({ apiKeys: [GEMINI_KEY] })]);
    auditFile = join(mkdtempSync(join(tmpdir(), 'pq-logs-')), 'audit.log');
    const env = {
      NODE_ENV: 'production',
      REDIS_URL: redis.url,
      REDIS_PREFIX: uniquePrefix('logs'),
      API_KEYS: `acme:${PRODUCER_KEY}`,
      GEMINI_API_KEY: GEMINI_KEY,
      GEMINI_BASE_URL: emulator.url,
      PRODUCER_PORT: '0',
      WORKER_PORT: '0',
      BACKOFF_BASE_MS: '20',
      JOB_ATTEMPTS: '2',
      // As chatty as it gets: every debug line is searched too.
      LOG_LEVEL: 'debug',
      AUDIT_LOG: auditFile,
    };
    producer = await startServiceProcess({ args: [join(root, 'apps/producer/dist/main.js')], env, readyLine: /listening on (http:\/\/\S+)/ });
    worker = await startServiceProcess({ args: [join(root, 'apps/worker/dist/main.js')], env, readyLine: /listening on (http:\/\/\S+)/ });
    api = producer.ready[1]!;
  });

  afterAll(async () => {
    await worker?.stop();
    await producer?.stop();
    await emulator?.stop();
    await redis?.stop();
    if (auditFile) rmSync(dirname(auditFile), { recursive: true, force: true });
  });

  const post = async (body: object): Promise<string> => {
    const response = await fetch(`${api}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PRODUCER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    expect(response.status).toBe(202);
    return ((await response.json()) as { id: string }).id;
  };
  const finished = async (id: string): Promise<JobView> =>
    (await (await fetch(`${api}/v1/jobs/${id}?wait=20`, { headers: { authorization: `Bearer ${PRODUCER_KEY}` } })).json()) as JobView;

  it('a success, a cache hit, failures and refusals leave no secret in stdout, stderr or the audit log', async () => {
    const first = await finished(await post({ prompt: SECRET_PROMPT, systemInstruction: `Never reveal ${SECRET_PROMPT}` }));
    expect(first).toMatchObject({ status: 'completed', result: { cached: false } });
    const hit = await finished(await post({ prompt: SECRET_PROMPT, systemInstruction: `Never reveal ${SECRET_PROMPT}` }));
    expect(hit).toMatchObject({ status: 'completed', result: { cached: true } });
    // A blocked prompt (the emulator's trigger), a 400 and a 503 retried to the end.
    expect((await finished(await post({ prompt: `${SECRET_PROMPT} [[block]]` }))).error?.code).toBe('PROMPT_BLOCKED');
    await emulator.client.addFault({ kind: 'badRequest', count: 1 });
    expect((await finished(await post({ prompt: `${SECRET_PROMPT} (bad request)` }))).error?.code).toBe('PROVIDER_BAD_REQUEST');
    await emulator.client.addFault({ kind: 'unavailable', count: 2 });
    expect((await finished(await post({ prompt: `${SECRET_PROMPT} (outage)` }))).status).toBe('failed');
    // Refused at the door: invalid body echoing the prompt, wrong key.
    const invalid = await fetch(`${api}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${PRODUCER_KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: SECRET_PROMPT, generationConfig: { temperature: 9 } }),
    });
    expect(invalid.status).toBe(400);
    expect((await fetch(`${api}/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${PRODUCER_KEY}x` } })).status).toBe(401);

    // One line per job end (5 jobs), not per attempt.
    await waitFor(() => readFileSync(auditFile, 'utf8').trim().split('\n').length >= 5, { what: 'the audit lines' });
    // Stop first: shutdown lines and flushed buffers are part of the streams.
    await worker.stop();
    await producer.stop();

    const streams: Record<string, string> = {
      'producer stdout+stderr': producer.output(),
      'worker stdout+stderr': worker.output(),
      'audit log': readFileSync(auditFile, 'utf8'),
    };
    for (const [name, text] of Object.entries(streams)) {
      expect(text.length, `${name} is not empty`).toBeGreaterThan(0);
      for (const secret of [SECRET_PROMPT, 'ZEBRA-7781', GEMINI_KEY, PRODUCER_KEY]) {
        expect(text.includes(secret), `${name} contains ${secret.slice(0, 12)}…`).toBe(false);
      }
    }
    const audit = streams['audit log']!.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    console.log('streams', JSON.stringify(Object.fromEntries(Object.entries(streams).map(([name, text]) => [name, text.length]))), 'audit lines', audit.length);
    expect(audit.every((line) => typeof line.promptSha256 === 'string' && !('prompt' in line))).toBe(true);
    expect(audit.map((line) => line.outcome)).toEqual(expect.arrayContaining(['completed', 'failed']));
    expect(audit.some((line) => line.cached === true)).toBe(true);
  });
});
