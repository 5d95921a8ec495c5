import { createHash, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Config } from '@prompt-queue/shared';

/** The realm browsers show in their login prompt. */
export const AUTH_REALM = 'prompt-queue';

export interface BasicCredentials {
  user: string;
  password: string;
}

/**
 * The dashboard's credentials, or `undefined` when none are configured. The config loader already
 * rejects a user without a password (and the reverse), so one check covers both.
 */
export function dashboardCredentials(config: Config): BasicCredentials | undefined {
  const { user, password } = config.dashboard;
  return user !== undefined && password !== undefined ? { user, password } : undefined;
}

/**
 * Compares two strings in time that depends on neither their content nor their lengths: both sides
 * are hashed first, so `timingSafeEqual` always sees two 32-byte buffers.
 */
export function constantTimeEqual(actual: string, expected: string): boolean {
  const digest = (value: string) => createHash('sha256').update(value, 'utf8').digest();
  return timingSafeEqual(digest(actual), digest(expected));
}

/** `Authorization: Basic base64(user:password)` → its parts, or `undefined` when malformed. */
export function parseBasicAuthorization(header: string | undefined): BasicCredentials | undefined {
  const match = /^Basic\s+([A-Za-z0-9+/=_-]+)\s*$/i.exec(header ?? '');
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  // The user name cannot contain a colon (RFC 7617); the password can.
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/**
 * HTTP basic auth for every route it is mounted in front of. Both the user and the password are
 * always compared (no early exit), so a wrong user name takes as long as a wrong password.
 */
export function basicAuth(credentials: BasicCredentials): RequestHandler {
  return (req, res, next) => {
    const given = parseBasicAuthorization(req.get('authorization'));
    if (given) {
      const userOk = constantTimeEqual(given.user, credentials.user);
      const passwordOk = constantTimeEqual(given.password, credentials.password);
      if (userOk && passwordOk) {
        next();
        return;
      }
    }
    res
      .status(401)
      .set('WWW-Authenticate', `Basic realm="${AUTH_REALM}"`)
      .type('text/plain')
      .send('Authentication required');
  };
}
