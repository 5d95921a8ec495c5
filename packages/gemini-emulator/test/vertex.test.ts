// Vertex AI routes, the OAuth token endpoint and Vertex's own quota pool, through the real
// @google/genai 2.32.0 and google-auth-library 10 over HTTP. Real clock: the library signs
// its JWTs with Date.now(), so the emulator must agree on the time.

import { generateKeyPairSync, sign } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiError, GoogleGenAI, ServiceTier } from '@google/genai';
import { GoogleAuth } from 'google-auth-library';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createEmulator, createServiceAccountKeyFile, emulatorGoogleAuthOptions, EmulatorClient, GOOGLE_TOKEN_URL,
  type Emulator, type ServiceAccountFile,
} from '../src/index.js';

/** The JSON bodies these tests read: Google's error shape, the OAuth answers, a generate answer. */
interface Json {
  error?: { code: number; message: string; status: string; details: ({ '@type': string; reason?: string; violations?: unknown[] })[] } & string;
  error_description?: string;
  candidates?: { content: { parts: { text: string }[] } }[];
  [key: string]: unknown;
}

const PROJECT = 'emulator-project';
const LOCATION = 'us-central1';
const MODEL = 'gemini-2.5-flash';
const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';

let emu: Emulator;
let url: string;
let client: EmulatorClient;
let dir: string;
let sa: ServiceAccountFile;

beforeEach(async () => {
  emu = createEmulator();
  url = await emu.listen(0);
  client = new EmulatorClient(url);
  dir = await mkdtemp(join(tmpdir(), 'emu-sa-'));
  sa = await createServiceAccountKeyFile({ emulatorUrl: url, path: join(dir, 'key.json'), projectId: PROJECT });
});

afterEach(async () => {
  await emu.close();
  await rm(dir, { recursive: true, force: true });
});

function vertexAi(keyFile = sa.keyFile): GoogleGenAI {
  return new GoogleGenAI({
    vertexai: true,
    project: PROJECT,
    location: LOCATION,
    httpOptions: { baseUrl: url },
    googleAuthOptions: emulatorGoogleAuthOptions(keyFile, url),
  });
}

function vertexUrl(method: string, version = 'v1', model = MODEL): string {
  return `${url}/${version}/projects/${PROJECT}/locations/${LOCATION}/publishers/google/models/${model}:${method}`;
}

async function postVertex(token: string | undefined, method = 'generateContent', version = 'v1'): Promise<{ status: number; body: Json; headers: Headers }> {
  const res = await fetch(vertexUrl(method, version), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ contents: [{ role: 'user', parts: [{ text: 'hello vertex' }] }] }),
  });
  return { status: res.status, body: (await res.json()) as Json, headers: res.headers };
}

async function tokenFor(keyFile = sa.keyFile): Promise<string> {
  const auth = new GoogleAuth(emulatorGoogleAuthOptions(keyFile, url, [SCOPE]));
  const token = await auth.getAccessToken();
  if (!token) throw new Error('no token');
  return token;
}

/** A JWT-bearer assertion signed by hand, to try what google-auth-library would never send. */
function assertion(opts: { key: string; iss?: string; aud?: string; iat?: number; exp?: number; scope?: string | null; kid?: string }): string {
  const iat = opts.iat ?? Math.floor(Date.now() / 1000);
  const header = { alg: 'RS256', typ: 'JWT', ...(opts.kid ? { kid: opts.kid } : {}) };
  const payload: Record<string, unknown> = { iss: opts.iss ?? sa.clientEmail, aud: opts.aud ?? GOOGLE_TOKEN_URL, iat, exp: opts.exp ?? iat + 3600 };
  if (opts.scope !== null) payload.scope = opts.scope ?? SCOPE;
  const enc = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
  const data = `${enc(header)}.${enc(payload)}`;
  return `${data}.${sign('RSA-SHA256', Buffer.from(data), opts.key).toString('base64url')}`;
}

