// Google's OAuth 2.0 token endpoint for service accounts (the JWT-bearer grant), and the
// access tokens it issues, which the Vertex routes accept as `Authorization: Bearer`.
//
// A test generates a key pair, registers the PUBLIC half here (client_email + key id) and
// gives the private half to google-auth-library in a key file. The library signs an RS256
// JWT and POSTs `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<jwt>`;
// this module checks it as Google does and answers Google's JSON, including its errors:
// `{"error":"invalid_grant","error_description":"…"}` with HTTP 400.
//
// google-auth-library 10.x signs `aud = https://oauth2.googleapis.com/token` and sends no
// `kid` whatever the key file's token_uri says, so both that audience and this endpoint's
// own URL are accepted, and a missing `kid` means "try every live key of the account".

import { createHash, randomBytes, verify } from 'node:crypto';

export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** The audience google-auth-library puts in every assertion, whatever token_uri says. */
export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
/** Path of the emulator's token endpoint; a key file's token_uri is `<emulator>/oauth2/token`. */
export const TOKEN_PATH = '/oauth2/token';

/** The public half of a service-account key, as registered with the emulator. */
export interface ServiceAccountKey {
  /** The account's client_email (the JWT's `iss`). */
  clientEmail: string;
  /** private_key_id in the key file (the JWT header's `kid`, when sent). */
  keyId: string;
  /** SPKI or PKCS#1 PEM of the RSA public key. */
  publicKeyPem: string;
  /** The account's project (informational). */
  projectId?: string;
}

/** Why an exchange or an access token was refused, for counters and tests. */
export type OAuthRejection =
  | 'malformed' | 'unsupported_grant_type' | 'unknown_account' | 'unknown_key' | 'bad_signature' | 'revoked_key'
  | 'bad_audience' | 'expired_assertion' | 'lifetime_too_long' | 'missing_scope';

export type TokenCheck =
  | { ok: true; clientEmail: string; keyId: string; scope: string }
  | { ok: false; reason: 'missing' | 'unknown' | 'expired' | 'revoked' };

export interface OAuthAccountStats {
  clientEmail: string;
  projectId?: string;
  keys: { keyId: string; revoked: boolean; fingerprint: string }[];
  /** Access tokens issued to this account since the last reset. */
  tokensIssued: number;
}

export interface OAuthStats {
  tokenTtlSeconds: number;
  tokensIssued: number;
  /** Tokens not yet expired (and not revoked). */
  activeTokens: number;
  /** Refused exchanges by reason. */
  rejected: Partial<Record<OAuthRejection, number>>;
  /** Vertex calls refused at the door by reason (missing, unknown, expired, revoked). */
  unauthenticated: Partial<Record<'missing' | 'unknown' | 'expired' | 'revoked', number>>;
  accounts: OAuthAccountStats[];
}

export interface OAuthReply { status: number; body: unknown }

interface KeyRecord { key: ServiceAccountKey; revoked: boolean }
interface Account { clientEmail: string; projectId?: string; keys: Map<string, KeyRecord>; tokensIssued: number }
interface IssuedToken { clientEmail: string; keyId: string; scope: string; expiresAt: number }

const GRANT_ERROR: Record<OAuthRejection, { error: string; description: string }> = {
  malformed: { error: 'invalid_grant', description: 'Invalid JWT: could not be parsed.' },
  unsupported_grant_type: { error: 'unsupported_grant_type', description: 'Invalid grant_type: ' },
  unknown_account: { error: 'invalid_grant', description: 'Invalid grant: account not found' },
  unknown_key: { error: 'invalid_grant', description: 'Invalid JWT Signature.' },
  bad_signature: { error: 'invalid_grant', description: 'Invalid JWT Signature.' },
  revoked_key: { error: 'invalid_grant', description: 'Invalid JWT Signature.' },
  bad_audience: { error: 'invalid_grant', description: 'Invalid JWT: Failed audience check.' },
  expired_assertion: {
    error: 'invalid_grant',
    description: 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
  },
  lifetime_too_long: {
    error: 'invalid_grant',
    description: 'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.',
  },
  missing_scope: { error: 'invalid_scope', description: 'Invalid OAuth scope or ID token audience provided.' },
};

/** Clock skew allowed on `iat` (Google tolerates a few minutes). */
const SKEW_SECONDS = 300;

