// The dashboard in a real browser (Debian's Chromium through playwright-core) against the whole
// stack as separate processes: Redis, the Gemini emulator, the producer, a worker and the
// dashboard. It signs in, runs jobs (one failing on an emulator 503), checks the overview's
// numbers against the producer's `GET /v1/usage` and the queue counts, retries the failed job from
// bull-board's UI once the fault is cleared, and saves a screenshot of each page.
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmulatorProcess } from '@prompt-queue/gemini-emulator';
import { createRedis, queuePrefix, QueueName } from '@prompt-queue/shared';
import { startServiceProcess, startTestRedis, uniquePrefix, waitFor, type ServiceProcess, type TestRedis } from '@prompt-queue/shared/testing';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const RESULTS = join(root, 'tests/test-results');
const README_SCREENSHOT = join(root, 'docs/images/overview.png');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-quic',
];
const KEY = 'browser-key';
const TENANT = 'acme';
const USER = 'ops';
const PASSWORD = 'browser-test-password';

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  const message = `browser test: ${CHROMIUM} not found (apt-get install chromium, or set CHROMIUM_PATH)`;
  // Locally a missing browser skips the test; in CI it must fail, or a green run would prove nothing.
  if (process.env.CI === 'true') throw new Error(`${message}; CI=true requires it`);
  console.warn(`${message}: skipping`);
}

interface JobView {
  id: string;
  status: string;
  result?: { costUsd: number | null };
  error?: { code: string; message: string };
}

/** The parts of `GET /v1/usage` compared here (apps/producer/src/routes/usage.ts). */
interface UsagePeriod {
  jobs: number;
  failures: number;
  costNanoUsd: number;
  cacheHits: number;
  inputTokens: number;
  outputTokens: number;
}
interface UsageResponse {
  tenant: string;
  day: string;
  month: string;
  today: UsagePeriod;
  thisMonth: UsagePeriod;
}

/** The parts of the dashboard's `GET /api/overview` compared here (apps/dashboard/src/overview/types.ts). */
interface OverviewView {
  queues: { name: string; counts: Record<string, number> }[];
  throughput: { completed: number[]; failed: number[]; perMinute: number };
  failures: { byCode: { code: string; count: number }[] };
  usage: {
    day: string;
    monthKey: string;
    today: { totals: UsagePeriod & { costUsd: number }; byTenant: Record<string, UsagePeriod> };
    month: { totals: UsagePeriod; byTenant: Record<string, UsagePeriod> };
  } | null;
  workers: { count: number };
  depthHistory: { samples: { at: number }[] };
  queueWait: { oldestWaitingMs: number | null; sampled: number; p50Ms: number | null; p95Ms: number | null };
  providerLatency: { links: { link: string; calls: number; p50Ms: number; p95Ms: number }[] };
}

/** The little of the page's globals the test reads (this file compiles without the DOM library). */
interface PageGlobals {
  document: { querySelector(selector: string): { getAttribute(name: string): string | null } | null };
}

