import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { RequestHandler } from 'express';
import type { Config } from '@prompt-queue/shared';

/** The realm browsers show in their login prompt. */
export const AUTH_REALM = 'prompt-queue';

export interface BasicCredentials {
  user: string;
  password: string;
}

/** Who may use the dashboard: a basic-auth pair (browsers), a bearer token (scripts), or both. */
export interface DashboardAuth {
  basic?: BasicCredentials;
  token?: string;
}

/** How a request proved who it is; CSRF checks apply to `basic` only (browsers resend it on their own). */
export type AuthMethod = 'basic' | 'token';

/** The user name of credentials generated at start when none are configured. */
export const GENERATED_USER = 'admin';

/**
 * The configured credentials, or `undefined` when none are. The config loader already rejects a
 * user without a password (and the reverse), so one check covers both.
 */
export function configuredAuth(config: Config): DashboardAuth | undefined {
  const { user, password, token } = config.dashboard;
  const auth: DashboardAuth = {};
  if (user !== undefined && password !== undefined) auth.basic = { user, password };
  if (token !== undefined) auth.token = token;
  return auth.basic || auth.token ? auth : undefined;
}

/** Basic-auth credentials for one run: user `admin` and a random 24-character password. */
export function generatedCredentials(): BasicCredentials {
  return { user: GENERATED_USER, password: randomBytes(18).toString('base64url') };
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

/** `Authorization: Bearer <token>` → the token, or `undefined`. */
export function parseBearerAuthorization(header: string | undefined): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return match?.[1];
}

/**
 * Requires basic auth or the bearer token on every route it is mounted in front of, and records the
 * method in `res.locals.authMethod`. Both the user and the password are always compared (no early
 * exit), so a wrong user name takes as long as a wrong password. Browsers get a Basic challenge.
 */
export function requireAuth(auth: DashboardAuth): RequestHandler {
  return (req, res, next) => {
    const header = req.get('authorization');
    const basic = auth.basic && parseBasicAuthorization(header);
    if (auth.basic && basic) {
      const userOk = constantTimeEqual(basic.user, auth.basic.user);
      const passwordOk = constantTimeEqual(basic.password, auth.basic.password);
      if (userOk && passwordOk) {
        res.locals.authMethod = 'basic' satisfies AuthMethod;
        next();
        return;
      }
    }
    const token = auth.token && parseBearerAuthorization(header);
    if (auth.token && token && constantTimeEqual(token, auth.token)) {
      res.locals.authMethod = 'token' satisfies AuthMethod;
      next();
      return;
    }
    // Without basic credentials configured a challenge would only show a login prompt that cannot succeed.
    if (auth.basic) res.set('WWW-Authenticate', `Basic realm="${AUTH_REALM}"`);
    res.status(401).type('text/plain').send('Authentication required');
  };
}
