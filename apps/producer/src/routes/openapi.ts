import { Router } from 'express';
import type { Config } from '@prompt-queue/shared';
import { methodNotAllowed, tagRoute } from '../http-errors.js';
import { buildOpenApiDocument, openApiOptions } from '../openapi/document.js';
import { REFERENCE_PAGE_CSP, renderReferencePage } from '../openapi/reference-page.js';

/**
 * `GET /openapi.json`, the OpenAPI 3.1 document, and `GET /docs`, its HTML rendering. No auth: the
 * contract is public. Both are built once, when the app is.
 */
export function openApiRouter({ config }: { config: Config }): Router {
  const document = buildOpenApiDocument(openApiOptions(config));
  const json = JSON.stringify(document);
  const page = renderReferencePage(document);
  const router = Router();
  router
    .route('/openapi.json')
    .all(tagRoute)
    .get((_req, res) => {
      res.type('application/json').set('Cache-Control', 'public, max-age=300').send(json);
    })
    .all(methodNotAllowed(['GET']));
  router
    .route('/docs')
    .all(tagRoute)
    .get((_req, res) => {
      res.type('html').set({ 'Content-Security-Policy': REFERENCE_PAGE_CSP, 'Cache-Control': 'public, max-age=300' }).send(page);
    })
    .all(methodNotAllowed(['GET']));
  return router;
}
