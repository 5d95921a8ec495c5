import { readFile } from 'node:fs/promises';
import { GoogleAuth, type AuthClient } from 'google-auth-library';
import { ProviderError, type CredentialHealth, type Logger } from '@prompt-queue/shared';
import { credentialFingerprint } from '../fingerprint.js';
import type { CredentialSource } from '../plugin.js';

/**
 * A Vertex link's credentials: google-auth-library signs the service account's JWT assertion
 * (RS256) and exchanges it for an OAuth access token; {@link AccessTokens} caches that token and
 * refreshes it before it expires, ONE per key file and token endpoint per worker process
 * (PluginContext.processScoped), whatever the number of links, models and jobs using it.
 *
 * Where the credential comes from, in order: the link's `keyFile`, the `GOOGLE_APPLICATION_CREDENTIALS`
 * file, else Application Default Credentials (gcloud's user credentials, the metadata server).
 *
 * Secrets (the key file's content, the private key, the assertion, the token) never leave this
 * file: not in errors, not in logs, not in describe(). Errors are built from the token endpoint's
 * `error` / `error_description` and our own words; describe() gives `sha256:` of the service
 * account's e-mail and key id.
 */

/** Google's token endpoint: google-auth-library 10 posts every service-account assertion here, whatever the key file's `token_uri`. */
export const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
export const CLOUD_PLATFORM_SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

/** Refresh a token this long before it expires (Google's libraries use 5 min), or a fifth of its lifetime when that is shorter. */
export const REFRESH_MARGIN_MS = 5 * 60_000;
/** After the token endpoint refused the credential, calls fail at once for this long before it is asked again, ms. */
export const REJECTED_RECHECK_MS = 30_000;

const MAX_DETAIL_CHARS = 200;

/** What the credential is, for fingerprints: never the key. */
interface Identity {
  /** `keyFile <path>`, `GOOGLE_APPLICATION_CREDENTIALS <path>` or `Application Default Credentials`. */
  where: string;
  fingerprint: string;
}

type TokenState =
  | { state: 'empty' }
  | { state: 'valid'; token: string; expiresAt: number; refreshAt: number }
  | { state: 'rejected'; code: string; detail: string; httpStatus: number | undefined; retryAt: number };

export interface AccessTokensOptions {
  /** The link's key file; else GOOGLE_APPLICATION_CREDENTIALS, else ADC. */
  keyFile?: string | undefined;
  /** Where the assertion is exchanged. @defaultValue {@link GOOGLE_TOKEN_URL} */
  tokenUrl?: string | undefined;
  logger: Logger;
  /** The process environment (GOOGLE_APPLICATION_CREDENTIALS). @defaultValue process.env */
  env?: Record<string, string | undefined>;
  now?: () => number;
}

/**
 * One credential's access tokens, shared by every link of the process that uses the same key file
 * and token endpoint. `token()` answers from the cache while the token has more than the refresh
 * margin left, else fetches one (concurrent callers share that one fetch).
 */
export class AccessTokens {
  private state: TokenState = { state: 'empty' };
  private inflight: Promise<string> | undefined;
  private client: Promise<{ auth: AuthClient; identity: Identity }> | undefined;
  private identity: Identity | undefined;
  private readonly now: () => number;
  /** Token fetches made (for /status and tests). */
  fetches = 0;

  constructor(private readonly options: AccessTokensOptions) {
    this.now = options.now ?? Date.now;
  }

  /** The process-scoped key of a credential. */
  static scopeKey(keyFile: string | undefined, tokenUrl: string | undefined): string {
    return `vertex-tokens\u0000${keyFile ?? ''}\u0000${tokenUrl ?? GOOGLE_TOKEN_URL}`;
  }

  /** What the credential is named by in errors (a path is not a secret). */
  get where(): string {
    return this.identity?.where ?? describeWhere(this.options.keyFile, this.options.env ?? process.env);
  }

