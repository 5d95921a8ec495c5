// Webhooks at enqueue (issue 10): URLs that reach loopback, metadata or private addresses are
// refused with 400 WEBHOOK_URL_NOT_ALLOWED and nothing is enqueued; every accepted webhook has a
// secret to sign with, and the secret never shows in the job's data or view.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { promptJobDataSchema, webhookSecretKey } from '@prompt-queue/shared';
import { startTestRedis, type TestRedis } from '@prompt-queue/shared/testing';
import { ACME, startHarness, totalJobs, type Harness } from './harness.js';

const SECRET = 'whsec-acme-0123456789abcdef';
/** A public address literal: no DNS needed to admit it. */
const PUBLIC_URL = 'https://93.184.216.34/hooks/pq?token=abc';

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

async function start(adjust: Parameters<typeof startHarness>[2] = () => {}): Promise<Harness> {
  h = await startHarness(server.url, {}, adjust);
  return h;
}

const job = (webhook: unknown) => ({ prompt: 'Tell me when you are done', webhook });

describe('POST /v1/jobs webhook', () => {
  it('refuses loopback, metadata, private and IPv6 loopback URLs, and names resolving to them, with 400 WEBHOOK_URL_NOT_ALLOWED', async () => {
    const harness = await start();
    const refused = [
      'http://127.0.0.1:8080/hook',
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/hook',
      'http://[::1]:3000/hook',
      'http://[::ffff:127.0.0.1]/hook',
      'http://[fd00:ec2::254]/',
      'http://localhost:9/hook',
    ];
    for (const url of refused) {
      const response = await harness.http.post('/v1/jobs').set(ACME).send(job({ url, secret: SECRET }));
      expect(response.status, url).toBe(400);
      expect(response.headers['content-type']).toMatch(/application\/json/);
      expect(response.body.error, url).toMatchObject({ code: 'WEBHOOK_URL_NOT_ALLOWED', message: expect.stringMatching(/^webhook\.url: .*(loopback|link-local|private) address/) });
    }
    for (const url of ['ftp://93.184.216.34/', 'https://user:pw@93.184.216.34/', 'not a url']) {
      const response = await harness.http.post('/v1/jobs').set(ACME).send(job({ url, secret: SECRET }));
      expect(response.status, url).toBe(400);
      expect(response.body.error.code, url).toBe('WEBHOOK_URL_NOT_ALLOWED');
    }
    expect(await totalJobs(harness.queue)).toBe(0);
  });

  it('refuses a whole bulk request when one job has a refused URL, naming it', async () => {
    const harness = await start();
    const response = await harness.http
      .post('/v1/jobs/bulk')
      .set(ACME)
      .send({ jobs: [job({ url: PUBLIC_URL, secret: SECRET }), job({ url: 'http://169.254.169.254/', secret: SECRET })] });
    expect(response.status).toBe(400);
    expect(response.body.error.code).toBe('WEBHOOK_URL_NOT_ALLOWED');
    expect(response.body.error.details).toEqual([{ path: 'jobs[1].webhook.url', message: expect.stringMatching(/link-local/), code: 'WEBHOOK_URL_NOT_ALLOWED' }]);
    expect(await totalJobs(harness.queue)).toBe(0);
  });

  it('keeps the secret apart from the job: a reference in the data, the secret under its own key for the result TTL', async () => {
    const harness = await start();
    const response = await harness.http.post('/v1/jobs').set(ACME).send(job({ url: PUBLIC_URL, secret: SECRET }));
    expect(response.status).toBe(202);
    const stored = await harness.queue.getJob(response.body.id);
    const data = promptJobDataSchema.parse(stored!.data);
    expect(data.webhook).toEqual({ url: PUBLIC_URL, secretRef: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(JSON.stringify(stored!.data)).not.toContain(SECRET);
    const key = webhookSecretKey(harness.config.redis.prefix, data.webhook!.secretRef!);
    expect(await harness.redis.get(key)).toBe(SECRET);
    expect(await harness.redis.ttl(key)).toBeGreaterThan(harness.config.producer.resultTtlSeconds - 10);

    const view = await harness.http.get(`/v1/jobs/${response.body.id}`).set(ACME);
    expect(view.status).toBe(200);
    expect(JSON.stringify(view.body)).not.toContain(SECRET);
    expect(JSON.stringify(view.body)).not.toContain('secretRef');
  });

  it('refuses a webhook without a secret unless the tenant has one configured', async () => {
    let harness = await start();
    const refused = await harness.http.post('/v1/jobs').set(ACME).send(job({ url: PUBLIC_URL }));
    expect(refused.status).toBe(400);
    expect(refused.body.error).toMatchObject({ code: 'VALIDATION_FAILED', details: [{ path: 'webhook.secret', message: expect.stringMatching(/every delivery is signed/) }] });
    const short = await harness.http.post('/v1/jobs').set(ACME).send(job({ url: PUBLIC_URL, secret: 'short' }));
    expect(short.body.error.details[0]).toMatchObject({ path: 'webhook.secret' });
    await harness.close();

    harness = await start((config) => {
      config.tenants.acme = { onExceeded: 'fail', webhook: { secretEnv: 'ACME_SECRET', secrets: [SECRET] } };
    });
    const accepted = await harness.http.post('/v1/jobs').set(ACME).send(job({ url: PUBLIC_URL }));
    expect(accepted.status).toBe(202);
    const data = promptJobDataSchema.parse((await harness.queue.getJob(accepted.body.id))!.data);
    expect(data.webhook).toEqual({ url: PUBLIC_URL });
  });

  it('admits what webhooks.allowPrivate lists', async () => {
    const harness = await start((config) => {
      config.webhooks.allowPrivate = ['127.0.0.1/32'];
    });
    const response = await harness.http.post('/v1/jobs').set(ACME).send(job({ url: 'http://127.0.0.1:9999/hook', secret: SECRET }));
    expect(response.status).toBe(202);
    const other = await harness.http.post('/v1/jobs').set(ACME).send(job({ url: 'http://127.0.0.2:9999/hook', secret: SECRET }));
    expect(other.status).toBe(400);
  });
});
