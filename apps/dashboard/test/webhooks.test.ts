// The dashboard's side of webhooks (issue 10): the overview's delivery panel (pending, retrying,
// dead-lettered, recent errors per tenant) and the `webhooks` queue in bull-board, redacted like
// prompts when DASHBOARD_REDACT_TEXT is on.
import { createRedis, QueueName, recordWebhookDeliveryError, type WebhookDelivery, type WebhookDeliveryError } from '@prompt-queue/shared';
import { Queue, Worker } from 'bullmq';
import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { deliveryListName, redactDeliveryData } from '../src/board.js';
import type { Overview } from '../src/overview/types.js';
import { PASSWORD, USER, useDashboards, type TestDashboard } from './support.js';

const dashboards = useDashboards();
const ANSWER = 'The merger closes on Friday';

function delivery(jobId: string, url = 'https://hooks.acme.test/pq?token=secret-token'): WebhookDelivery {
  return {
    v: 1,
    tenant: 'acme',
    jobId,
    url,
    event: {
      id: `${jobId}.job.completed`,
      type: 'job.completed',
      createdAt: '2026-11-02T10:00:00.000Z',
      data: {
        id: jobId,
        status: 'completed',
        model: 'gemini-3.6-flash',
        attempts: 1,
        createdAt: '2026-11-02T09:59:59.000Z',
        finishedAt: '2026-11-02T10:00:00.000Z',
        result: {
          text: ANSWER,
          finishReason: 'STOP',
          provider: 'gemini',
          model: 'gemini-3.6-flash',
          cached: false,
          usage: { inputTokens: 1, outputTokens: 2, thoughtsTokens: 0, cachedTokens: 0, totalTokens: 3 },
          costUsd: 0,
          costNanoUsd: 0,
        },
      },
    },
  };
}

async function overviewOf(created: TestDashboard): Promise<Overview> {
  const res = await request(created.dashboard.app).get('/api/overview').auth(USER, PASSWORD).expect(200);
  return res.body as Overview;
}

/** Deliveries in each state: 2 pending, 1 retrying (delayed), 1 dead-lettered, 1 delivered. */
async function deliveriesInEveryState(created: TestDashboard): Promise<Queue> {
  const webhooks = new Queue(QueueName.Webhooks, { connection: created.connection, prefix: created.prefix });
  const opts = (id: string) => ({ jobId: `${id}.job.completed` });
  await webhooks.add('job.completed', delivery('dead'), { ...opts('dead'), attempts: 1 });
  await webhooks.add('job.completed', delivery('done'), opts('done'));
  const connection = createRedis(dashboards.redis().url, 'worker');
  const worker = new Worker(QueueName.Webhooks, null, { connection, prefix: created.prefix });
  try {
    const first = await worker.getNextJob('dash-test');
    await first!.moveToFailed(new Error('[WEBHOOK_URL_NOT_ALLOWED] hooks.acme.test resolves to 10.0.0.1'), 'dash-test', false);
    const second = await worker.getNextJob('dash-test');
    await second!.moveToCompleted({ status: 204, attempt: 1 }, 'dash-test', false);
  } finally {
    await worker.close();
    await connection.quit();
  }
  await webhooks.add('job.completed', delivery('later'), { ...opts('later'), delay: 60_000 });
  await webhooks.add('job.completed', delivery('p1'), opts('p1'));
  await webhooks.add('job.completed', delivery('p2'), opts('p2'));
  return webhooks;
}

const error = (tenant: string, attempt: number, deadLettered: boolean): WebhookDeliveryError => ({
  at: Date.now() - attempt * 1_000,
  eventId: `${tenant}-job.job.completed`,
  jobId: `${tenant}-job`,
  url: 'https://hooks.example.test/pq',
  attempt,
  code: 'WEBHOOK_DELIVERY_FAILED',
  message: `answered 503 (attempt ${attempt})`,
  deadLettered,
});