function decodeSegment(segment: string): Record<string, unknown> | undefined {
  try {
    const value = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** First 8 hex of sha256 of the public key PEM: safe to show, identifies the key. */
export function publicKeyFingerprint(pem: string): string {
  return createHash('sha256').update(pem.trim()).digest('hex').slice(0, 8);
}

export class OAuthServer {
  private accounts = new Map<string, Account>();
  private tokens = new Map<string, IssuedToken>();
  private rejected: Partial<Record<OAuthRejection, number>> = {};
  private unauthenticated: Partial<Record<'missing' | 'unknown' | 'expired' | 'revoked', number>> = {};
  private issued = 0;

  constructor(
    private readonly now: () => number = Date.now,
    /** Lifetime of issued access tokens, s (Google: 3600). Short values let tests see refreshes. */
    public tokenTtlSeconds = 3600,
  ) {}

  /** Registers (or replaces) one key of an account; an account may hold several keys. */
  register(key: ServiceAccountKey): void {
    if (!key.clientEmail || !key.keyId || !key.publicKeyPem) throw new Error('clientEmail, keyId and publicKeyPem are required');
    if (!key.publicKeyPem.includes('PUBLIC KEY')) throw new Error('publicKeyPem must be a PEM public key (never send the private key)');
    let account = this.accounts.get(key.clientEmail);
    if (!account) {
      account = { clientEmail: key.clientEmail, keys: new Map(), tokensIssued: 0 };
      this.accounts.set(key.clientEmail, account);
    }
    if (key.projectId !== undefined) account.projectId = key.projectId;
    account.keys.set(key.keyId, { key: { ...key }, revoked: false });
  }

  /** Revokes a key (like deleting it in IAM): new exchanges fail and its tokens stop working. */
  revokeKey(keyId: string): boolean {
    let found = false;
    for (const account of this.accounts.values()) {
      const record = account.keys.get(keyId);
      if (record) {
        record.revoked = true;
        found = true;
      }
    }
    return found;
  }

  /** Makes every issued access token expired now; returns how many were live. */
  expireAllTokens(): number {
    const now = this.now();
    let live = 0;
    for (const token of this.tokens.values()) {
      if (token.expiresAt > now) live++;
      token.expiresAt = Math.min(token.expiresAt, now);
    }
    return live;
  }

  /** Clears counts (accounts, keys and tokens stay). */
  resetCounts(): void {
    this.issued = 0;
    this.rejected = {};
    this.unauthenticated = {};
    for (const account of this.accounts.values()) account.tokensIssued = 0;
  }

  stats(): OAuthStats {
    const now = this.now();
    let activeTokens = 0;
    for (const t of this.tokens.values()) if (t.expiresAt > now && !this.isRevoked(t)) activeTokens++;
    return {
      tokenTtlSeconds: this.tokenTtlSeconds,
      tokensIssued: this.issued,
      activeTokens,
      rejected: { ...this.rejected },
      unauthenticated: { ...this.unauthenticated },
      accounts: [...this.accounts.values()].map((a) => ({
        clientEmail: a.clientEmail,
        ...(a.projectId !== undefined ? { projectId: a.projectId } : {}),
        keys: [...a.keys.values()].map((k) => ({ keyId: k.key.keyId, revoked: k.revoked, fingerprint: publicKeyFingerprint(k.key.publicKeyPem) })),
        tokensIssued: a.tokensIssued,
      })),
    };
  }

  private isRevoked(token: IssuedToken): boolean {
    return this.accounts.get(token.clientEmail)?.keys.get(token.keyId)?.revoked !== false;
  }

  /** Checks an access token from `Authorization: Bearer`. */
  authenticate(token: string | undefined): TokenCheck {
    const result = this.check(token);
    if (!result.ok) this.unauthenticated[result.reason] = (this.unauthenticated[result.reason] ?? 0) + 1;
    return result;
  }

  private check(token: string | undefined): TokenCheck {
    if (!token) return { ok: false, reason: 'missing' };
    const issued = this.tokens.get(token);
    if (!issued) return { ok: false, reason: 'unknown' };
    if (this.isRevoked(issued)) return { ok: false, reason: 'revoked' };
    if (issued.expiresAt <= this.now()) return { ok: false, reason: 'expired' };
    return { ok: true, clientEmail: issued.clientEmail, keyId: issued.keyId, scope: issued.scope };
  }

  /**
   * Handles a POST to the token endpoint. `form` is the x-www-form-urlencoded body (JSON is
   * accepted too); `audiences` are the URLs this endpoint answers to.
   */
  exchange(form: string, contentType: string | undefined, audiences: readonly string[]): OAuthReply {
    let params: URLSearchParams;
    if (contentType?.includes('application/json')) {
      try {
        params = new URLSearchParams(JSON.parse(form) as Record<string, string>);
      } catch {
        params = new URLSearchParams();
      }
    } else {
      params = new URLSearchParams(form);
    }
    const grantType = params.get('grant_type');
    if (grantType !== JWT_BEARER_GRANT) {
      this.count('unsupported_grant_type');
      return { status: 400, body: { error: 'unsupported_grant_type', error_description: `Invalid grant_type: ${grantType ?? ''}` } };
    }
    const assertion = params.get('assertion');
    if (!assertion) return { status: 400, body: { error: 'invalid_request', error_description: 'Missing required parameter: assertion' } };
    const outcome = this.verifyAssertion(assertion, audiences);
    if (!outcome.ok) return this.refuse(outcome.reason);

    const token = `ya29.emu-${randomBytes(24).toString('base64url')}`;
    const expiresIn = this.tokenTtlSeconds;
    this.tokens.set(token, { clientEmail: outcome.clientEmail, keyId: outcome.keyId, scope: outcome.scope, expiresAt: this.now() + expiresIn * 1000 });
    this.pruneTokens();
    this.issued++;
    const account = this.accounts.get(outcome.clientEmail);
    if (account) account.tokensIssued++;
    return { status: 200, body: { access_token: token, expires_in: expiresIn, token_type: 'Bearer' } };
  }

  private refuse(reason: OAuthRejection): OAuthReply {
    this.count(reason);
    const e = GRANT_ERROR[reason];
    return { status: 400, body: { error: e.error, error_description: e.description } };
  }

  private count(reason: OAuthRejection): void {
    this.rejected[reason] = (this.rejected[reason] ?? 0) + 1;
  }

  /** Drops tokens that expired more than an hour ago, so a long run does not grow without bound. */
  private pruneTokens(): void {
    if (this.tokens.size < 10_000) return;
    const cutoff = this.now() - 3_600_000;
    for (const [k, t] of this.tokens) if (t.expiresAt < cutoff) this.tokens.delete(k);
  }

  private verifyAssertion(
    jwt: string, audiences: readonly string[],
  ): { ok: true; clientEmail: string; keyId: string; scope: string } | { ok: false; reason: OAuthRejection } {
    const parts = jwt.split('.');
    if (parts.length !== 3) return { ok: false, reason: 'malformed' };
    const [h = '', p = '', s = ''] = parts;
    const header = decodeSegment(h);
    const payload = decodeSegment(p);
    if (!header || !payload || header.alg !== 'RS256') return { ok: false, reason: 'malformed' };
    const iss = payload.iss;
    if (typeof iss !== 'string') return { ok: false, reason: 'malformed' };
    const account = this.accounts.get(iss);
    if (!account) return { ok: false, reason: 'unknown_account' };

    const kid = typeof header.kid === 'string' ? header.kid : undefined;
    const candidates = kid !== undefined ? [account.keys.get(kid)].filter((k): k is KeyRecord => k !== undefined) : [...account.keys.values()];
    if (candidates.length === 0) return { ok: false, reason: 'unknown_key' };
    const signed = Buffer.from(`${h}.${p}`);
    const signature = Buffer.from(s, 'base64url');
    const matching = candidates.find((k) => {
      try {
        return verify('RSA-SHA256', signed, k.key.publicKeyPem, signature);
      } catch {
        return false;
      }
    });
    if (!matching) return { ok: false, reason: 'bad_signature' };
    if (matching.revoked) return { ok: false, reason: 'revoked_key' };

    if (typeof payload.aud !== 'string' || !audiences.includes(payload.aud)) return { ok: false, reason: 'bad_audience' };
    const { iat, exp } = payload;
    if (typeof iat !== 'number' || typeof exp !== 'number') return { ok: false, reason: 'expired_assertion' };
    if (exp - iat > 3600 || exp <= iat) return { ok: false, reason: 'lifetime_too_long' };
    const nowSeconds = this.now() / 1000;
    if (exp <= nowSeconds || iat > nowSeconds + SKEW_SECONDS) return { ok: false, reason: 'expired_assertion' };
    const scope = payload.scope;
    if (typeof scope !== 'string' || scope.trim() === '') return { ok: false, reason: 'missing_scope' };
    return { ok: true, clientEmail: iss, keyId: matching.key.keyId, scope };
  }
}

/** Validates a service-account registration from the control API. */
export function parseServiceAccountKey(raw: unknown): ServiceAccountKey {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('service account must be {"clientEmail","keyId","publicKeyPem","projectId"?}');
  const r = raw as Record<string, unknown>;
  for (const key of Object.keys(r)) {
    if (!['clientEmail', 'keyId', 'publicKeyPem', 'projectId'].includes(key)) throw new Error(`unknown service account field "${key}"`);
  }
  for (const key of ['clientEmail', 'keyId', 'publicKeyPem'] as const) {
    if (typeof r[key] !== 'string' || r[key] === '') throw new Error(`service account ${key} must be a non-empty string`);
  }
  if (r.projectId !== undefined && typeof r.projectId !== 'string') throw new Error('service account projectId must be a string');
  return {
    clientEmail: r.clientEmail as string,
    keyId: r.keyId as string,
    publicKeyPem: r.publicKeyPem as string,
    ...(typeof r.projectId === 'string' ? { projectId: r.projectId } : {}),
  };
}
