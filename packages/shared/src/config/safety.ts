import { createHash } from 'node:crypto';
import type { Config } from './schema.js';

/**
 * Shortest tenant API key accepted in production, characters: 16 random characters are beyond
 * guessing at any request rate. A `sha256:<hex>` entry is exempt (its key cannot be measured).
 */
export const MIN_PRODUCTION_API_KEY_LENGTH = 16;

/**
 * Shortest dashboard password accepted in production, characters. Basic auth has no lockout, so
 * the password alone stands between the internet and every prompt in the queue. (The dashboard
 * and metrics tokens need 16 characters everywhere, see the schema.)
 */
export const MIN_PRODUCTION_PASSWORD_LENGTH = 12;

/** A setting that must not start, at its config path. Messages never contain a secret. */
export interface UnsafeSetting {
  path: string;
  message: string;
}

/**
 * Settings that parse but must not run: two tenants sharing one API key (the second would sign in
 * as the first), always; and in production, tenant API keys shorter than
 * `MIN_PRODUCTION_API_KEY_LENGTH` and a dashboard password shorter than
 * `MIN_PRODUCTION_PASSWORD_LENGTH`.
 */
export function unsafeSettings(config: Config): UnsafeSetting[] {
  const problems: UnsafeSetting[] = [];
  const apiKeysPath = 'producer.apiKeys';

  // Keys are compared as the producer does (ApiKeys): by sha256, so `k` and `sha256:<sha of k>` match.
  const ownerByDigest = new Map<string, string>();
  const reported = new Set<string>();
  for (const { tenant, key } of config.producer.apiKeys) {
    const digest = keyDigest(key);
    const owner = ownerByDigest.get(digest);
    if (owner === undefined) {
      ownerByDigest.set(digest, tenant);
    } else if (owner !== tenant && !reported.has(`${owner}\n${tenant}`)) {
      reported.add(`${owner}\n${tenant}`);
      problems.push({
        path: apiKeysPath,
        message: `tenants "${owner}" and "${tenant}" have the same API key (the second would sign in as the first); give each tenant its own key`,
      });
    }
  }

  if (config.env === 'production') {
    const shortKeyTenants = new Set(
      config.producer.apiKeys.filter(({ key }) => !isHashedKey(key) && key.length < MIN_PRODUCTION_API_KEY_LENGTH).map(({ tenant }) => tenant),
    );
    if (shortKeyTenants.size > 0) {
      problems.push({
        path: apiKeysPath,
        message:
          `in production every API key needs at least ${MIN_PRODUCTION_API_KEY_LENGTH} characters; ` +
          `the key of ${[...shortKeyTenants].map((tenant) => `"${tenant}"`).join(', ')} is shorter (e.g. openssl rand -hex 24)`,
      });
    }
    const { password } = config.dashboard;
    if (password !== undefined && password.length < MIN_PRODUCTION_PASSWORD_LENGTH) {
      problems.push({
        path: 'dashboard.password',
        message: `in production the dashboard password needs at least ${MIN_PRODUCTION_PASSWORD_LENGTH} characters`,
      });
    }
  }
  return problems;
}

/** `sha256:<64 hex>`, as the producer accepts in place of a key. */
function isHashedKey(key: string): boolean {
  return /^sha256:[0-9a-fA-F]{64}$/.test(key);
}

function keyDigest(key: string): string {
  return isHashedKey(key) ? key.slice('sha256:'.length).toLowerCase() : createHash('sha256').update(key, 'utf8').digest('hex');
}
