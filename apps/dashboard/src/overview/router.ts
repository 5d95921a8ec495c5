import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Router } from 'express';
import type { OverviewSource } from './collect.js';
import { FAVICON_SVG, OVERVIEW_CSP, OVERVIEW_CSS, overviewHtml } from './page.js';

/**
 * The compiled browser client. `../../dist/…` resolves to the same file from `src/overview` (tests
 * run the sources) and from `dist/overview` (the build): `npm run build` emits it.
 */
const CLIENT_SCRIPT = fileURLToPath(new URL('../../dist/public/client/overview.js', import.meta.url));

/** Chart.js's self-contained UMD build, served from node_modules: no CDN, works offline. */
const CHART_JS = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.min.js');

/**
 * The overview: the page at `/`, its JSON at `/api/overview` (polled by the page, usable by
 * scripts), the page's assets under `/assets`, and its icon. Mount behind auth.
 */
export function overviewRouter(source: OverviewSource, options: { boardPath: string }): Router {
  const router = Router();
  const html = overviewHtml(options.boardPath);

  router.get('/', (_req, res) => {
    res.set('Content-Security-Policy', OVERVIEW_CSP).set('Cache-Control', 'no-store').type('html').send(html);
  });

  router.get('/api/overview', async (_req, res) => {
    const overview = await source.read();
    res.set('Cache-Control', 'no-store').json(overview);
  });

  // Linked by the page; /favicon.ico too, for whatever asks there without reading the page.
  router.get(['/assets/favicon.svg', '/favicon.ico'], (_req, res) => {
    res.type('image/svg+xml').set('Cache-Control', 'public, max-age=86400').send(FAVICON_SVG);
  });
  router.get('/assets/overview.css', (_req, res) => {
    res.type('css').set('Cache-Control', 'no-cache').send(OVERVIEW_CSS);
  });
  router.get('/assets/overview.js', (_req, res) => {
    res.type('js').set('Cache-Control', 'no-cache').sendFile(CLIENT_SCRIPT);
  });
  router.get('/assets/vendor/chart.umd.min.js', (_req, res) => {
    res.type('js').set('Cache-Control', 'public, max-age=86400').sendFile(CHART_JS);
  });
  return router;
}
