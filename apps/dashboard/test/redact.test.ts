// Defect 11 (issue 14): bull-board served full prompt, system instruction and answer text to ops.
// With dashboard.redactText (DASHBOARD_REDACT_TEXT, on by default in production) the board's job
// views carry sizes instead, and writes that would save the redaction back are refused.
import { createRedis, QueueName, type ConfigInput } from '@prompt-queue/shared';
import { Worker } from 'bullmq';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { redactJobData, redactReturnValue } from '../src/board.js';
import { resultOf } from './fixtures.js';
import { PASSWORD, USER, useDashboards, type TestDashboard } from './support.js';

const dashboards = useDashboards();

const PROMPT = 'Draft the press release for the Initech merger';
const SYSTEM = 'You are the CFO of Initrode';
const ANSWER = 'Initrode and Initech announce their merger on Friday';
const FILE_URI = 'https://generativelanguage.googleapis.com/v1beta/files/merger-plan';

/** A dashboard (with `overrides`) holding one completed generate job whose data and result carry text. */
async function dashboardWithCompletedJob(overrides: Partial<ConfigInput> = {}): Promise<TestDashboard & { id: string }> {
  const created = dashboards.create(overrides);
  const job = await created.queue.add('generate', {
    v: 1,
    kind: 'generate',
    tenant: 'acme',
    model: 'gemini-3.6-flash',
    contents: [
      {
        role: 'user',
        parts: [
          { text: PROMPT },
          { fileData: { mimeType: 'application/pdf', fileUri: FILE_URI } },
          { blob: { mimeType: 'image/png', sha256: 'a'.repeat(64), bytes: 1234 } },
        ],
      },
    ],
    systemInstruction: SYSTEM,
    requestHash: 'b'.repeat(64),
    enqueuedAt: Date.now(),
  });
  // Completed the way a worker completes it (a real BullMQ Worker taking the job and its lock).
  const connection = createRedis(dashboards.redis().url, 'worker');
  const worker = new Worker(QueueName.Prompts, null, { connection, prefix: created.prefix });
  try {
    const active = await worker.getNextJob('redact-test');
    expect(active?.id).toBe(job.id);
    await active!.moveToCompleted({ ...resultOf({ tenant: 'acme', model: 'gemini-3.6-flash' }), text: ANSWER }, 'redact-test', false);
  } finally {
    await worker.close();
    await connection.quit();
  }
  return { ...created, id: job.id! };
}

/** The job as bull-board's API serves it: alone, and in the completed list. */
async function boardViews(created: TestDashboard & { id: string }): Promise<string[]> {
  const app = created.dashboard.app;
  const one = await request(app).get(`/queues/api/queues/${QueueName.Prompts}/${created.id}`).auth(USER, PASSWORD).expect(200);
  const list = await request(app)
    .get('/queues/api/queues')
    .query({ activeQueue: QueueName.Prompts, status: 'completed', page: 1, jobsPerPage: 10 })
    .auth(USER, PASSWORD)
    .expect(200);
  expect(list.text).toContain(created.id);
  return [one.text, list.text];
}

describe('bull-board text redaction (dashboard.redactText)', () => {
  it('serves no prompt, system instruction, file URI or answer text when on; sizes and the rest stay', async () => {
    const created = await dashboardWithCompletedJob({ dashboard: { redactText: true } });
    for (const body of await boardViews(created)) {
      for (const secret of [PROMPT, SYSTEM, ANSWER, FILE_URI, 'Initech', 'Initrode']) expect(body).not.toContain(secret);
      expect(body).toContain(`[redacted: ${PROMPT.length} characters]`);
      expect(body).toContain(`[redacted: ${ANSWER.length} characters]`);
      // What ops need stays: tenant, model, cost in the name, usage, the image's hash and size.
      expect(body).toContain('generate · acme · gemini-3.6-flash · $0.00052 · 79 tok');
      expect(body).toContain('a'.repeat(64));
      expect(body).toContain('"totalTokens":79');
    }
    // Stored data is untouched: the worker still reads the prompt.
    expect((await created.queue.getJob(created.id))!.data.contents[0].parts[0].text).toBe(PROMPT);
  });

  it('is on by default in production and off otherwise', async () => {
    const production = await dashboardWithCompletedJob({ env: 'production' });
    for (const body of await boardViews(production)) expect(body).not.toContain(PROMPT);
    const test = await dashboardWithCompletedJob({ env: 'test' });
    for (const body of await boardViews(test)) {
      expect(body).toContain(PROMPT);
      expect(body).toContain(ANSWER);
    }
    const optedOut = await dashboardWithCompletedJob({ env: 'production', dashboard: { redactText: false } });
    for (const body of await boardViews(optedOut)) expect(body).toContain(PROMPT);
  });

  it('refuses to edit data or add (duplicate) jobs while redacting: the redaction would be saved as the prompt', async () => {
    const created = await dashboardWithCompletedJob({ dashboard: { redactText: true } });
    const app = created.dashboard.app;
    const edit = await request(app)
      .patch(`/queues/api/queues/${QueueName.Prompts}/${created.id}/update-data`)
      .auth(USER, PASSWORD)
      .set('Sec-Fetch-Site', 'same-origin')
      .send({ jobData: { v: 1, contents: [{ parts: [{ text: '[redacted: 46 characters]' }] }] } });
    expect(edit.status).toBe(403);
    expect(edit.body.error.code).toBe('TEXT_REDACTED');
    const add = await request(app)
      .post(`/queues/api/queues/${QueueName.Prompts}/add`)
      .auth(USER, PASSWORD)
      .set('Sec-Fetch-Site', 'same-origin')
      .send({ name: 'generate', data: { v: 1 } });
    expect(add.status).toBe(403);
    expect((await created.queue.getJob(created.id))!.data.contents[0].parts[0].text).toBe(PROMPT);
    expect(await created.queue.count()).toBe(0);

    // Without redaction the board's editor works as bull-board ships it.
    const plain = await dashboardWithCompletedJob({ dashboard: { redactText: false } });
    await request(plain.dashboard.app)
      .patch(`/queues/api/queues/${QueueName.Prompts}/${plain.id}/update-data`)
      .auth(USER, PASSWORD)
      .set('Sec-Fetch-Site', 'same-origin')
      .send({ jobData: { v: 1, note: 'edited' } })
      .expect(200);
    expect((await plain.queue.getJob(plain.id))!.data).toEqual({ v: 1, note: 'edited' });
  });
});

describe('redactJobData / redactReturnValue', () => {
  it('replace text, system instruction, file URIs and embeddings by their size, and tolerate any shape', () => {
    expect(redactReturnValue({ text: '', embedding: [0.1, 0.2, 0.3], model: 'm' })).toEqual({
      text: '[redacted: 0 characters]',
      embedding: '[redacted: 3 numbers]',
      model: 'm',
    });
    expect(redactJobData({ v: 1, contents: [{ role: 'user', parts: [{ text: 'hi' }] }, 'odd'], metadata: { ref: 'x' } })).toEqual({
      v: 1,
      contents: [{ role: 'user', parts: [{ text: '[redacted: 2 characters]' }] }, 'odd'],
      metadata: { ref: 'x' },
    });
    for (const odd of [null, 'text', 42, [1, 2], { contents: 'not an array' }]) {
      expect(redactJobData(odd)).toEqual(odd);
      expect(redactReturnValue(odd)).toEqual(odd);
    }
  });
});
