// kind: 'embed' through the API: validation, the persisted payload, and the view of a finished job.
import { describe, expect, it } from 'vitest';
import { promptJobDataSchema, type PromptJobResult } from '@prompt-queue/shared';
import { waitFor } from '@prompt-queue/shared/testing';
import { ACME, useHarness, type Harness } from './harness.js';

let h: Harness;
useHarness((harness) => (h = harness));

const post = (body: object) => h.http.post('/v1/jobs').set(ACME).send(body);

describe('kind: embed', () => {
  it('enqueues an embed job for an embed model, with taskType and outputDimensionality', async () => {
    const response = await post({ kind: 'embed', model: 'gemini-embedding-001', prompt: 'a document to embed', taskType: 'RETRIEVAL_DOCUMENT', outputDimensionality: 256 });
    expect(response.status).toBe(202);
    const data = promptJobDataSchema.parse((await h.queue.getJob(response.body.id))!.data);
    expect(data).toMatchObject({
      kind: 'embed',
      model: 'gemini-embedding-001',
      taskType: 'RETRIEVAL_DOCUMENT',
      outputDimensionality: 256,
      contents: [{ role: 'user', parts: [{ text: 'a document to embed' }] }],
    });
  });

  it('defaults to generate, and embed defaults to gemini-embedding-001', async () => {
    const generate = await post({ prompt: 'hello' });
    expect(promptJobDataSchema.parse((await h.queue.getJob(generate.body.id))!.data).kind).toBe('generate');
    const embed = await post({ kind: 'embed', prompt: 'hello' });
    expect(promptJobDataSchema.parse((await h.queue.getJob(embed.body.id))!.data)).toMatchObject({ kind: 'embed', model: 'gemini-embedding-001' });
  });

  it('refuses a generate model, generate-only fields, images and embed-only fields on generate jobs', async () => {
    const wrongModel = await post({ kind: 'embed', model: 'gemini-2.5-flash', prompt: 'x' });
    expect(wrongModel.status).toBe(400);
    expect(wrongModel.body.error.code).toBe('UNKNOWN_MODEL');
    const embedModelForGenerate = await post({ model: 'gemini-embedding-001', prompt: 'x' });
    expect(embedModelForGenerate.body.error.code).toBe('UNKNOWN_MODEL');

    const withConfig = await post({ kind: 'embed', prompt: 'x', generationConfig: { temperature: 0 } });
    expect(withConfig.status).toBe(400);
    expect(withConfig.body.error.details).toEqual([{ path: 'generationConfig', message: 'is not used by kind "embed"' }]);
    const withImage = await post({ kind: 'embed', contents: [{ parts: [{ text: 'x' }, { fileData: { mimeType: 'image/png', fileUri: 'https://example.com/a.png' } }] }] });
    expect(withImage.status).toBe(400);
    expect(withImage.body.error.details[0].path).toBe('contents[0].parts[1]');
    const taskTypeOnGenerate = await post({ prompt: 'x', taskType: 'RETRIEVAL_QUERY' });
    expect(taskTypeOnGenerate.status).toBe(400);
    const badKind = await post({ kind: 'summarize', prompt: 'x' });
    expect(badKind.status).toBe(400);
  });

  it('bulk takes embed jobs next to generate jobs', async () => {
    const response = await h.http
      .post('/v1/jobs/bulk')
      .set(ACME)
      .send({ jobs: [{ kind: 'embed', prompt: 'one' }, { prompt: 'two' }, { kind: 'embed', prompt: 'three', outputDimensionality: 64 }] });
    expect(response.status).toBe(202);
    const kinds = await Promise.all(
      (response.body.jobs as { id: string }[]).map(async ({ id }) => promptJobDataSchema.parse((await h.queue.getJob(id))!.data).kind),
    );
    expect(kinds).toEqual(['embed', 'generate', 'embed']);
    // Named by kind too: bull-board and BullMQ's events show the name.
    const names = await Promise.all((response.body.jobs as { id: string }[]).map(async ({ id }) => (await h.queue.getJob(id))!.name));
    expect(names).toEqual(['embed', 'generate', 'embed']);
  });

  it('names a single embed job "embed" (it used to be "generate" in bull-board)', async () => {
    const embed = await post({ kind: 'embed', prompt: 'hello' });
    expect((await h.queue.getJob(embed.body.id))!.name).toBe('embed');
    const generate = await post({ prompt: 'hello' });
    expect((await h.queue.getJob(generate.body.id))!.name).toBe('generate');
  });

  it('GET returns result.embedding and the exact costNanoUsd', async () => {
    const { body } = await post({ kind: 'embed', prompt: 'vector please' });
    const result: PromptJobResult = {
      text: '',
      finishReason: 'STOP',
      provider: 'gemini',
      model: 'gemini-embedding-001',
      cached: false,
      usage: { inputTokens: 4, outputTokens: 0, thoughtsTokens: 0, cachedTokens: 0, totalTokens: 4 },
      costUsd: 0.0000006,
      costNanoUsd: 600,
      latencyMs: 5,
      embedding: [0.25, -0.5, 1],
    };
    await h.startWorker(async () => result);
    await waitFor(async () => (await h.queue.getJobState(body.id)) === 'completed');
    const view = await h.http.get(`/v1/jobs/${body.id}`).set(ACME);
    expect(view.body.result).toMatchObject({ embedding: [0.25, -0.5, 1], costNanoUsd: 600, text: '' });
  });
});