async function exchange(jwt: string, grantType = 'urn:ietf:params:oauth:grant-type:jwt-bearer'): Promise<{ status: number; body: Json }> {
  const res = await fetch(`${url}/oauth2/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: grantType, assertion: jwt }).toString(),
  });
  return { status: res.status, body: (await res.json()) as Json };
}

async function privateKey(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return (JSON.parse(await readFile(sa.keyFile, 'utf8')) as { private_key: string }).private_key;
}

describe('Vertex AI through @google/genai 2.32.0 with a service-account key file', () => {
  it('generateContent, generateContentStream and countTokens work end to end (v1beta1 under baseUrl)', async () => {
    const ai = vertexAi();
    const r = await ai.models.generateContent({ model: MODEL, contents: 'hello vertex' });
    expect(r.text).toMatch(/^Emulated answer from gemini-2\.5-flash/);
    expect(r.usageMetadata?.promptTokenCount).toBeGreaterThan(0);
    expect(r.usageMetadata?.trafficType).toBe('ON_DEMAND');

    let streamed = '';
    for await (const chunk of await ai.models.generateContentStream({ model: MODEL, contents: 'hello vertex' })) streamed += chunk.text ?? '';
    expect(streamed).toBe(r.text);

    const count = await ai.models.countTokens({ model: MODEL, contents: 'hello vertex' });
    expect(count.totalTokens).toBe(r.usageMetadata?.promptTokenCount);

    // Vertex says which tier served a call in usageMetadata.trafficType.
    const flex = await ai.models.generateContent({ model: MODEL, contents: 'hello vertex', config: { serviceTier: ServiceTier.FLEX } });
    expect(flex.usageMetadata?.trafficType).toBe('ON_DEMAND_FLEX');

    const counters = await client.counters();
    expect(counters.byApi.vertex).toBe(4);
    expect(counters.byModel[MODEL]?.byMethod).toMatchObject({ 'vertex.generateContent': 2, 'vertex.streamGenerateContent': 1, 'vertex.countTokens': 1 });
    const stats = await client.oauthStats();
    expect(stats.tokensIssued).toBeGreaterThanOrEqual(1);
    expect(stats.accounts[0]).toMatchObject({ clientEmail: sa.clientEmail, keys: [{ keyId: sa.privateKeyId, revoked: false }] });
    // Only the fingerprint of the public key is ever shown.
    expect(JSON.stringify(stats)).not.toContain('BEGIN');
  });

  it('google-auth-library exchanges a signed JWT for a token that a raw v1 Vertex call accepts', async () => {
    const token = await tokenFor();
    expect(token).toMatch(/^ya29\./);
    const r = await postVertex(token);
    expect(r.status).toBe(200);
    expect(r.body.candidates[0].content.parts[0].text).toMatch(/^Emulated answer/);
  });

  it('a short token lifetime makes the library fetch a fresh token for every call', async () => {
    await client.setTokenTtl(1);
    const ai = vertexAi();
    for (let i = 0; i < 3; i++) await ai.models.generateContent({ model: MODEL, contents: `call ${i}` });
    expect((await client.oauthStats()).tokensIssued).toBe(3);
  });

  it("missing, forged, expired and revoked tokens get Google's 401 UNAUTHENTICATED", async () => {
    const missing = await postVertex(undefined);
    expect(missing.status).toBe(401);
    expect(missing.body.error).toMatchObject({ code: 401, status: 'UNAUTHENTICATED' });
    expect(missing.body.error.details[0]).toMatchObject({ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'CREDENTIALS_MISSING' });
    expect(missing.headers.get('www-authenticate')).toContain('Bearer');

    const forged = await postVertex('ya29.not-a-token');
    expect(forged.status).toBe(401);
    expect(forged.body.error.details[0].reason).toBe('ACCESS_TOKEN_TYPE_UNSUPPORTED');

    const token = await tokenFor();
    expect(await client.expireAllTokens()).toBe(1);
    const expired = await postVertex(token);
    expect(expired.status).toBe(401);
    expect(expired.body.error.details[0].reason).toBe('ACCESS_TOKEN_EXPIRED');

    const fresh = await tokenFor();
    await client.revokeServiceAccountKey(sa.privateKeyId);
    const revoked = await postVertex(fresh);
    expect(revoked.status).toBe(401);
    expect(revoked.body.error.message).toMatch(/invalid authentication credentials/);
    expect((await client.oauthStats()).unauthenticated).toMatchObject({ missing: 1, unknown: 1, expired: 1, revoked: 1 });
  });

  it('a revoked key fails at the token endpoint with invalid_grant, through the SDK too', async () => {
    await client.revokeServiceAccountKey(sa.privateKeyId);
    await expect(tokenFor()).rejects.toThrow(/invalid_grant/);
    const err = await vertexAi().models.generateContent({ model: MODEL, contents: 'hi' }).then(() => undefined, (e: unknown) => e);
    expect(String(err)).toMatch(/invalid_grant: Invalid JWT Signature/);
    expect((await client.oauthStats()).rejected.revoked_key).toBe(2);
  });

  it('the token endpoint checks signature, account, audience, lifetime, expiry and scope', async () => {
    const key = await privateKey();
    const ok = await exchange(assertion({ key, kid: sa.privateKeyId, aud: `${url}/oauth2/token` }));
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ token_type: 'Bearer', expires_in: 3600 });

    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const cases: [string, { status: number; body: Json }, string, RegExp][] = [
      ['forged', await exchange(assertion({ key: other })), 'invalid_grant', /Invalid JWT Signature/],
      ['unknown account', await exchange(assertion({ key, iss: 'nobody@x.iam.gserviceaccount.com' })), 'invalid_grant', /account not found/],
      ['unknown kid', await exchange(assertion({ key, kid: 'nope' })), 'invalid_grant', /Invalid JWT Signature/],
      ['audience', await exchange(assertion({ key, aud: 'https://example.com/token' })), 'invalid_grant', /audience/],
      ['expired', await exchange(assertion({ key, iat: Math.floor(Date.now() / 1000) - 7200, exp: Math.floor(Date.now() / 1000) - 3600 })), 'invalid_grant', /short-lived/],
      ['too long', await exchange(assertion({ key, exp: Math.floor(Date.now() / 1000) + 7200 })), 'invalid_grant', /short-lived/],
      ['no scope', await exchange(assertion({ key, scope: null })), 'invalid_scope', /scope/],
      ['grant type', await exchange(assertion({ key }), 'client_credentials'), 'unsupported_grant_type', /grant_type/],
    ];
    for (const [name, r, error, description] of cases) {
      expect(r.status, name).toBe(400);
      expect(r.body.error, name).toBe(error);
      expect(r.body.error_description, name).toMatch(description);
    }
  });

  it('an unknown model gets 404 NOT_FOUND worded like Vertex', async () => {
    const res = await fetch(vertexUrl('generateContent', 'v1beta1', 'gemini-0-nope'), {
      method: 'POST',
      headers: { authorization: `Bearer ${await tokenFor()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ contents: [{ parts: [{ text: 'x' }] }] }),
    });
    expect(res.status).toBe(404);
    expect(((await res.json()) as Json).error?.message).toMatch(/^Publisher Model `projects\/emulator-project\/locations\/us-central1\/publishers\/google\/models\/gemini-0-nope` was not found/);
  });
});

