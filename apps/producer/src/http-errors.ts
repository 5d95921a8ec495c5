import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { z } from 'zod';
import { isPromptQueueError, type ErrorCode, type Logger } from '@prompt-queue/shared';
import { issuesOf, zodIssues, type Issue } from './requests.js';
import { isRedisUnavailableError } from './redis-availability.js';

/**
 * Every error answer is `{ error: { code, message, details? } }`, and it is built here only.
 * Bad input never becomes a 500: body-parser errors, our PromptQueueErrors and zod errors map to
 * their 4xx, Redis outages to 503, and only what is left (a bug) is a logged 500.
 */

export function sendError(res: Response, status: number, code: ErrorCode, message: string, details?: Issue[]): void {
  res.locals.errorCode = code; // for the rejections metric
  res.status(status).json({ error: { code, message, ...(details && details.length > 0 ? { details } : {}) } });
}

interface HttpError {
  status: number;
  code: ErrorCode;
  message: string;
  details?: Issue[];
}

/** body-parser's `type`s; the request never reached our code. */
function bodyParserError(type: string, error: { limit?: unknown }): HttpError | undefined {
  switch (type) {
    case 'entity.parse.failed':
      return { status: 400, code: 'INVALID_JSON', message: 'The request body is not valid JSON.' };
    case 'entity.too.large':
      return { status: 413, code: 'PAYLOAD_TOO_LARGE', message: `The request body is larger than the ${String(error.limit)} bytes allowed.` };
    case 'encoding.unsupported':
      return { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'Unsupported Content-Encoding; send identity, gzip, deflate or br.' };
    case 'charset.unsupported':
      return { status: 415, code: 'UNSUPPORTED_MEDIA_TYPE', message: 'Unsupported charset; send JSON as UTF-8.' };
    case 'request.aborted':
    case 'request.size.invalid':
      return { status: 400, code: 'VALIDATION_FAILED', message: 'The request body was incomplete.' };
    default:
      return undefined;
  }
}

export function toHttpError(error: unknown): HttpError {
  if (isPromptQueueError(error)) {
    const details = error.details?.issues ? issuesOf(error) : undefined;
    return { status: error.httpStatus, code: error.code, message: error.message, ...(details ? { details } : {}) };
  }
  if (error instanceof z.ZodError) {
    const details = zodIssues(error);
    return { status: 400, code: 'VALIDATION_FAILED', message: `Invalid request: ${details[0]?.path || 'body'}: ${details[0]?.message ?? ''}`, details };
  }
  if (isRedisUnavailableError(error)) {
    return { status: 503, code: 'REDIS_UNAVAILABLE', message: 'Redis is not reachable; retry shortly.' };
  }
  const { type, status, expose } = (error ?? {}) as { type?: unknown; status?: unknown; expose?: unknown };
  const fromBodyParser = typeof type === 'string' ? bodyParserError(type, error as { limit?: unknown }) : undefined;
  if (fromBodyParser) return fromBodyParser;
  // Other client errors raised by Express itself (a malformed %-escape in the path, …).
  if (typeof status === 'number' && status >= 400 && status < 500 && expose !== false) {
    if (status === 404) return { status, code: 'NOT_FOUND', message: 'Not found.' };
    return { status: 400, code: 'VALIDATION_FAILED', message: error instanceof Error ? error.message : 'Bad request.' };
  }
  return { status: 500, code: 'INTERNAL', message: 'Internal error.' };
}

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error: unknown, req: Request, res: Response, next) => {
    if (res.headersSent) {
      next(error); // Express ends the connection.
      return;
    }
    const mapped = toHttpError(error);
    if (mapped.code === 'INTERNAL') {
      // Never the body: it may hold prompts and images. The logger redacts known fields anyway.
      logger.error('unhandled error', {
        method: req.method,
        route: routeOf(req, res),
        error: error instanceof Error ? { name: error.name, message: error.message, stack: error.stack } : String(error),
      });
    } else if (mapped.code === 'REDIS_UNAVAILABLE') {
      logger.debug('redis unavailable', { route: routeOf(req, res), error: error instanceof Error ? error.message : String(error) });
    }
    sendError(res, mapped.status, mapped.code, mapped.message, mapped.details);
  };
}

/** Unknown routes. */
export const notFound: RequestHandler = (_req, res) => sendError(res, 404, 'NOT_FOUND', 'No such route.');

/** A known path with a method it does not serve (answers 405 with `Allow`). */
export function methodNotAllowed(allowed: string[]): RequestHandler {
  return (req, res) => {
    res.set('Allow', allowed.join(', '));
    sendError(res, 405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed here; use ${allowed.join(' or ')}.`);
  };
}

/** The route pattern for logs (`/v1/jobs/:id`), never the raw URL. Set by `tagRoute`. */
export function routeOf(_req: Request, res: Response): string {
  return typeof res.locals.route === 'string' ? res.locals.route : '(unmatched)';
}

/** First handler of every route: remembers its pattern for the access log and error logs. */
export const tagRoute: RequestHandler = (req, res, next) => {
  res.locals.route = `${req.baseUrl}${typeof req.route?.path === 'string' ? req.route.path : ''}`;
  next();
};
