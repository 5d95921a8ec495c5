import type { RequestHandler } from 'express';
import type { Logger } from '@prompt-queue/shared';
import { routeOf } from './http-errors.js';

/**
 * One line per request: method, route pattern, status, duration and tenant. Never the URL's
 * query, headers or body (prompts, images and keys stay out of logs). The level is checked per
 * request, so changing `logger.level` at run time takes effect at once.
 */
export function accessLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
    // Below `info` (LOG_LEVEL=warn) the line would be dropped by the transport anyway, but only
    // after winston ran redaction, timestamp and formatting on it: skip the whole thing.
    if (!logger.isLevelEnabled('info')) return next();
    const started = process.hrtime.bigint();
    res.once('close', () => {
      logger.info('request', {
        method: req.method,
        route: routeOf(req, res),
        status: res.statusCode,
        ms: Number((process.hrtime.bigint() - started) / 1_000n) / 1_000,
        tenant: typeof res.locals.tenant === 'string' ? res.locals.tenant : undefined,
        ...(res.writableFinished ? {} : { aborted: true }),
      });
    });
    next();
  };
}
