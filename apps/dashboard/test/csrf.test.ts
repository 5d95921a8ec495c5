import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { finishJobs } from './fixtures.js';
import { PASSWORD, USER, useDashboards } from './support.js';

const dashboards = useDashboards();
const HOST = 'dash.internal:3001';
const TOKEN = 'token-for-scripts-0123456789';

/** A dashboard with one failed job; returns the retry request builder and a state reader. */
async function withFailedJob(readOnly = false, trustProxy = false) {
  const created = dashboards.create({ dashboard: { readOnly, trustProxy, token: TOKEN } });
  const [id] = await finishJobs(created.queue, dashboards.redis().url, created.prefix, [
    { tenant: 'acme', model: 'gemini-3.6-flash', fail: '[PROVIDER_UNAVAILABLE] down' },
  ]);
  const retry = () => request(created.dashboard.app).put(`/queues/api/queues/prompts/${id}/retry`).set('Host', HOST);
  const state = () => created.queue.getJobState(id!);
  return { ...created, id: id!, retry, state };
}

describe('CSRF: state-changing requests must come from the dashboard itself', () => {
  it.each([
    ['a cross-origin Origin', { Origin: 'https://evil.example' }],
    ['Sec-Fetch-Site: cross-site', { 'Sec-Fetch-Site': 'cross-site', Origin: `http://${HOST}` }],
    ['Sec-Fetch-Site: same-site (another port or subdomain)', { 'Sec-Fetch-Site': 'same-site' }],
    ['a cross-origin Referer', { Referer: 'https://evil.example/page' }],
    ['an Origin on our host with another scheme', { Origin: `https://${HOST}` }],
    ['a Referer on our host with another scheme', { Referer: `https://${HOST}/queues/queue/prompts` }],
    ['X-Forwarded-Proto, not trusted without dashboard.trustProxy', { 'X-Forwarded-Proto': 'https', Origin: `https://${HOST}` }],
    ['Origin: null (sandboxed frame, file://)', { Origin: 'null' }],
    ['no Origin, Referer or Sec-Fetch-Site', {}],
  ])('refuses a PUT with %s: 403 JSON, nothing changes', async (_label, headers: Record<string, string>) => {
    const { retry, state } = await withFailedJob();
    const res = await retry().auth(USER, PASSWORD).set(headers);
    expect(res.status).toBe(403);
    expect(res.body).toEqual({ error: { code: 'CSRF_REJECTED', message: expect.any(String) } });
    expect(await state()).toBe('failed');
  });

  it.each([
    ['Sec-Fetch-Site: same-origin', { 'Sec-Fetch-Site': 'same-origin' }],
    ['an Origin matching Host', { Origin: `http://${HOST}` }],
    ['a Referer on the same host', { Referer: `http://${HOST}/queues/queue/prompts` }],
  ])('allows a same-origin PUT with %s: the job is retried', async (_label, headers: Record<string, string>) => {
    const { retry, state } = await withFailedJob();
    const res = await retry().auth(USER, PASSWORD).set(headers);
    expect(res.status).toBe(204);
    expect(await state()).toBe('waiting');
  });

  it('behind a trusted proxy (dashboard.trustProxy), takes the scheme and host from X-Forwarded-Proto/-Host', async () => {
    const { retry, state } = await withFailedJob(false, true);
    const viaProxy = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'dash.example.com' };
    // An http:// page must not act on the https:// dashboard, nor the proxy's upstream Host count.
    for (const origin of ['http://dash.example.com', `https://${HOST}`, 'https://evil.example']) {
      expect((await retry().auth(USER, PASSWORD).set(viaProxy).set('Origin', origin)).status, origin).toBe(403);
    }
    expect(await state()).toBe('failed');
    // A default port is the same origin as none.
    const res = await retry().auth(USER, PASSWORD).set(viaProxy).set('Origin', 'https://dash.example.com:443');
    expect(res.status).toBe(204);
    expect(await state()).toBe('waiting');
  });

  it('exempts the bearer token (browsers never send it on their own)', async () => {
    const { retry, state } = await withFailedJob();
    expect((await retry().set('Authorization', `Bearer ${TOKEN}`)).status).toBe(204);
    expect(await state()).toBe('waiting');
  });

  it('lets reads through from anywhere (with credentials)', async () => {
    const { dashboard } = await withFailedJob();
    const res = await request(dashboard.app).get('/queues/api/queues').auth(USER, PASSWORD).set('Origin', 'https://evil.example');
    expect(res.status).toBe(200);
    // And no CORS headers: another origin's script cannot read the answer.
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('asks for credentials before anything else', async () => {
    const { retry } = await withFailedJob();
    expect((await retry().set('Origin', 'https://evil.example')).status).toBe(401);
  });
});

describe('read-only mode (DASHBOARD_READ_ONLY=true)', () => {
  it('refuses retries even from the same origin, and says so in the board and overview', async () => {
    const { dashboard, retry, state } = await withFailedJob(true);
    const res = await retry().auth(USER, PASSWORD).set('Sec-Fetch-Site', 'same-origin');
    expect(res.status).toBe(405);
    expect(await state()).toBe('failed');
    const clean = await request(dashboard.app)
      .put('/queues/api/queues/prompts/clean/failed')
      .auth(USER, PASSWORD)
      .set('Sec-Fetch-Site', 'same-origin');
    expect(clean.status).toBe(405);

    const board = await request(dashboard.app).get('/queues/api/queues').auth(USER, PASSWORD);
    const prompts = (board.body as { queues: { name: string; readOnlyMode: boolean; allowRetries: boolean }[] }).queues[0]!;
    expect(prompts).toMatchObject({ name: 'prompts', readOnlyMode: true, allowRetries: false });
    const overview = await request(dashboard.app).get('/api/overview').auth(USER, PASSWORD);
    expect((overview.body as { readOnly: boolean }).readOnly).toBe(true);
  });

  it('allows retry, clean and promote by default', async () => {
    const { dashboard } = await withFailedJob(false);
    const board = await request(dashboard.app).get('/queues/api/queues').auth(USER, PASSWORD);
    expect((board.body as { queues: { readOnlyMode: boolean; allowRetries: boolean }[] }).queues[0]).toMatchObject({
      readOnlyMode: false,
      allowRetries: true,
    });
    const clean = await request(dashboard.app)
      .put('/queues/api/queues/prompts/clean/failed')
      .auth(USER, PASSWORD)
      .set('Sec-Fetch-Site', 'same-origin');
    expect(clean.status).toBe(200);
  });
});

describe('bull-board job list', () => {
  it('names jobs with tenant, model, cost and tokens, and failed ones with their code', async () => {
    const { dashboard, queue, prefix } = dashboards.create();
    await finishJobs(queue, dashboards.redis().url, prefix, [
      { tenant: 'acme', model: 'gemini-3.6-flash', costUsd: 0.00052, tokens: 79 },
      { tenant: 'globex', model: 'gemini-3.6-flash', fail: '[PROVIDER_BAD_REQUEST] Invalid argument.' },
    ]);
    const list = async (status: string) => {
      const res = await request(dashboard.app).get(`/queues/api/queues?activeQueue=prompts&status=${status}&page=1&jobsPerPage=10`).auth(USER, PASSWORD);
      expect(res.status).toBe(200);
      return (res.body as { queues: { jobs: { name: string; failedReason?: string }[] }[] }).queues[0]!.jobs;
    };
    expect((await list('completed')).map((job) => job.name)).toEqual(['generate · acme · gemini-3.6-flash · $0.00052 · 79 tok']);
    const failed = await list('failed');
    expect(failed.map((job) => job.name)).toEqual(['generate · globex · gemini-3.6-flash · [PROVIDER_BAD_REQUEST]']);
    expect(failed[0]!.failedReason).toBe('[PROVIDER_BAD_REQUEST] Invalid argument.');
  });
});
