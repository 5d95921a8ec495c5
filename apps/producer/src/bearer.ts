import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import { sendError } from './http-errors.js';

/**
 * `Authorization: Bearer <METRICS_TOKEN>` in front of the endpoints machines read without a tenant
 * key (`/metrics` for Prometheus, `/scaling` for KEDA). Without a token they are open, like
 * `/healthz`. Compared as sha256 digests with timingSafeEqual, so timing reveals neither the
 * token's length nor a matching prefix.
 */
export function requireMetricsToken(token: string | undefined): RequestHandler {
  const expected = token === undefined ? undefined : sha256(token);
  return (req, res, next) => {
    if (expected) {
      const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.get('authorization') ?? '');
      if (!match || !timingSafeEqual(sha256(match[1]!), expected)) {
        res.set('WWW-Authenticate', 'Bearer');
        sendError(res, 401, 'UNAUTHORIZED', 'Send the metrics token as "Authorization: Bearer <token>".');
        return;
      }
    }
    next();
  };
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}
