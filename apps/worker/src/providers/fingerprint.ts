import { createHash } from 'node:crypto';

/**
 * How a credential appears in logs, `/status` and the dashboard: `sha256:` and the first 8 hex
 * digits of its hash. Enough to tell keys apart, useless to call a provider.
 */
export function credentialFingerprint(secret: string): string {
  return `sha256:${createHash('sha256').update(secret, 'utf8').digest('hex').slice(0, 8)}`;
}
