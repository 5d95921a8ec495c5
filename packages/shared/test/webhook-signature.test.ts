import { describe, expect, it } from 'vitest';
import { computeSignature, signatureHeader, verifyWebhook, WebhookVerificationError, type WebhookVerificationFailure } from '../src/index.js';

const SECRET = 'whsec-test-0123456789';
const BODY = JSON.stringify({ id: 'j1.job.completed', type: 'job.completed', data: { id: 'j1' } });
const T = 1_790_000_000;
const NOW = T * 1000;

function headersOf(signature: string): Record<string, string> {
  return { 'promptqueue-signature': signature, 'promptqueue-event-id': 'j1.job.completed' };
}

function reasonOf(run: () => unknown): WebhookVerificationFailure {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(WebhookVerificationError);
    return (error as WebhookVerificationError).reason;
  }
  throw new Error('verified');
}

describe('webhook signatures', () => {
  it('round-trips: HMAC-SHA256 of `${t}.${body}`, hex, in t=…,v1=…', () => {
    const header = signatureHeader(BODY, [SECRET], T);
    expect(header).toBe(`t=${T},v1=${computeSignature(SECRET, T, BODY)}`);
    expect(header).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifyWebhook(headersOf(header), BODY, SECRET, { now: NOW })).toEqual({ eventId: 'j1.job.completed', timestampSeconds: T });
    expect(verifyWebhook(new Headers(headersOf(header)), Buffer.from(BODY), SECRET, { now: NOW }).timestampSeconds).toBe(T);
  });

  it('refuses a tampered body, timestamp or signature, and the wrong secret', () => {
    const header = signatureHeader(BODY, [SECRET], T);
    expect(reasonOf(() => verifyWebhook(headersOf(header), BODY.replace('j1', 'j2'), SECRET, { now: NOW }))).toBe('signature-mismatch');
    expect(reasonOf(() => verifyWebhook(headersOf(header.replace(`t=${T}`, `t=${T + 1}`)), BODY, SECRET, { now: NOW }))).toBe('signature-mismatch');
    const flipped = header.slice(0, -1) + (header.endsWith('0') ? '1' : '0');
    expect(reasonOf(() => verifyWebhook(headersOf(flipped), BODY, SECRET, { now: NOW }))).toBe('signature-mismatch');
    expect(reasonOf(() => verifyWebhook(headersOf(header), BODY, 'another-secret-0123', { now: NOW }))).toBe('signature-mismatch');
  });

  it('refuses a timestamp outside the tolerance (a replay), either way', () => {
    const header = signatureHeader(BODY, [SECRET], T);
    expect(verifyWebhook(headersOf(header), BODY, SECRET, { now: NOW + 300_000 }).timestampSeconds).toBe(T);
    expect(reasonOf(() => verifyWebhook(headersOf(header), BODY, SECRET, { now: NOW + 301_000 }))).toBe('timestamp-outside-tolerance');
    expect(reasonOf(() => verifyWebhook(headersOf(header), BODY, SECRET, { now: NOW - 301_000 }))).toBe('timestamp-outside-tolerance');
    expect(reasonOf(() => verifyWebhook(headersOf(header), BODY, SECRET, { now: NOW + 61_000, toleranceSeconds: 60 }))).toBe('timestamp-outside-tolerance');
  });

  it('refuses missing and malformed headers', () => {
    expect(reasonOf(() => verifyWebhook({}, BODY, SECRET, { now: NOW }))).toBe('missing-signature');
    expect(reasonOf(() => verifyWebhook(headersOf(`v1=${'a'.repeat(64)}`), BODY, SECRET, { now: NOW }))).toBe('malformed-signature');
    expect(reasonOf(() => verifyWebhook(headersOf(`t=${T},v1=xyz`), BODY, SECRET, { now: NOW }))).toBe('malformed-signature');
  });

  it('signs with every secret during a rotation; receivers with either secret accept', () => {
    const header = signatureHeader(BODY, ['old-secret-0123456789', 'new-secret-0123456789'], T);
    expect(header.match(/v1=/g)).toHaveLength(2);
    expect(() => verifyWebhook(headersOf(header), BODY, 'old-secret-0123456789', { now: NOW })).not.toThrow();
    expect(() => verifyWebhook(headersOf(header), BODY, 'new-secret-0123456789', { now: NOW })).not.toThrow();
    expect(() => verifyWebhook(headersOf(header), BODY, ['unrelated-secret-012', 'new-secret-0123456789'], { now: NOW })).not.toThrow();
  });
});