describe('Vertex quota pool', () => {
  it('the Gemini API exhausted still leaves Vertex serving', async () => {
    await client.setQuotas({ [MODEL]: { rpm: 1 } });
    const gemini = new GoogleGenAI({ apiKey: 'emulator-key', httpOptions: { baseUrl: url } });
    await gemini.models.generateContent({ model: MODEL, contents: 'one' });
    const err = await gemini.models.generateContent({ model: MODEL, contents: 'two' }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(429);

    const ai = vertexAi();
    for (let i = 0; i < 3; i++) expect((await ai.models.generateContent({ model: MODEL, contents: `v${i}` })).text).toMatch(/^Emulated/);
    expect((await client.vertexQuotaUsage()).models[MODEL]?.window.requests).toBe(3);
  });

  it("Vertex's own per-model limit answers a 429 with an aiplatform QuotaFailure", async () => {
    await client.setVertexQuotas({ [MODEL]: { rpm: 1 } });
    const token = await tokenFor();
    expect((await postVertex(token)).status).toBe(200);
    const r = await postVertex(token);
    expect(r.status).toBe(429);
    expect(r.body.error.status).toBe('RESOURCE_EXHAUSTED');
    const failure = r.body.error.details.find((d) => d['@type'] === 'type.googleapis.com/google.rpc.QuotaFailure');
    expect(failure.violations[0]).toMatchObject({
      quotaMetric: 'aiplatform.googleapis.com/generate_content_requests_per_minute_per_project_per_base_model',
      quotaDimensions: { region: LOCATION, base_model: MODEL },
      quotaValue: '1',
    });
  });

  it('Dynamic Shared Quota: over the shared capacity, a 429 with no details at all', async () => {
    await client.setSharedQuota({ capacity: 2, windowMs: 60_000 });
    const token = await tokenFor();
    expect((await postVertex(token)).status).toBe(200);
    expect((await postVertex(token, 'countTokens')).status).toBe(200); // countTokens is free
    expect((await postVertex(token)).status).toBe(200);
    const r = await postVertex(token);
    expect(r.status).toBe(429);
    expect(r.body).toEqual({ error: { code: 429, message: expect.stringMatching(/^Resource exhausted/), status: 'RESOURCE_EXHAUSTED' } });
    expect((await client.vertexQuotaUsage()).sharedQuota).toMatchObject({ capacity: 2, inWindow: 2, rejected: 1 });

    // The SDK sees the same 429 and, in 2.32.0, does not retry it unless httpOptions.retryOptions is set.
    const before = (await client.counters()).byModel[MODEL]?.calls ?? 0;
    const err = await vertexAi().models.generateContent({ model: MODEL, contents: 'x' }).then(() => undefined, (e: unknown) => e);
    expect((err as ApiError).status).toBe(429);
    expect((await client.counters()).byModel[MODEL]?.calls).toBe(before + 1);

    await client.setSharedQuota(null);
    expect((await postVertex(token)).status).toBe(200);
  });
});
