import type { Request, RequestHandler } from 'express';
import type { AuthMethod } from './auth.js';

/** Methods that change nothing; everything else must prove it comes from our own pages. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * Whether a request was sent by a page of this same origin, from the headers browsers set and
 * pages cannot forge: `Sec-Fetch-Site` when present (every current browser), else `Origin`, else
 * `Referer`, each compared with our own origin: scheme, host and port. The scheme counts: a page
 * on `http://` must not act on the `https://` dashboard (it could be injected on the way). Our
 * scheme is the connection's, or `X-Forwarded-Proto` (and the host `X-Forwarded-Host`) when the
 * app trusts its proxy (`dashboard.trustProxy`, Express `trust proxy`). A request with none of
 * the headers is not trusted.
 */
export function isSameOrigin(req: Request): boolean {
  const own = req.host ? originOf(`${req.protocol}://${req.host}`) : undefined;
  if (!own) return false;
  const site = req.get('sec-fetch-site');
  if (site !== undefined) return site === 'same-origin';
  const origin = req.get('origin');
  if (origin !== undefined && origin !== 'null') return originOf(origin) === own;
  const referer = req.get('referer');
  if (referer !== undefined) return originOf(referer) === own;
  return false;
}

/** `scheme://host[:port]` of a URL, default ports dropped (`https://a:443/x` → `https://a`). */
function originOf(url: string): string | undefined {
  try {
    const { origin } = new URL(url);
    return origin === 'null' ? undefined : origin;
  } catch {
    return undefined;
  }
}

/**
 * CSRF protection for every state-changing request (bull-board's retry, clean, promote, delete…):
 * a browser re-sends basic-auth credentials to any page that asks, so a hostile page could make it
 * PUT to `/queues/api/…`. Such requests must come from our own origin, or answer 403. Requests
 * authenticated with the bearer token are exempt: browsers never attach one on their own.
 * Mount after the auth middleware (it reads `res.locals.authMethod`).
 */
export function requireSameOrigin(): RequestHandler {
  return (req, res, next) => {
    const method = res.locals.authMethod as AuthMethod | undefined;
    if (SAFE_METHODS.has(req.method) || method === 'token' || isSameOrigin(req)) {
      next();
      return;
    }
    res.status(403).json({ error: { code: 'CSRF_REJECTED', message: 'Cross-origin request refused: state changes must come from the dashboard itself.' } });
  };
}