describe.skipIf(!haveChromium)('dashboard in a browser, over the whole stack', () => {
  let redis: TestRedis;
  let emulator: Awaited<ReturnType<typeof startEmulatorProcess>>;
  const services: ServiceProcess[] = [];
  let api: string;
  let dashboardUrl: string;
  let browser: Browser;
  let context: BrowserContext;
  let connection: Redis;
  let queue: Queue;

  beforeAll(async () => {
    mkdirSync(RESULTS, { recursive: true });
    redis = await startTestRedis();
    emulator = await startEmulatorProcess();
    const prefix = uniquePrefix('browser');
    const env = {
      NODE_ENV: 'test',
      REDIS_URL: redis.url,
      REDIS_PREFIX: prefix,
      API_KEYS: `${TENANT}:${KEY}`,
      GEMINI_API_KEY: emulator.apiKey,
      GEMINI_BASE_URL: emulator.url,
      PRODUCER_PORT: '0',
      WORKER_PORT: '0',
      DASHBOARD_PORT: '0',
      DASHBOARD_USER: USER,
      DASHBOARD_PASSWORD: PASSWORD,
      DASHBOARD_TOKEN: undefined,
      DASHBOARD_READ_ONLY: undefined,
      CONFIG_FILE: undefined,
      // One attempt: the 503 fails the job at once, and it stays retryable from the UI.
      JOB_ATTEMPTS: '1',
      BACKOFF_BASE_MS: '20',
      LOG_LEVEL: 'warn',
    };
    const start = (app: string) =>
      startServiceProcess({ args: [join(root, `apps/${app}/dist/main.js`)], env, readyLine: /listening on (http:\/\/\S+)/ });
    const [producer, worker, dashboard] = await Promise.all([start('producer'), start('worker'), start('dashboard')]);
    services.push(producer, worker, dashboard);
    api = producer.ready[1]!;
    dashboardUrl = dashboard.ready[1]!;
    connection = createRedis(redis.url, 'worker');
    queue = new Queue(QueueName.Prompts, { connection, prefix: queuePrefix(prefix) });

    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
    context = await browser.newContext({
      httpCredentials: { username: USER, password: PASSWORD },
      viewport: { width: 1280, height: 900 },
    });
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await queue?.close();
    await connection?.quit();
    for (const service of services.reverse()) await service.stop();
    await emulator?.stop();
    await redis?.stop();
  });

  const post = async (prompt: string): Promise<string> => {
    const res = await fetch(`${api}/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      body: JSON.stringify({ prompt }),
    });
    expect(res.status).toBe(202);
    return ((await res.json()) as { id: string }).id;
  };
  const job = async (id: string, wait = 10): Promise<JobView> =>
    (await (await fetch(`${api}/v1/jobs/${id}?wait=${wait}`, { headers: { authorization: `Bearer ${KEY}` } })).json()) as JobView;
  const finished = (id: string) =>
    waitFor(async () => {
      const view = await job(id, 5);
      return view.status === 'completed' || view.status === 'failed' ? view : undefined;
    }, { timeoutMs: 30_000, what: `job ${id} to finish` });
  const usage = async (): Promise<UsageResponse> => {
    const res = await fetch(`${api}/v1/usage`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(res.status, 'GET /v1/usage').toBe(200);
    return (await res.json()) as UsageResponse;
  };
  /** `/api/overview` as the page itself fetches it: same origin, with the browser's credentials. */
  const overviewIn = (page: Page) =>
    page.evaluate("fetch('api/overview', { cache: 'no-store' }).then((response) => response.json())") as Promise<OverviewView>;
  /** Resolves once the tile's raw value (`data-value`) is above 0; false after the timeout. */
  const tileAboveZero = (page: Page, id: string, timeout = 15_000) =>
    page
      .waitForFunction(
        // Runs in the page (a function, not a string: the page's CSP forbids eval).
        (testId) => Number((globalThis as unknown as PageGlobals).document.querySelector(`[data-testid="${testId}"]`)?.getAttribute('data-value')) > 0,
        id,
        { timeout },
      )
      .then(
        () => true,
        () => false,
      );

  it('answers 401 without credentials, on every route', async () => {
    // Through the browser's own request stack (a page would stop at the login prompt instead).
    const anonymous = await browser.newContext();
    try {
      for (const path of ['/', '/api/overview', '/assets/overview.js', '/assets/vendor/chart.umd.min.js', '/queues/', '/queues/api/queues']) {
        const response = await anonymous.request.get(`${dashboardUrl}${path}`);
        expect(response.status(), path).toBe(401);
      }
    } finally {
      await anonymous.close();
    }
  });

  let failedId: string;

  it('runs jobs through the stack, one of them failing on a 503', async () => {
    await emulator.client.reset();
    const ids = await Promise.all(['a haiku about queues', 'a limerick about Redis', 'two words on retries', 'a motto for ops'].map(post));
    for (const id of ids) expect((await finished(id))!.status, id).toBe('completed');

    await emulator.client.addFault({ kind: 'unavailable', count: 100 });
    failedId = await post('this one meets a 503');
    const failed = (await finished(failedId))!;
    expect(failed.status).toBe('failed');
    expect(failed.error?.code).toMatch(/UNAVAILABLE/);
  }, 90_000);

  it('shows non-zero cost and throughput on the overview, equal to GET /v1/usage and the queue counts', async () => {
    const page = await context.newPage();
    const response = await page.goto(`${dashboardUrl}/`);
    expect(response?.status()).toBe(200);
    await page.waitForSelector('body[data-loaded]');

    // The page refreshes itself every 5 s; wait for the numbers rather than for a reload.
    expect(await tileAboveZero(page, 'throughput'), 'throughput on the overview').toBe(true);
    await page.screenshot({ path: join(RESULTS, 'overview.png'), fullPage: true });
    const costTile = await tileAboveZero(page, 'cost-today');
    const overview = await overviewIn(page);
    // Non-zero cost needs the worker to write the usage ledger; say so plainly when it does not.
    expect(costTile, `cost today is ${overview.usage?.today.totals.costUsd} on the overview: nothing wrote the usage ledger (does the worker record usage?)`).toBe(true);

    // The same moment: the stack is idle (every job finished), so nothing moves between the reads.
    const [counts, tenantUsage, again] = await Promise.all([queue.getJobCounts(), usage(), overviewIn(page)]);
    const stable = (view: OverviewView) => ({ queues: view.queues, usage: view.usage, failures: view.failures });
    expect(stable(again)).toEqual(stable(overview));
    const prompts = overview.queues.find((q) => q.name === QueueName.Prompts)!;
    expect(prompts.counts).toEqual(counts);
    expect(prompts.counts).toMatchObject({ completed: 4, failed: 1, active: 0, waiting: 0 });
    expect(overview.throughput.completed.reduce((a, b) => a + b, 0)).toBe(4);
    expect(overview.throughput.failed.reduce((a, b) => a + b, 0)).toBe(1);
    expect(overview.failures.byCode).toEqual([expect.objectContaining({ count: 1, code: expect.stringMatching(/UNAVAILABLE/) })]);
    expect(overview.workers.count).toBe(1);

    const usageView = overview.usage!;
    expect(usageView.day).toBe(tenantUsage.day);
    expect(usageView.monthKey).toBe(tenantUsage.month);
    for (const [mine, theirs] of [
      [usageView.today.byTenant[TENANT], tenantUsage.today],
      [usageView.month.byTenant[TENANT], tenantUsage.thisMonth],
      // One tenant only: the fleet totals are that tenant's.
      [usageView.today.totals, tenantUsage.today],
    ] as const) {
      expect(mine).toBeDefined();
      for (const field of ['jobs', 'failures', 'costNanoUsd', 'cacheHits', 'inputTokens', 'outputTokens'] as const) {
        expect(mine![field], field).toBe(theirs[field]);
      }
    }
    expect(usageView.today.totals.costNanoUsd).toBeGreaterThan(0);

    // What the page shows is what the API said.
    const tile = async (id: string) => Number(await page.getAttribute(`[data-testid="${id}"]`, 'data-value'));
    expect(await tile('cost-today')).toBe(usageView.today.totals.costUsd);
    expect(await tile('completed')).toBe(counts.completed);
    expect(await tile('failed')).toBe(counts.failed);
    expect(await tile('throughput')).toBeCloseTo(overview.throughput.perMinute);
    await expect(page.locator('#failures').textContent()).resolves.toMatch(/UNAVAILABLE/);
    // No console errors: the page works offline (Chart.js is served by the dashboard).
    expect(await page.evaluate('typeof window.Chart')).toBe('function');

    // The README's picture, once the numbers are checked; refreshed on request only
    // (UPDATE_SCREENSHOTS=1), so that running the tests leaves the work tree clean.
    await page.screenshot({ path: join(RESULTS, 'overview.png'), fullPage: true });
    if (process.env.UPDATE_SCREENSHOTS === '1') {
      mkdirSync(dirname(README_SCREENSHOT), { recursive: true });
      copyFileSync(join(RESULTS, 'overview.png'), README_SCREENSHOT);
    }
    await page.close();
  }, 60_000);

  it('charts the last hour of queue depth from the moment it opens, and shows queue wait and provider latency per link', async () => {
    // The worker samples the depth every 10 s from its start: history from before the page opened.
    await waitFor(async () => (await (await fetch(`${dashboardUrl}/api/overview`, { headers: { authorization: `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}` } })).json() as OverviewView).depthHistory.samples.length >= 2, {
      timeoutMs: 25_000,
      what: 'two depth samples from the worker',
    });
    const openedAt = Date.now();
    const page = await context.newPage();
    await page.goto(`${dashboardUrl}/`);
    await page.waitForSelector('body[data-loaded]');
    const overview = await overviewIn(page);
    expect(overview.depthHistory.samples.filter((sample) => sample.at < openedAt).length).toBeGreaterThanOrEqual(2);
    // The chart drew every sample at once, not only those since the page opened.
    const points = await page.evaluate(
      (id) => (globalThis as unknown as { Chart: { getChart(id: string): { data: { labels: unknown[] } } } }).Chart.getChart(id).data.labels.length,
      'chart-depth',
    );
    expect(points).toBe(overview.depthHistory.samples.length);

    // Queue wait: the completed jobs' enqueue → start; nothing waits now.
    expect(overview.queueWait.sampled).toBeGreaterThanOrEqual(4);
    expect(overview.queueWait.oldestWaitingMs).toBeNull();
    expect(await page.getAttribute('[data-testid="wait-p50"]', 'data-value')).toBe(String(overview.queueWait.p50Ms));
    expect(await page.getAttribute('[data-testid="wait-p95"]', 'data-value')).toBe(String(overview.queueWait.p95Ms));
    await expect(page.locator('[data-testid="oldest-waiting"]').textContent()).resolves.toBe('–');

    // Provider latency per link, as the worker measured its successful calls.
    const gemini = overview.providerLatency.links.find((link) => link.link.startsWith('gemini:'));
    expect(gemini, JSON.stringify(overview.providerLatency)).toBeDefined();
    expect(gemini!.calls).toBeGreaterThanOrEqual(4);
    expect(gemini!.p95Ms).toBeGreaterThanOrEqual(gemini!.p50Ms);
    await expect(page.locator('#latency').textContent()).resolves.toContain(gemini!.link);
    await page.locator('#wait-card').screenshot({ path: join(RESULTS, 'overview-wait.png') });
    await page.close();
  }, 60_000);

  it('serves bull-board without a request to another origin (it works offline)', async () => {
    const page = await context.newPage();
    const elsewhere: string[] = [];
    page.on('request', (request) => {
      if (!request.url().startsWith(dashboardUrl) && !request.url().startsWith('data:')) elsewhere.push(request.url());
    });
    await page.goto(`${dashboardUrl}/queues/`);
    await page.getByText(QueueName.Prompts).first().waitFor({ timeout: 15_000 });
    expect(elsewhere).toEqual([]);
    await page.close();
  }, 60_000);

  it('retries the failed job from bull-board once the fault is cleared, and it completes', async () => {
    const page = await context.newPage();
    const response = await page.goto(`${dashboardUrl}/queues/queue/${QueueName.Prompts}?status=failed`);
    expect(response?.status()).toBe(200);
    // The failed job's card: its id links to the job; the list name carries the error code
    // (our formatter) and the Error tab the message.
    const card = page.locator(`a[href*="/${QueueName.Prompts}/${failedId}"]`).locator('xpath=ancestor::div[contains(@class, "card-")][1]');
    await card.waitFor({ timeout: 15_000 });
    await expect(card.textContent()).resolves.toMatch(/generate · acme · gemini-[\w.-]+ · \[PROVIDER_UNAVAILABLE\]/);
    await card.getByText(/PROVIDER_UNAVAILABLE\].*503/).first().waitFor({ timeout: 10_000 });
    await page.screenshot({ path: join(RESULTS, 'queues-failed.png'), fullPage: true });

    await emulator.client.clearFaults();
    // Job actions are icon buttons (tooltips, no text): Retry is the one with the refresh icon.
    await card.locator('button:has(svg.lucide-refresh-cw)').first().click();
    // bull-board asks for confirmation of job actions when that setting is on.
    const confirm = page.getByRole('button', { name: 'Confirm', exact: true });
    if (await confirm.isVisible({ timeout: 1_000 }).catch(() => false)) await confirm.click();

    const view = await waitFor(async () => {
      const current = await job(failedId, 5);
      return current.status === 'completed' ? current : undefined;
    }, { timeoutMs: 30_000, what: 'the retried job to complete' });
    expect(view!.result?.costUsd).toBeGreaterThan(0);

    await page.goto(`${dashboardUrl}/queues/queue/${QueueName.Prompts}?status=completed`);
    await page.locator(`a[href*="/${QueueName.Prompts}/${failedId}"]`).waitFor({ timeout: 15_000 });
    await page.screenshot({ path: join(RESULTS, 'queues.png'), fullPage: true });
    await page.close();
  }, 60_000);

  it('says "Redis unavailable since …" while Redis hangs, keeps the last numbers, and clears once it answers', async () => {
    const page = await context.newPage();
    await page.goto(`${dashboardUrl}/`);
    await page.waitForSelector('body[data-loaded]');
    const completed = await page.getAttribute('[data-testid="completed"]', 'data-value');
    const banner = page.locator('#redis-down');
    expect(await banner.isHidden()).toBe(true);

    // Frozen, not stopped: the connection stays open and nothing answers (the worst case).
    redis.pause!();
    try {
      // The page polls every 5 s; each answer comes within 2 s.
      await banner.waitFor({ state: 'visible', timeout: 10_000 });
      await expect(banner.textContent()).resolves.toMatch(/^Redis unavailable since \d\d:\d\d:\d\d .*the numbers below are from \d\d:\d\d:\d\d/);
      expect(await page.getAttribute('[data-testid="completed"]', 'data-value')).toBe(completed);
      await page.screenshot({ path: join(RESULTS, 'overview-redis-down.png'), fullPage: true });
    } finally {
      redis.resume!();
    }
    await banner.waitFor({ state: 'hidden', timeout: 10_000 });
    await page.close();
  }, 60_000);
});
