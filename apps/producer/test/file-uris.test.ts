// Defect 4 of issue 14: a fileData.fileUri is fetched by the backend, so the producer accepts only
// Gemini Files API URIs and the configured fileUris.allow prefixes, and refuses the rest with 400
// VALIDATION_FAILED naming the part. Nothing reaches the queue.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { promptJobDataSchema } from '@prompt-queue/shared';
import { startTestRedis, type TestRedis } from '@prompt-queue/shared/testing';
import { ACME, startHarness, totalJobs, type Harness } from './harness.js';

const FILES_URI = 'https://generativelanguage.googleapis.com/v1beta/files/abc-123';
const METADATA = 'http://169.254.169.254/latest/meta-data/iam/security-credentials/';

let server: TestRedis;
let h: Harness | undefined;

beforeAll(async () => {
  server = await startTestRedis();
});
afterAll(async () => {
  await server?.stop();
});
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const withFile = (fileUri: string, mimeType = 'image/png') => ({
  contents: [{ parts: [{ text: 'What is in this file?' }, { fileData: { mimeType, fileUri } }] }],
});

async function start(allow: string[] = []): Promise<Harness> {
  h = await startHarness(server.url, {}, (config) => {
    config.fileUris.allow = allow;
  });
  return h;
}

describe('POST /v1/jobs fileData.fileUri', () => {
  it('refuses the cloud metadata address and other URLs with 400 VALIDATION_FAILED naming the part', async () => {
    const harness = await start();
    for (const uri of [METADATA, 'http://localhost:6379/', 'https://example.com/a.png', 'gs://bucket/a.png', 'file:///etc/passwd', 'files/abc-123']) {
      const response = await harness.http.post('/v1/jobs').set(ACME).send(withFile(uri));
      expect(response.status, uri).toBe(400);
      expect(response.headers['content-type']).toMatch(/application\/json/);
      expect(response.body.error).toMatchObject({ code: 'VALIDATION_FAILED', message: expect.stringContaining('contents[0].parts[1].fileData.fileUri') });
      expect(response.body.error.details).toEqual([{ path: 'contents[0].parts[1].fileData.fileUri', message: expect.any(String) }]);
      // The message never echoes the URI (it may be a signed URL).
      expect(JSON.stringify(response.body)).not.toContain(uri);
    }
    const shortForm = await harness.http.post('/v1/jobs').set(ACME).send(withFile('files/abc-123'));
    expect(shortForm.body.error.message).toContain('send its uri');
    expect(await totalJobs(harness.queue)).toBe(0);
  });

  it('accepts a Gemini Files API URI and stores it unchanged', async () => {
    const harness = await start();
    const response = await harness.http.post('/v1/jobs').set(ACME).send(withFile(FILES_URI, 'application/pdf'));
    expect(response.status).toBe(202);
    const data = promptJobDataSchema.parse((await harness.queue.getJob(response.body.id))!.data);
    expect(data.contents[0]!.parts[1]).toEqual({ fileData: { mimeType: 'application/pdf', fileUri: FILES_URI } });
  });

  it('names every refused part of a bulk request, and accepts allowlisted prefixes only', async () => {
    const harness = await start(['https://my-bucket.example.com/images/', 'gs://my-bucket/']);
    const ok = await harness.http
      .post('/v1/jobs/bulk')
      .set(ACME)
      .send({ jobs: [withFile('https://my-bucket.example.com/images/cat.png'), withFile('gs://my-bucket/cat.png')] });
    expect(ok.status).toBe(202);

    const refused = await harness.http
      .post('/v1/jobs/bulk')
      .set(ACME)
      .send({
        jobs: [
          withFile('https://my-bucket.example.com/images/cat.png'),
          // Not under the prefix once the path is resolved, or another host that starts alike.
          withFile('https://my-bucket.example.com/images/../secrets/key.png'),
          withFile('https://my-bucket.example.com.evil.test/images/cat.png'),
          withFile('https://my-bucket.example.com/images/cat.png\n'),
          withFile(METADATA),
        ],
      });
    expect(refused.status).toBe(400);
    expect(refused.body.error.code).toBe('VALIDATION_FAILED');
    expect(refused.body.error.details.map((issue: { path: string }) => issue.path)).toEqual(
      [1, 2, 3, 4].map((i) => `jobs[${i}].contents[0].parts[1].fileData.fileUri`),
    );
    expect(await totalJobs(harness.queue)).toBe(2);
  });
});
