import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { DEVELOPMENT_API_KEY, usesDevelopmentApiKey, type Config } from '@prompt-queue/shared';
import { sendError } from './http-errors.js';

/**
 * Bearer API keys, one or more per tenant. Keys may be configured as `sha256:<hex>` so the
 * configuration never holds a usable secret. Every comparison is between two sha256 digests with
 * timingSafeEqual, and every configured key is compared, so timing reveals neither a key's prefix
 * nor which entry matched.
 */
export class ApiKeys {
  private readonly entries: { tenant: string; digest: Buffer }[];

  constructor(entries: readonly { tenant: string; key: string }[]) {
    this.entries = entries.map(({ tenant, key }) => {
      const hashed = /^sha256:([0-9a-fA-F]{64})$/.exec(key);
      return { tenant, digest: hashed ? Buffer.from(hashed[1]!, 'hex') : sha256(key) };
    });
  }

  /** Configured keys, or the development tenant `dev` / `dev-key` when there are none. */
  static fromConfig(config: Config): ApiKeys {
    return new ApiKeys(usesDevelopmentApiKey(config) ? [DEVELOPMENT_API_KEY] : config.producer.apiKeys);
  }

  /** The tenant a presented key belongs to, if any. */
  tenantFor(presented: string): string | undefined {
    const digest = sha256(presented);
    let tenant: string | undefined;
    for (const entry of this.entries) {
      if (timingSafeEqual(entry.digest, digest) && tenant === undefined) tenant = entry.tenant;
    }
    return tenant;
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** Sets the caller's tenant (read it with `tenantOf`) or answers 401. */
export function authenticate(keys: ApiKeys): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.get('authorization') ?? '');
    const tenant = match ? keys.tenantFor(match[1]!) : undefined;
    if (tenant === undefined) {
      res.set('WWW-Authenticate', 'Bearer');
      sendError(res, 401, 'UNAUTHORIZED', match ? 'The API key is not valid.' : 'Send an API key as "Authorization: Bearer <key>".');
      return;
    }
    res.locals.tenant = tenant;
    next();
  };
}

export function tenantOf(res: Response): string {
  const tenant: unknown = res.locals.tenant;
  if (typeof tenant !== 'string') throw new Error('tenantOf() used on a route without authenticate()');
  return tenant;
}
