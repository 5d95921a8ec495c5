import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * How every webhook request is signed (docs/webhooks.md), Stripe's scheme under our names:
 *
 *     PromptQueue-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of `${t}.${rawBody}`>[,v1=…]
 *
 * The timestamp is inside the signed bytes, so a captured request cannot be replayed later with a
 * fresh `t`; receivers refuse a `t` outside their tolerance (5 minutes by default). One `v1` per
 * secret: while a tenant rotates its secret both are configured and the receiver accepts either.
 * Each attempt is signed anew (a new `t`), the body stays the same.
 */

export const SIGNATURE_HEADER = 'PromptQueue-Signature';
export const EVENT_ID_HEADER = 'PromptQueue-Event-Id';
/** Receivers' default replay window, seconds. */
export const DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300;

/** Hex HMAC-SHA256 of `${timestamp}.${rawBody}` under one secret. */
export function computeSignature(secret: string, timestampSeconds: number, rawBody: string | Buffer): string {
  return createHmac('sha256', secret).update(`${timestampSeconds}.`).update(rawBody).digest('hex');
}

/** The `PromptQueue-Signature` value: `t=<seconds>` and one `v1=` per secret. */
export function signatureHeader(rawBody: string | Buffer, secrets: readonly string[], timestampSeconds: number): string {
  if (secrets.length === 0) throw new Error('a webhook needs at least one secret to be signed');
  return [`t=${timestampSeconds}`, ...secrets.map((secret) => `v1=${computeSignature(secret, timestampSeconds, rawBody)}`)].join(',');
}

/** Why a request failed verification. */
export type WebhookVerificationFailure = 'missing-signature' | 'malformed-signature' | 'timestamp-outside-tolerance' | 'signature-mismatch';

export class WebhookVerificationError extends Error {
  override readonly name = 'WebhookVerificationError';
  constructor(
    readonly reason: WebhookVerificationFailure,
    message: string,
  ) {
    super(message);
  }
}

/** Node's `req.headers` (lowercase keys) or a fetch `Headers`. */
export type WebhookHeaders = Record<string, string | string[] | undefined> | { get(name: string): string | null };

function header(headers: WebhookHeaders, name: string): string | undefined {
  if (typeof (headers as { get?: unknown }).get === 'function') return (headers as { get(name: string): string | null }).get(name) ?? undefined;
  const value = (headers as Record<string, string | string[] | undefined>)[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

export interface VerifyWebhookOptions {
  /** Largest accepted distance between `t` and now, seconds. @defaultValue 300 */
  toleranceSeconds?: number;
  /** The receiver's clock, epoch ms. @defaultValue Date.now() */
  now?: number;
}

export interface VerifiedWebhook {
  /** The event id (`PromptQueue-Event-Id`), to deduplicate on: deliveries are at least once. */
  eventId: string | undefined;
  timestampSeconds: number;
}

/**
 * Verifies a request against the raw body bytes as received (not a re-serialized parse) and one or
 * more secrets. Throws a WebhookVerificationError naming the reason; compares in constant time.
 */
export function verifyWebhook(
  headers: WebhookHeaders,
  rawBody: string | Buffer,
  secret: string | readonly string[],
  { toleranceSeconds = DEFAULT_SIGNATURE_TOLERANCE_SECONDS, now = Date.now() }: VerifyWebhookOptions = {},
): VerifiedWebhook {
  const value = header(headers, SIGNATURE_HEADER);
  if (!value) throw new WebhookVerificationError('missing-signature', `no ${SIGNATURE_HEADER} header`);
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const item of value.split(',')) {
    const [key, field] = item.trim().split('=', 2) as [string, string | undefined];
    if (key === 't' && field && /^\d{1,12}$/.test(field)) timestamp = Number(field);
    else if (key === 'v1' && field && /^[0-9a-f]{64}$/.test(field)) signatures.push(Buffer.from(field, 'hex'));
  }
  if (timestamp === undefined || signatures.length === 0) {
    throw new WebhookVerificationError('malformed-signature', `${SIGNATURE_HEADER} needs t=<unix seconds> and at least one v1=<64 hex>`);
  }
  const skew = Math.abs(Math.floor(now / 1000) - timestamp);
  if (skew > toleranceSeconds) {
    throw new WebhookVerificationError('timestamp-outside-tolerance', `the signature is ${skew} s from now, more than the ${toleranceSeconds} s tolerated`);
  }
  const secrets = typeof secret === 'string' ? [secret] : secret;
  const matches = secrets.some((candidate) => {
    const expected = Buffer.from(computeSignature(candidate, timestamp, rawBody), 'hex');
    // Every v1 is compared, so the time taken does not tell which one matched.
    return signatures.map((signature) => timingSafeEqual(signature, expected)).includes(true);
  });
  if (!matches) throw new WebhookVerificationError('signature-mismatch', 'no v1 signature matches the body under the given secret');
  return { eventId: header(headers, EVENT_ID_HEADER), timestampSeconds: timestamp };
}
