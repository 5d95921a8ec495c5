// The overview page's client: polls `api/overview` and redraws tiles, tables and charts in place.
// Runs in the browser (compiled by src/client/tsconfig.json); Chart.js is the UMD build the
// dashboard serves from node_modules (window.Chart). Text from the server only ever goes in through
// textContent: failure messages come from providers and must not become markup.
import type { Chart as ChartClass, ChartConfiguration, ChartDataset } from 'chart.js';
import type { LimitView, LinkView, Overview, UsageSection } from '../overview/types.js';

const REFRESH_MS = 5_000;
const PALETTE = ['#2563eb', '#16a34a', '#d97706', '#9333ea', '#dc2626', '#0891b2', '#db2777', '#65a30d', '#4b5563', '#ca8a04'];
const STATE_ORDER = ['waiting', 'prioritized', 'delayed', 'active', 'waiting-children', 'paused', 'completed', 'failed'];

const Chart = (window as unknown as { Chart: typeof ChartClass }).Chart;
const charts = new Map<string, ChartClass>();

// ---- formatting ----
const integer = new Intl.NumberFormat('en-US');
function usd(value: number): string {
  if (value === 0) return '$0';
  if (Math.abs(value) >= 1) return `$${value.toFixed(2)}`;
  return `$${value.toLocaleString('en-US', { maximumSignificantDigits: 3, maximumFractionDigits: 12 })}`;
}
const nanoToUsd = (nano: number) => nano / 1e9;
const percent = (share: number) => `${(share * 100).toFixed(share < 0.1 ? 1 : 0)}%`;
const time = (ms: number) => new Date(ms).toLocaleTimeString('en-GB', { hour12: false });
/** A duration for people: `850 ms`, `2.3 s`, `4 min 10 s`, `1.2 h`. */
function duration(ms: number): string {
  if (ms < 1_000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1_000).toFixed(ms < 10_000 ? 1 : 0)} s`;
  if (ms < 3_600_000) return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1_000)} s`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}
