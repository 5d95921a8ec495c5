// The overview page's HTML and CSS. Static: every number is filled in by the client
// (src/client/overview.ts) from `GET api/overview`, so the page itself reveals nothing.
// URLs are relative, so the dashboard also works behind a proxy under a sub-path.

/** Content-Security-Policy of the overview: our own scripts, styles and API only. */
export const OVERVIEW_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const card = (id: string, title: string, body: string, extra = '') =>
  `<section class="card ${extra}" id="${id}"><h2>${title}</h2>${body}</section>`;

const tile = (id: string, label: string) =>
  `<div class="tile" id="tile-${id}"><div class="tile-label">${label}</div><div class="tile-value" data-testid="${id}">–</div><div class="tile-sub" id="tile-${id}-sub"></div></div>`;

const stat = (id: string, label: string) =>
  `<div class="stat"><div class="tile-label">${label}</div><div class="tile-value" data-testid="${id}">–</div></div>`;

export function overviewHtml(boardPath: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prompt-queue · overview</title>
<link rel="icon" type="image/svg+xml" href="assets/favicon.svg">
<link rel="stylesheet" href="assets/overview.css">
<script src="assets/vendor/chart.umd.min.js" defer></script>
<script src="assets/overview.js" type="module"></script>
</head>
<body>
<header>
  <h1>prompt-queue <span class="muted">ops overview</span></h1>
  <span id="read-only" class="badge" hidden>read-only</span>
  <span id="status" class="status" role="status">loading…</span>
  <nav><a href=".${boardPath}/" id="queues-link">Queues (bull-board) →</a></nav>
</header>
<div id="redis-down" class="errors redis-down" role="alert" hidden></div>
<div id="errors" class="errors" hidden></div>
<main>
  <div class="tiles">
    ${tile('depth', 'Queue depth')}
    ${tile('active', 'Active')}
    ${tile('failed', 'Failed')}
    ${tile('completed', 'Completed')}
    ${tile('throughput', 'Jobs/min (1 h)')}
    ${tile('cost-today', 'Cost today')}
    ${tile('cost-month', 'Cost this month')}
    ${tile('cache', 'Cache hits')}
    ${tile('tier-savings', 'Saved by tier today')}
    ${tile('workers', 'Live workers')}
  </div>
  <div class="grid">
    ${card('throughput-card', 'Throughput, last 60 min <span class="muted" id="throughput-source"></span>', '<div class="chart"><canvas id="chart-throughput"></canvas></div>', 'span-7')}
    ${card('depth-card', 'Queue depth, last 60 min <span class="muted">(sampled by the workers every 10 s)</span>', '<div class="chart"><canvas id="chart-depth"></canvas></div><table class="compact" id="counts-table"></table>', 'span-5')}
    ${card(
      'wait-card',
      'Queue wait and provider latency',
      `<div class="waits">${stat('oldest-waiting', 'Oldest waiting job')}${stat('wait-p50', 'Enqueue → start, p50')}${stat('wait-p95', 'Enqueue → start, p95')}</div>` +
        '<p class="muted" id="wait-sample"></p><table id="latency"></table>',
      'span-12',
    )}
    ${card('cost-daily-card', 'Cost per day by model, last 30 days (USD)', '<div class="chart"><canvas id="chart-cost-daily"></canvas></div>', 'span-7')}
    ${card('cost-hourly-card', 'Cost per hour by tenant, last 24 h (USD)', '<div class="chart"><canvas id="chart-cost-hourly"></canvas></div>', 'span-5')}
    ${card('cost-tenant-card', 'Cost by tenant', '<table id="cost-by-tenant"></table>', 'span-6')}
    ${card('cost-model-card', 'Cost by model', '<table id="cost-by-model"></table>', 'span-6')}
    ${card('limits-card', 'Rate-limit utilization (rolling minute)', '<div id="limits"></div>', 'span-7')}
    ${card('breakers-card', 'Provider links (circuit breakers)', '<table id="breakers"></table>', 'span-5')}
    ${card('links-card', 'Chain links and credentials <span class="muted">(as the workers publish them; fingerprints only)</span>', '<table id="links"></table>', 'span-12')}
    ${card('failures-card', 'Failures by error code <span class="muted" id="failures-sample"></span>', '<table id="failures"></table>', 'span-6')}
    ${card('workers-card', 'Live workers', '<table id="workers"></table>', 'span-3')}
    ${card('budgets-card', 'Budgets', '<table id="budgets"></table>', 'span-3')}
    ${card(
      'webhooks-card',
      'Webhook deliveries <span class="muted">(dead letters: the <em>webhooks</em> queue\'s failed jobs in bull-board)</span>',
      `<div class="waits webhook-stats">${stat('webhooks-pending', 'Pending')}${stat('webhooks-retrying', 'Retrying (backoff)')}${stat('webhooks-dead', 'Dead-lettered')}${stat('webhooks-delivered', 'Delivered')}</div>` +
        '<table id="webhook-errors"></table>',
      'span-12',
    )}
  </div>
</main>
</body>
</html>
`;
}

/** The overview's icon: a stack of queued bars. */
export const FAVICON_SVG =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" fill="#1d2433"/>' +
  '<rect x="7" y="8" width="18" height="4" rx="2" fill="#60a5fa"/><rect x="7" y="14" width="13" height="4" rx="2" fill="#34d399"/>' +
  '<rect x="7" y="20" width="8" height="4" rx="2" fill="#fbbf24"/></svg>';

export const OVERVIEW_CSS = `
:root { --bg: #f4f6f9; --card: #fff; --text: #1d2433; --muted: #6b7385; --line: #e3e7ee; --ok: #1f9d55; --warn: #d97706; --bad: #dc2626; --accent: #2563eb; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { display: flex; align-items: center; gap: 16px; padding: 12px 24px; background: #1d2433; color: #fff; }
header h1 { font-size: 18px; margin: 0; font-weight: 600; }
header .muted { color: #aab2c5; font-weight: 400; }
header nav { margin-left: auto; }
header a { color: #fff; text-decoration: none; border: 1px solid #4b5568; padding: 6px 12px; border-radius: 6px; }
header a:hover { background: #2d3748; }
.status { color: #aab2c5; font-size: 13px; }
.status.stale { color: #fbbf24; }
.badge { background: var(--warn); color: #fff; border-radius: 4px; padding: 2px 8px; font-size: 12px; }
.errors { margin: 12px 24px 0; padding: 8px 12px; border-radius: 6px; background: #fef2f2; color: var(--bad); border: 1px solid #fecaca; }
.redis-down { font-weight: 600; background: var(--bad); color: #fff; border-color: var(--bad); }
main { padding: 16px 24px 32px; max-width: 1600px; margin: 0 auto; }
.tiles { display: grid; grid-template-columns: repeat(9, minmax(0, 1fr)); gap: 12px; margin-bottom: 16px; }
.tile { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; min-width: 0; }
.tile-label { color: var(--muted); font-size: 12px; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.tile-value { font-size: 22px; font-weight: 600; margin-top: 2px; font-variant-numeric: tabular-nums; }
.tile-sub { color: var(--muted); font-size: 12px; min-height: 16px; }
.tile.bad .tile-value { color: var(--bad); }
.stat .tile-value.bad { color: var(--bad); }
.grid { display: grid; grid-template-columns: repeat(12, minmax(0, 1fr)); gap: 16px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 12px 16px; min-width: 0; }
.card h2 { font-size: 14px; margin: 0 0 8px; font-weight: 600; }
.card h2 .muted { font-weight: 400; }
.muted { color: var(--muted); }
.span-3 { grid-column: span 3; } .span-5 { grid-column: span 5; } .span-6 { grid-column: span 6; } .span-7 { grid-column: span 7; } .span-12 { grid-column: span 12; }
.chart { position: relative; height: 220px; }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 6px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { color: var(--muted); font-weight: 500; font-size: 12px; }
td.num, th.num { text-align: right; }
td.msg { color: var(--muted); width: 100%; max-width: 0; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
table.compact td, table.compact th { padding: 2px 6px; }
td.empty { color: var(--muted); font-style: italic; }
.state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; color: #fff; }
.state.closed { background: var(--ok); } .state.open { background: var(--bad); } .state.half-open { background: var(--warn); } .state.unknown { background: var(--muted); }
.limit { display: grid; grid-template-columns: 200px 1fr 1fr; gap: 6px 16px; align-items: center; padding: 6px 0; border-bottom: 1px solid var(--line); }
.limit:last-child { border-bottom: 0; }
.limit-name { font-weight: 500; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.limit-name small { display: block; color: var(--muted); font-weight: 400; }
.bar { position: relative; height: 18px; background: #eef1f6; border-radius: 4px; overflow: hidden; }
.bar > span { position: absolute; inset: 0 auto 0 0; background: var(--accent); }
.bar.warn > span { background: var(--warn); } .bar.bad > span { background: var(--bad); }
.bar > em { position: absolute; inset: 0; font-style: normal; font-size: 12px; line-height: 18px; padding-left: 6px; color: var(--text); white-space: nowrap; }
.pause { grid-column: 1 / -1; color: var(--bad); font-weight: 500; }
.waits { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 12px; }
.waits.webhook-stats { grid-template-columns: repeat(4, minmax(0, 1fr)); margin-bottom: 8px; }
#wait-sample { margin: 6px 0; font-size: 12px; }
@media (max-width: 1100px) {
  .tiles { grid-template-columns: repeat(3, minmax(0, 1fr)); }
  .span-3, .span-5, .span-6, .span-7 { grid-column: span 12; }
}
`;