describe('overview: webhook deliveries', () => {
  it('is empty on an empty Redis', async () => {
    const view = await overviewOf(dashboards.create());
    expect(view.webhooks).toEqual({ pending: 0, retrying: 0, deadLettered: 0, delivered: 0, recentErrors: [] });
    expect(view.queues.map((queue) => queue.name)).toContain(QueueName.Webhooks);
  });

  it('counts pending, retrying, dead-lettered and delivered deliveries, and shows the newest errors per tenant', async () => {
    const created = dashboards.create();
    const webhooks = await deliveriesInEveryState(created);
    try {
      for (const attempt of [1, 2, 3, 4, 5, 6, 7]) await recordWebhookDeliveryError(created.connection, created.prefix, 'globex', error('globex', attempt, false), 20);
      await recordWebhookDeliveryError(created.connection, created.prefix, 'acme', error('acme', 1, true), 20);
      const view = await overviewOf(created);
      expect(view.errors).toEqual([]);
      expect(view.webhooks).toMatchObject({ pending: 2, retrying: 1, deadLettered: 1, delivered: 1 });
      expect(view.webhooks.recentErrors.map(({ tenant, errors }) => [tenant, errors.length])).toEqual([
        ['acme', 1],
        ['globex', 5],
      ]);
      // Newest first.
      expect(view.webhooks.recentErrors[1]!.errors.map((entry) => entry.attempt)).toEqual([7, 6, 5, 4, 3]);
      expect(view.webhooks.recentErrors[0]!.errors[0]).toMatchObject({ deadLettered: true, url: 'https://hooks.example.test/pq' });
    } finally {
      await webhooks.close();
    }
  });

  it('has a panel on the page', async () => {
    const created = dashboards.create();
    const page = await request(created.dashboard.app).get('/').auth(USER, PASSWORD).expect(200);
    for (const id of ['webhooks-card', 'webhooks-pending', 'webhooks-retrying', 'webhooks-dead', 'webhook-errors']) expect(page.text).toContain(id);
  });
});

describe('bull-board: the webhooks queue', () => {
  it('lists deliveries by event, tenant and URL without the query, and redacts answer text and the query when on', async () => {
    const created = dashboards.create({ dashboard: { redactText: true } });
    const webhooks = await deliveriesInEveryState(created);
    try {
      const list = await request(created.dashboard.app)
        .get('/queues/api/queues')
        .query({ activeQueue: QueueName.Webhooks, status: 'failed', page: 1, jobsPerPage: 10 })
        .auth(USER, PASSWORD)
        .expect(200);
      expect(list.text).toContain('job.completed · acme · https://hooks.acme.test/pq · [WEBHOOK_URL_NOT_ALLOWED]');
      const one = await request(created.dashboard.app).get(`/queues/api/queues/${QueueName.Webhooks}/p1.job.completed`).auth(USER, PASSWORD).expect(200);
      for (const text of [list.text, one.text]) {
        expect(text).not.toContain(ANSWER);
        expect(text).not.toContain('secret-token');
      }
      expect(one.text).toContain('[redacted: 27 characters]');
    } finally {
      await webhooks.close();
    }
  });

  it('names and redacts any shape', () => {
    expect(deliveryListName({ data: delivery('x') })).toBe('job.completed · acme · https://hooks.acme.test/pq');
    expect(deliveryListName({ name: 'job.failed', data: null, failedReason: '[WEBHOOK_DELIVERY_FAILED] 500', finishedOn: 1 })).toBe('job.failed · [WEBHOOK_DELIVERY_FAILED]');
    const redacted = redactDeliveryData(delivery('x')) as WebhookDelivery;
    expect(redacted.url).toBe('https://hooks.acme.test/pq');
    expect(redacted.event.data.result!.text).toBe('[redacted: 27 characters]');
    expect(redacted.event.data.id).toBe('x');
    for (const odd of [null, 'text', [1], { url: 5 }, { event: { data: { result: null } } }]) expect(() => redactDeliveryData(odd)).not.toThrow();
  });
});