function ago(ms: number, now: number): string {
  const seconds = Math.max(0, Math.round((now - ms) / 1000));
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

// ---- DOM helpers ----
function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing`);
  return element as T;
}

type Child = Node | string | number;
function el(tag: string, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
  for (const child of children) element.append(typeof child === 'number' ? String(child) : child);
  return element;
}

function setTile(id: string, value: string, sub = '', raw?: number, bad = false): void {
  const valueEl = document.querySelector<HTMLElement>(`[data-testid="${id}"]`);
  if (!valueEl) return;
  valueEl.textContent = value;
  if (raw !== undefined) valueEl.dataset.value = String(raw);
  byId(`tile-${id}-sub`).textContent = sub;
  byId(`tile-${id}`).classList.toggle('bad', bad);
}

/** Replaces a table's rows: a header, then one row per entry (a cell may be a ready <td>), or a muted line when empty. */
function fillTable(id: string, headers: string[], rows: Child[][], empty: string, numeric: number[] = []): void {
  const table = byId(id);
  const head = el('tr', {}, ...headers.map((h, i) => el('th', numeric.includes(i) ? { class: 'num' } : {}, h)));
  const body = rows.length
    ? rows.map((cells) =>
        el('tr', {}, ...cells.map((cell, i) => (cell instanceof HTMLTableCellElement ? cell : el('td', numeric.includes(i) ? { class: 'num' } : {}, cell)))),
      )
    : [el('tr', {}, el('td', { class: 'empty', colspan: String(headers.length) }, empty))];
  table.replaceChildren(el('thead', {}, head), el('tbody', {}, ...body));
}

// ---- charts ----
/** Creates the chart on first use, then only swaps its data (no flicker, no re-layout). */
function drawChart(id: string, config: ChartConfiguration): void {
  const existing = charts.get(id);
  if (existing) {
    existing.data = config.data;
    existing.update('none');
    return;
  }
  charts.set(id, new Chart(byId<HTMLCanvasElement>(id), config));
}

function stackedBars(labels: string[], datasets: ChartDataset<'bar'>[], money: boolean): ChartConfiguration {
  return {
    type: 'bar',
    data: { labels, datasets },
    options: {
      animation: false,
      maintainAspectRatio: false,
      interaction: { mode: 'index', intersect: false },
      plugins: {
        legend: { position: 'bottom', labels: { boxWidth: 12 } },
        tooltip: money ? { callbacks: { label: (item) => `${item.dataset.label ?? ''}: ${usd(Number(item.raw))}` } } : {},
      },
      scales: {
        x: { stacked: true, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12 }, grid: { display: false } },
        y: { stacked: true, beginAtZero: true, ticks: money ? { callback: (value) => usd(Number(value)) } : { precision: 0 } },
      },
    },
  };
}

/** One dataset per key (model or tenant), largest total first, for a stacked cost chart. */
function costDatasets(series: Record<string, number>[]): ChartDataset<'bar'>[] {
  const totals = new Map<string, number>();
  for (const point of series) for (const [key, nano] of Object.entries(point)) totals.set(key, (totals.get(key) ?? 0) + nano);
  return [...totals.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([key], i) => ({
      label: key,
      data: series.map((point) => nanoToUsd(point[key] ?? 0)),
      backgroundColor: PALETTE[i % PALETTE.length]!,
    }));
}

function renderCharts(view: Overview): void {
  const { throughput } = view;
  const minuteLabels = throughput.completed.map((_, i) => time(throughput.startMs + i * 60_000).slice(0, 5));
  drawChart(
    'chart-throughput',
    stackedBars(
      minuteLabels,
      [
        { label: 'completed / min', data: throughput.completed, backgroundColor: '#16a34a' },
        { label: 'failed / min', data: throughput.failed, backgroundColor: '#dc2626' },
      ],
      false,
    ),
  );

  // Sampled by the workers into Redis: the last hour from the moment the page opens.
  const samples = view.depthHistory.samples;
  drawChart('chart-depth', {
    type: 'line',
    data: {
      labels: samples.map((sample) => time(sample.at).slice(0, 5)),
      datasets: [
        { label: 'waiting', data: samples.map((s) => s.waiting + s.prioritized), borderColor: '#2563eb', backgroundColor: 'rgba(37,99,235,0.15)', fill: true, pointRadius: 0, tension: 0.2 },
        { label: 'delayed', data: samples.map((s) => s.delayed), borderColor: '#9333ea', pointRadius: 0, tension: 0.2 },
        { label: 'active', data: samples.map((s) => s.active), borderColor: '#d97706', pointRadius: 0, tension: 0.2 },
      ],
    },
    options: {
      animation: false,
      maintainAspectRatio: false,
      plugins: { legend: { position: 'bottom', labels: { boxWidth: 12 } } },
      scales: { x: { ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 6 }, grid: { display: false } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
    },
  });

  const usage = view.usage;
  if (!usage) return;
  drawChart('chart-cost-daily', stackedBars(usage.daily.map((d) => d.day.slice(5)), costDatasets(usage.daily.map((d) => d.costByModel)), true));
  drawChart(
    'chart-cost-hourly',
    stackedBars(usage.hourly.map((h) => `${h.hour.slice(11)}h`), costDatasets(usage.hourly.map((h) => h.costByTenant)), true),
  );
}

// ---- sections ----
function renderTiles(view: Overview): void {
  const prompts = view.queues.find((queue) => queue.name === 'prompts') ?? view.queues[0];
  const counts = prompts?.counts ?? {};
  setTile('depth', integer.format(prompts?.depth ?? 0), `${integer.format(counts.waiting ?? 0)} waiting · ${integer.format(counts.delayed ?? 0)} delayed`, prompts?.depth);
  setTile('active', integer.format(counts.active ?? 0), '', counts.active);
  setTile('failed', integer.format(counts.failed ?? 0), `${integer.format(view.throughput.failed.reduce((a, b) => a + b, 0))} in the last hour`, counts.failed, (counts.failed ?? 0) > 0);
  setTile('completed', integer.format(counts.completed ?? 0), `${integer.format(view.throughput.completed.reduce((a, b) => a + b, 0))} in the last hour`, counts.completed);
  const perMinute = view.throughput.perMinute;
  const lastMinutes = view.throughput.completed.slice(-5).reduce((a, b) => a + b, 0) + view.throughput.failed.slice(-5).reduce((a, b) => a + b, 0);
  setTile('throughput', perMinute.toFixed(perMinute < 10 ? 2 : 0), `${integer.format(lastMinutes)} in the last 5 min`, perMinute);
  const usage = view.usage;
  if (usage) {
    const today = usage.today.totals;
    setTile('cost-today', usd(today.costUsd), `${integer.format(today.jobs)} jobs · ${integer.format(today.failures)} failed`, today.costUsd);
    setTile('cost-month', usd(usage.month.totals.costUsd), `${integer.format(usage.month.totals.jobs)} jobs (${usage.monthKey})`, usage.month.totals.costUsd);
    const rate = usage.cacheHitRateToday;
    setTile('cache', rate === null ? '–' : percent(rate), `${integer.format(today.cacheHits)} · saved ${usd(today.savedUsd)}`, rate ?? 0);
    // Cost saved by tier (usage ledger): Batch API and Flex vs standard prices, and the cache's saving.
    const nano = (value: number | undefined): number => (value ?? 0) / 1e9;
    const batchSaved = nano(today.batchSavedNanoUsd);
    const flexSaved = nano(today.flexSavedNanoUsd);
    setTile('tier-savings', usd(batchSaved + flexSaved + today.savedUsd), `batch ${usd(batchSaved)} · flex ${usd(flexSaved)} · cache ${usd(today.savedUsd)}`, batchSaved + flexSaved);
  }
  setTile('workers', integer.format(view.workers.count), view.workers.count === 0 ? 'nothing consumes the queue' : '', view.workers.count, view.workers.count === 0);
}

function renderCounts(view: Overview): void {
  const rows = view.queues.flatMap((queue) =>
    STATE_ORDER.filter((state) => state in queue.counts).map((state) => [
      view.queues.length > 1 ? `${queue.name} · ${state}` : state,
      integer.format(queue.counts[state] ?? 0),
    ]),
  );
  fillTable('counts-table', ['state', 'jobs'], rows, 'no queues', [1]);
}

function usageRows(byKey: UsageSection['today']['byTenant'], month: UsageSection['month']['byTenant']): Child[][] {
  const keys = [...new Set([...Object.keys(byKey), ...Object.keys(month)])].sort(
    (a, b) => (month[b]?.costNanoUsd ?? 0) - (month[a]?.costNanoUsd ?? 0) || a.localeCompare(b),
  );
  return keys.map((key) => {
    const today = byKey[key];
    const m = month[key];
    return [
      key,
      integer.format(today?.jobs ?? 0),
      integer.format((today?.inputTokens ?? 0) + (today?.outputTokens ?? 0) + (today?.thoughtsTokens ?? 0)),
      usd(today?.costUsd ?? 0),
      integer.format(today?.cacheHits ?? 0),
      usd(today?.savedUsd ?? 0),
      usd(m?.costUsd ?? 0),
    ];
  });
}

function renderCosts(view: Overview): void {
  const usage = view.usage;
  if (!usage) return;
  const headers = ['', 'jobs today', 'tokens today', 'cost today', 'cache hits', 'saved', 'cost this month'];
  fillTable('cost-by-tenant', ['tenant', ...headers.slice(1)], usageRows(usage.today.byTenant, usage.month.byTenant), 'no usage recorded yet', [1, 2, 3, 4, 5, 6]);
  fillTable('cost-by-model', ['model', ...headers.slice(1)], usageRows(usage.today.byModel, usage.month.byModel), 'no usage recorded yet', [1, 2, 3, 4, 5, 6]);
}

function bar(used: number, limit: number, unit: string): HTMLElement {
  if (limit <= 0) return el('div', { class: 'bar' }, el('em', {}, `${integer.format(used)} ${unit} · no limit`));
  const share = used / limit;
  const fill = el('span');
  fill.style.width = `${Math.min(100, share * 100).toFixed(1)}%`;
  const level = share >= 0.95 ? 'bar bad' : share >= 0.8 ? 'bar warn' : 'bar';
  return el('div', { class: level, title: `${used} of ${limit} ${unit}` }, fill, el('em', {}, `${integer.format(used)} / ${integer.format(limit)} ${unit} (${percent(share)})`));
}

function renderLimits(view: Overview): void {
  const container = byId('limits');
  const now = view.generatedAt;
  const rows = view.limits.map((limit: LimitView) => {
    const learned = limit.learned
      ? ` · learned ${[limit.learned.rpm !== undefined ? `${limit.learned.rpm} rpm` : '', limit.learned.tpm !== undefined ? `${limit.learned.tpm} tpm` : ''].filter(Boolean).join(', ')} until ${time(limit.learned.expiresAt)}`
      : '';
    const slowStart = limit.slowStart !== null ? ` · slow start: ${limit.slowStart} calls in flight` : '';
    const scope = `${limit.provider}${limit.project !== 'default' ? ` · ${limit.project}` : ''}${limit.configured ? '' : ' · no limits configured'}${learned}${slowStart}`;
    const row = el('div', { class: 'limit' }, el('div', { class: 'limit-name', title: scope }, limit.model, el('small', {}, scope)), bar(limit.requests, limit.rpmLimit, 'req/min'), bar(limit.tokens, limit.tpmLimit, 'tok/min'));
    if (limit.pausedUntil !== null && limit.pausedUntil > now) {
      const what = limit.pauseReason === 'daily-quota' ? 'Daily quota spent: paused fleet-wide, the next link of the chain serves, until the reset at' : 'Fleet-wide 429 pause until';
      row.append(el('div', { class: 'pause' }, `${what} ${time(limit.pausedUntil)} (${Math.ceil((limit.pausedUntil - now) / 1000)} s left)`));
    }
    return row;
  });
  container.replaceChildren(...(rows.length ? rows : [el('p', { class: 'muted' }, 'No rate-limit scopes.')]));
}

function renderBreakers(view: Overview): void {
  const now = view.generatedAt;
  fillTable(
    'breakers',
    ['link', 'state', 'since', 'retry at'],
    view.breakers.map((b) => [
      b.link,
      el('span', { class: `state ${b.state}` }, b.state),
      b.since ? `${time(b.since)} (${ago(b.since, now)})` : '–',
      b.retryAt ? time(b.retryAt) : '–',
    ]),
    'No breaker states published yet (the worker writes them as links change state).',
  );
}

/** Whatever the provider: the dashboard shows the fields every published link has. */
function renderLinks(view: Overview): void {
  fillTable(
    'links',
    ['link', 'provider', 'model', 'limiter scope', 'limits', 'credentials', 'published'],
    view.links.map((link: LinkView) => [
      link.id,
      link.provider,
      link.model,
      `${link.limitKey.provider} · ${link.limitKey.project}`,
      `${link.limits.rpm > 0 ? `${integer.format(link.limits.rpm)} rpm` : '∞ rpm'} / ${link.limits.tpm > 0 ? `${integer.format(link.limits.tpm)} tpm` : '∞ tpm'}`,
      link.credentials.length === 0
        ? '–'
        : link.credentials
            .map((credential) => `${credential.fingerprint} ${credential.state}${credential.detail ? ` (${credential.detail})` : ''}`)
            .join(', '),
      `${ago(link.updatedAt, view.generatedAt)} by ${link.workerId}`,
    ]),
    'No links published (the workers publish theirs at start and every 15 s).',
  );
}

function renderFailures(view: Overview): void {
  const { failures } = view;
  byId('failures-sample').textContent = `(last ${failures.limit} failures${failures.sampled < failures.limit ? `: ${failures.sampled} found` : ''})`;
  fillTable(
    'failures',
    ['code', 'count', 'latest message', 'latest'],
    failures.byCode.map((group) => {
      const message = el('td', { class: 'msg', title: group.lastMessage }, group.lastMessage);
      return [group.code, integer.format(group.count), message, group.lastAt ? ago(group.lastAt, view.generatedAt) : '–'];
    }),
    'No failed jobs.',
    [1],
  );
}

function renderWorkers(view: Overview): void {
  fillTable(
    'workers',
    ['worker', 'connected'],
    view.workers.list.map((w) => [w.name, w.ageSeconds !== null ? ago(view.generatedAt - w.ageSeconds * 1000, view.generatedAt).replace(' ago', '') : '–']),
    'No worker is connected.',
  );
}

function renderBudgets(view: Overview): void {
  const rows: Child[][] = [];
  for (const { tenant, remaining } of view.budgets) {
    for (const [period, state] of [['day', remaining.daily], ['month', remaining.monthly]] as const) {
      if (!state) continue;
      const share = state.limitNanoUsd > 0 ? (state.spentNanoUsd + state.reservedNanoUsd) / state.limitNanoUsd : 0;
      rows.push([`${tenant} · ${period}`, bar(Math.round(nanoToUsd(state.spentNanoUsd) * 100), Math.round(nanoToUsd(state.limitNanoUsd) * 100), '¢'), percent(share)]);
    }
  }
  fillTable('budgets', ['tenant', 'spent of limit', 'used'], rows, 'No tenant budgets configured.', [2]);
}

function setCount(id: string, value: number, bad = false): void {
  const valueEl = document.querySelector<HTMLElement>(`[data-testid="${id}"]`);
  if (!valueEl) return;
  valueEl.textContent = integer.format(value);
  valueEl.dataset.value = String(value);
  valueEl.classList.toggle('bad', bad);
}

/** Delivery counts, and each tenant's newest errors (URLs already without their query string). */
function renderWebhooks(view: Overview): void {
  const { webhooks } = view;
  setCount('webhooks-pending', webhooks.pending);
  setCount('webhooks-retrying', webhooks.retrying, webhooks.retrying > 0);
  setCount('webhooks-dead', webhooks.deadLettered, webhooks.deadLettered > 0);
  setCount('webhooks-delivered', webhooks.delivered);
  fillTable(
    'webhook-errors',
    ['tenant', 'when', 'event', 'attempt', 'code', 'url', 'message'],
    webhooks.recentErrors.flatMap(({ tenant, errors }) =>
      errors.map((error) => [
        tenant,
        ago(error.at, view.generatedAt),
        error.eventId,
        `${error.attempt}${error.deadLettered ? ' (dead letter)' : ''}`,
        error.code,
        error.url,
        el('td', { class: 'msg', title: error.message }, error.message),
      ]),
    ),
    'No recent delivery errors.',
    [3],
  );
}

function setStat(id: string, ms: number | null): void {
  const valueEl = document.querySelector<HTMLElement>(`[data-testid="${id}"]`);
  if (!valueEl) return;
  valueEl.textContent = ms === null ? '–' : duration(ms);
  valueEl.dataset.value = ms === null ? '' : String(ms);
}

function renderWait(view: Overview): void {
  const wait = view.queueWait;
  setStat('oldest-waiting', wait.oldestWaitingMs);
  setStat('wait-p50', wait.p50Ms);
  setStat('wait-p95', wait.p95Ms);
  byId('wait-sample').textContent =
    `Enqueue → start of the attempt that completed, over the newest ${integer.format(wait.sampled)} completed jobs` +
    `${wait.sampled < wait.limit ? '' : ` (at most ${integer.format(wait.limit)})`}. ` +
    `Provider latency: successful calls of the last ${Math.round(view.providerLatency.windowMs / 60_000)} min, as the workers measured them.`;
  fillTable(
    'latency',
    ['link', `calls (${Math.round(view.providerLatency.windowMs / 60_000)} min)`, 'p50', 'p95'],
    view.providerLatency.links.map((link) => [link.link, integer.format(link.calls), duration(link.p50Ms), duration(link.p95Ms)]),
    'No provider calls recorded in this window.',
    [1, 2, 3],
  );
}

function renderErrors(view: Overview): void {
  // Redis being down has a banner of its own.
  const errors = view.errors.filter((e) => e.section !== 'redis');
  const box = byId('errors');
  box.hidden = errors.length === 0;
  box.textContent = errors.map((e) => `${e.section}: ${e.message}`).join(' · ');
}

/** When the numbers on the page were last read from Redis (kept while it is unavailable). */
let lastReadAt: number | undefined;

/**
 * The banner while Redis is unavailable. The page then keeps the last numbers it read (marked by
 * their time) rather than redrawing the empty sections; returns whether Redis is up.
 */
function renderRedis(view: Overview): boolean {
  const banner = byId('redis-down');
  const redis = view.redis;
  banner.hidden = redis.status === 'up';
  if (redis.status === 'up') return true;
  const shown = lastReadAt === undefined ? 'nothing to show yet' : `the numbers below are from ${time(lastReadAt)}`;
  banner.textContent = `Redis unavailable since ${time(redis.since)} (${ago(redis.since, view.generatedAt)}; ${redis.reason}): ${shown}.`;
  return false;
}

function render(view: Overview): void {
  if (!renderRedis(view)) {
    // The sections' own errors are the outage's echo: the banner says it once.
    byId('errors').hidden = true;
    return;
  }
  lastReadAt = view.generatedAt;
  byId('read-only').hidden = !view.readOnly;
  byId('throughput-source').textContent = view.throughput.source === 'metrics' ? '(BullMQ metrics)' : '(from finished jobs)';
  renderErrors(view);
  renderTiles(view);
  renderCounts(view);
  renderWait(view);
  renderCosts(view);
  renderLimits(view);
  renderBreakers(view);
  renderLinks(view);
  renderFailures(view);
  renderWorkers(view);
  renderBudgets(view);
  renderWebhooks(view);
  renderCharts(view);
}

// ---- polling ----
async function refresh(): Promise<void> {
  const status = byId('status');
  try {
    const response = await fetch('api/overview', { cache: 'no-store', headers: { accept: 'application/json' } });
    if (!response.ok) throw new Error(response.status === 401 ? 'signed out: reload the page' : `HTTP ${response.status}`);
    const view = (await response.json()) as Overview;
    render(view);
    const up = view.redis.status === 'up';
    status.textContent = up ? `updated ${time(view.generatedAt)} · every ${REFRESH_MS / 1000} s` : `Redis unavailable; retrying every ${REFRESH_MS / 1000} s`;
    status.classList.toggle('stale', !up);
    document.body.dataset.loaded = String(view.generatedAt);
  } catch (error) {
    status.textContent = `refresh failed (${error instanceof Error ? error.message : String(error)}); retrying`;
    status.classList.add('stale');
  }
}

async function loop(): Promise<void> {
  // Paused while the tab is hidden; refreshed at once when it shows again.
  if (!document.hidden || !document.body.dataset.loaded) await refresh();
  setTimeout(() => void loop(), REFRESH_MS);
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') void refresh();
});
void loop();
