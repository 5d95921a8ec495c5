import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';

/**
 * `Authorization: Bearer <token>` in front of the worker's endpoints that show more than up/down
 * (`/metrics` and `/status` name tenants, links and key fingerprints). The token is METRICS_TOKEN;
 * without one the endpoints are open, like `/healthz`. Compared as sha256 digests with
 * timingSafeEqual, so timing reveals neither the token's length nor a matching prefix.
 */
export function requireBearerToken(token: string | undefined): RequestHandler {
  const expected = token === undefined ? undefined : sha256(token);
  return (req, res, next) => {
    if (expected) {
      const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.get('authorization') ?? '');
      if (!match || !timingSafeEqual(sha256(match[1]!), expected)) {
        res
          .set('WWW-Authenticate', 'Bearer')
          .status(401)
          .json({ error: { code: 'UNAUTHORIZED', message: 'Send the metrics token as "Authorization: Bearer <token>".' } });
        return;
      }
    }
    next();
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