  /** A valid access token: cached, or fetched now. Throws a ProviderError (PROVIDER_AUTH_FAILED when the credential is refused). */
  async token(): Promise<string> {
    const now = this.now();
    const state = this.state;
    if (state.state === 'valid' && now < state.refreshAt) return state.token;
    if (state.state === 'rejected' && now < state.retryAt) throw this.rejectedError(state);
    this.inflight ??= this.fetch().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /**
   * Vertex refused `token` (401): drop it, so the next `token()` fetches a new one. A token
   * refreshed meanwhile by another call stays.
   */
  invalidate(token: string): void {
    if (this.state.state === 'valid' && this.state.token === token) this.state = { state: 'empty' };
  }

  /** Vertex refused the credential itself (a 401 again with a fresh token, or a 403). */
  markRejected(code: string, detail: string, httpStatus: number | undefined): void {
    this.reject({ state: 'rejected', code, detail: clip(detail), httpStatus, retryAt: this.now() + REJECTED_RECHECK_MS });
  }

  health(): CredentialHealth {
    const fingerprint = this.identity?.fingerprint ?? credentialFingerprint(this.where);
    switch (this.state.state) {
      case 'valid':
        return { fingerprint, state: 'ok' };
      case 'rejected':
        return { fingerprint, state: 'rejected', detail: `${this.state.code}: ${this.state.detail}` };
      default:
        return { fingerprint, state: 'unknown' };
    }
  }

  /** Loads the key file (or ADC) once; after a refusal it is loaded again (a replaced key file is picked up). */
  private loadClient(): Promise<{ auth: AuthClient; identity: Identity }> {
    this.client ??= loadCredential(this.options).then(
      (loaded) => {
        this.identity = loaded.identity;
        return loaded;
      },
      (error: unknown) => {
        this.client = undefined;
        throw error;
      },
    );
    return this.client;
  }

  private async fetch(): Promise<string> {
    let loaded: { auth: AuthClient; identity: Identity };
    try {
      loaded = await this.loadClient();
    } catch (error) {
      // A missing, unreadable or invalid key file: nothing to retry until someone fixes it.
      const detail = error instanceof CredentialFileError ? error.message : 'cannot load the credential';
      this.reject({ state: 'rejected', code: 'CREDENTIALS_UNUSABLE', detail, httpStatus: undefined, retryAt: this.now() + REJECTED_RECHECK_MS });
      throw this.rejectedError(this.state as TokenState & { state: 'rejected' });
    }
    const { auth } = loaded;
    // Our cache decides when to refresh: mark the library's token expired so it really asks.
    auth.eagerRefreshThresholdMillis = 0;
    auth.credentials = { ...auth.credentials, access_token: null, expiry_date: 1 };
    this.fetches += 1;
    const started = this.now();
    let token: string | null | undefined;
    try {
      token = (await auth.getAccessToken()).token;
    } catch (error) {
      throw this.tokenEndpointError(error);
    }
    if (!token) throw new ProviderError('PROVIDER_UNAVAILABLE', `The token endpoint gave no access token for ${this.where}`, { disposition: 'backoff' });
    const expiresAt = auth.credentials.expiry_date ?? started + 3_600_000;
    const lifetime = Math.max(0, expiresAt - started);
    this.state = { state: 'valid', token, expiresAt, refreshAt: expiresAt - Math.min(REFRESH_MARGIN_MS, lifetime / 5) };
    return token;
  }

  /** A failed exchange: refused (invalid_grant…) → PROVIDER_AUTH_FAILED; the endpoint down → retryable. */
  private tokenEndpointError(error: unknown): ProviderError {
    const response = (error as { response?: { status?: unknown; data?: unknown } } | null)?.response;
    const status = typeof response?.status === 'number' ? response.status : undefined;
    if (status === undefined) {
      const code = causeCode(error);
      if (code !== undefined || /fetch failed|socket|network/i.test(String((error as Error | null)?.message))) {
        return new ProviderError('PROVIDER_NETWORK_ERROR', `Cannot reach the token endpoint for ${this.where}: ${code ?? 'network error'}`, { disposition: 'backoff' });
      }
      // Signing failed (a private key that is not one): the credential is unusable.
      this.reject({ state: 'rejected', code: 'CREDENTIALS_UNUSABLE', detail: 'the private key cannot sign', httpStatus: undefined, retryAt: this.now() + REJECTED_RECHECK_MS });
      return this.rejectedError(this.state as TokenState & { state: 'rejected' });
    }
    if (status >= 500 || status === 429) {
      return new ProviderError('PROVIDER_UNAVAILABLE', `The token endpoint answered ${status} for ${this.where}`, { disposition: 'backoff', httpStatus: status });
    }
    const data = isRecord(response?.data) ? response.data : {};
    const code = typeof data.error === 'string' ? data.error : `HTTP ${status}`;
    const description = typeof data.error_description === 'string' ? data.error_description : '';
    this.reject({ state: 'rejected', code, detail: clip(description || `HTTP ${status}`), httpStatus: status, retryAt: this.now() + REJECTED_RECHECK_MS });
    return this.rejectedError(this.state as TokenState & { state: 'rejected' });
  }

  private reject(state: TokenState & { state: 'rejected' }): void {
    const first = this.state.state !== 'rejected';
    this.state = state;
    // Loaded again at the next try: a key file replaced meanwhile is picked up.
    this.client = undefined;
    if (first) {
      this.options.logger.error('vertex credential refused: links using it fail over to the next link', {
        credential: this.where,
        fingerprint: this.health().fingerprint,
        reason: state.code,
        detail: state.detail,
      });
    }
  }

  private rejectedError(state: TokenState & { state: 'rejected' }): ProviderError {
    return new ProviderError('PROVIDER_AUTH_FAILED', `Vertex AI credential refused (${this.where}): ${state.code}: ${state.detail}`, {
      disposition: 'fail',
      // The token endpoint's (or Vertex's) status: an answer, so the limiter reservation is released.
      httpStatus: state.httpStatus ?? 401,
    });
  }
}

/** A key file problem, worded without its content (JSON.parse's own message quotes the file). */
class CredentialFileError extends Error {}

function describeWhere(keyFile: string | undefined, env: Record<string, string | undefined>): string {
  if (keyFile !== undefined) return `keyFile ${keyFile}`;
  const adcFile = env.GOOGLE_APPLICATION_CREDENTIALS;
  if (adcFile) return `GOOGLE_APPLICATION_CREDENTIALS ${adcFile}`;
  return 'Application Default Credentials';
}

/**
 * The credential as an auth client. A key file is read and checked here (not by the library), so
 * that no error can quote its content; ADC is the library's own search.
 */
async function loadCredential(options: AccessTokensOptions): Promise<{ auth: AuthClient; identity: Identity }> {
  const env = options.env ?? process.env;
  const where = describeWhere(options.keyFile, env);
  const tokenUrl = options.tokenUrl ?? GOOGLE_TOKEN_URL;
  const clientOptions = tokenUrl === GOOGLE_TOKEN_URL ? {} : { clientOptions: { transporterOptions: { fetchImplementation: tokenRedirectFetch(tokenUrl) } } };
  const path = options.keyFile ?? (env.GOOGLE_APPLICATION_CREDENTIALS || undefined);
  if (path === undefined) {
    let auth: AuthClient;
    try {
      auth = await new GoogleAuth({ scopes: [CLOUD_PLATFORM_SCOPE], ...clientOptions }).getClient();
    } catch (error) {
      throw new CredentialFileError(`no Application Default Credentials found (${clip(error instanceof Error ? error.message : String(error))}); set keyFile or GOOGLE_APPLICATION_CREDENTIALS`);
    }
    const email = (auth as { email?: unknown }).email;
    return { auth, identity: { where, fingerprint: credentialFingerprint(typeof email === 'string' ? `adc/${email}` : 'adc') } };
  }
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new CredentialFileError(code === 'ENOENT' ? 'the key file does not exist' : `the key file cannot be read (${code ?? 'error'})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CredentialFileError('the key file is not valid JSON');
  }
  if (!isRecord(json)) throw new CredentialFileError('the key file is not a JSON object');
  if (json.type === 'service_account') {
    const missing = ['client_email', 'private_key'].filter((field) => typeof json[field] !== 'string' || json[field] === '');
    if (missing.length > 0) throw new CredentialFileError(`the service-account key file lacks ${missing.join(', ')}`);
  } else if (typeof json.type !== 'string') {
    throw new CredentialFileError('the key file has no "type" (expected "service_account")');
  }
  let auth: AuthClient;
  try {
    auth = await new GoogleAuth({ credentials: json as never, scopes: [CLOUD_PLATFORM_SCOPE], ...clientOptions }).getClient();
  } catch {
    throw new CredentialFileError(`google-auth-library cannot use a key file of type "${String(json.type)}"`);
  }
  const id = json.type === 'service_account' ? `${String(json.client_email)}/${String(json.private_key_id ?? '')}` : `${String(json.type)}/${String(json.client_id ?? json.client_email ?? '')}`;
  return { auth, identity: { where, fingerprint: credentialFingerprint(id) } };
}

/**
 * A fetch for google-auth-library's transport that sends Google's token endpoint to `tokenUrl`
 * (a private endpoint, an emulator) and everything else through as is. google-auth-library 10
 * ignores a key file's `token_uri` and always posts to {@link GOOGLE_TOKEN_URL}.
 */
export function tokenRedirectFetch(tokenUrl: string, base: typeof fetch = fetch): typeof fetch {
  return (input, init) => {
    const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (href === GOOGLE_TOKEN_URL || href.startsWith(`${GOOGLE_TOKEN_URL}?`)) return base(tokenUrl + href.slice(GOOGLE_TOKEN_URL.length), init ?? (input instanceof Request ? input : undefined));
    return base(input, init);
  };
}

/** A link's view of its process-wide tokens: the startup check and describe(). */
export class VertexCredentials implements CredentialSource {
  constructor(
    readonly tokens: AccessTokens,
    private readonly linkId: string,
  ) {}

  /** Loads the credential and fetches a token; throws naming the link and the credential, never its content. */
  async check(): Promise<void> {
    try {
      await this.tokens.token();
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`link ${this.linkId}: no usable Vertex AI credential: ${reason}`);
    }
  }

  describe(): CredentialHealth[] {
    return [this.tokens.health()];
  }
}

function causeCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 4 && isRecord(current); depth++) {
    if (typeof current.code === 'string' && /^E[A-Z]+|^UND_ERR/.test(current.code)) return current.code;
    current = current.cause;
  }
  return undefined;
}

function clip(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_DETAIL_CHARS ? `${flat.slice(0, MAX_DETAIL_CHARS - 1)}…` : flat;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}
