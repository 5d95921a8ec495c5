import type { RequestHandler } from 'express';
import type { Logger } from '@prompt-queue/shared';
import { routeOf } from './http-errors.js';

/**
 * One line per request: method, route pattern, status, duration and tenant. Never the URL's
 * query, headers or body (prompts, images and keys stay out of logs).
 */
export function accessLog(logger: Logger): RequestHandler {
  return (req, res, next) => {
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
