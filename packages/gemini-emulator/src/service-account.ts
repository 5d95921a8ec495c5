// Test helper: a real service-account key file whose public half the emulator trusts.
// The RSA key pair is made here with node:crypto; only the PUBLIC key is sent to the emulator.
//
// google-auth-library 10.x posts every service-account assertion to
// https://oauth2.googleapis.com/token (it ignores the key file's token_uri), so a test also
// hands the library `tokenRedirectFetch(emulatorUrl)` as its transport's fetch; the exchange
// itself (signing, the grant, the JSON answer) stays the library's own.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { EmulatorClient } from './client.js';
import { GOOGLE_TOKEN_URL, TOKEN_PATH } from './oauth.js';

export interface ServiceAccountFileOptions {
  /** Base URL of a running emulator; token_uri becomes `<url>/oauth2/token`. */
  emulatorUrl: string;
  /** Where to write the JSON key file. */
  path: string;
  /** Default `pq-test@<projectId>.iam.gserviceaccount.com`. */
  clientEmail?: string;
  /** Default `emulator-project`. */
  projectId?: string;
  /** Default: 40 random hex characters, like Google's. */
  privateKeyId?: string;
  /** Register the public key with the emulator (default true). */
  register?: boolean;
}

export interface ServiceAccountFile {
  keyFile: string;
  clientEmail: string;
  projectId: string;
  privateKeyId: string;
  publicKeyPem: string;
  tokenUri: string;
}

/** Writes a `type: service_account` key file and registers its public key with the emulator. */
export async function createServiceAccountKeyFile(opts: ServiceAccountFileOptions): Promise<ServiceAccountFile> {
  const base = opts.emulatorUrl.replace(/\/+$/, '');
  const projectId = opts.projectId ?? 'emulator-project';
  const clientEmail = opts.clientEmail ?? `pq-test@${projectId}.iam.gserviceaccount.com`;
  const privateKeyId = opts.privateKeyId ?? randomBytes(20).toString('hex');
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  const tokenUri = `${base}${TOKEN_PATH}`;
  const json = {
    type: 'service_account',
    project_id: projectId,
    private_key_id: privateKeyId,
    private_key: privateKey,
    client_email: clientEmail,
    client_id: String(BigInt(`0x${randomBytes(8).toString('hex')}`)),
    auth_uri: 'https://accounts.google.com/o/oauth2/auth',
    token_uri: tokenUri,
    auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
    universe_domain: 'googleapis.com',
  };
  await writeFile(opts.path, `${JSON.stringify(json, null, 2)}\n`, { mode: 0o600 });
  if (opts.register !== false) {
    await new EmulatorClient(base).registerServiceAccount({ clientEmail, keyId: privateKeyId, publicKeyPem: publicKey, projectId });
  }
  return { keyFile: opts.path, clientEmail, projectId, privateKeyId, publicKeyPem: publicKey, tokenUri };
}

/**
 * A fetch for google-auth-library's transport (`clientOptions.transporterOptions.fetchImplementation`)
 * that sends Google's token endpoint to the emulator's and everything else through as is.
 */
export function tokenRedirectFetch(emulatorUrl: string): typeof fetch {
  const target = `${emulatorUrl.replace(/\/+$/, '')}${TOKEN_PATH}`;
  return (input, init) => {
    const href = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    if (href === GOOGLE_TOKEN_URL || href.startsWith(`${GOOGLE_TOKEN_URL}?`)) {
      return fetch(target, init ?? (input instanceof Request ? input : undefined));
    }
    return fetch(input, init);
  };
}

/**
 * `googleAuthOptions` for @google/genai (or `new GoogleAuth(...)`) that authenticate with the key
 * file against the emulator's token endpoint.
 */
export function emulatorGoogleAuthOptions(keyFile: string, emulatorUrl: string, scopes: string[] = ['https://www.googleapis.com/auth/cloud-platform']): {
  keyFile: string;
  scopes: string[];
  clientOptions: { transporterOptions: { fetchImplementation: typeof fetch } };
} {
  return { keyFile, scopes, clientOptions: { transporterOptions: { fetchImplementation: tokenRedirectFetch(emulatorUrl) } } };
}
